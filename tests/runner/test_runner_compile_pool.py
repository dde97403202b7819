"""The compile-worker pool helper: starts the pool with Inductor's function, and never raises."""
import sys
import types

from ssm_cli.train import compile_pool


def test_start_calls_inductors_warm_pool(monkeypatch):
    calls = []
    fake = types.ModuleType("torch._inductor.async_compile")
    fake.maybe_warm_pool = lambda: calls.append("warm")
    monkeypatch.setitem(sys.modules, "torch._inductor.async_compile", fake)
    assert compile_pool.start() is True and calls == ["warm"]


def test_start_survives_a_failing_inductor(monkeypatch):
    fake = types.ModuleType("torch._inductor.async_compile")

    def boom():
        raise RuntimeError("no pool here")

    fake.maybe_warm_pool = boom
    monkeypatch.setitem(sys.modules, "torch._inductor.async_compile", fake)
    assert compile_pool.start() is False
