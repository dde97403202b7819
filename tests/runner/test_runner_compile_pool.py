"""The compile-worker pool helpers: start and release use Inductor's functions, once, and never raise."""
import sys
import threading
import types

from ssm_cli.train import compile_pool


def test_release_shuts_the_pool_down_once_in_the_background(monkeypatch):
    calls = []
    done = threading.Event()

    def shutdown():
        calls.append(threading.current_thread().name)
        done.set()

    fake = types.ModuleType("torch._inductor.async_compile")
    fake.shutdown_compile_workers = shutdown
    monkeypatch.setitem(sys.modules, "torch._inductor.async_compile", fake)
    monkeypatch.setattr(compile_pool, "_released", False)
    compile_pool.release()
    compile_pool.release()
    assert done.wait(10)
    for t in threading.enumerate():
        if t.name == "ssm-compile-pool":
            t.join(10)
    assert calls == ["ssm-compile-pool"]


def test_start_and_release_survive_a_failing_inductor(monkeypatch):
    fake = types.ModuleType("torch._inductor.async_compile")

    def boom():
        raise RuntimeError("no pool here")

    fake.maybe_warm_pool = fake.shutdown_compile_workers = boom
    monkeypatch.setitem(sys.modules, "torch._inductor.async_compile", fake)
    monkeypatch.setattr(compile_pool, "_released", False)
    assert compile_pool.start() is False
    compile_pool.release()  # the thread swallows the error
    for t in threading.enumerate():
        if t.name == "ssm-compile-pool":
            t.join(10)
