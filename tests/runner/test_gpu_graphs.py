"""On a GPU: a CUDA-graph training step computes exactly what the eager step computes."""
import pytest
import torch

from ssm_cli.config import compose
from ssm_cli.data import load_dataset
from ssm_cli.train.task import SequenceTask


def train_steps(cuda_graphs: bool, steps: int = 8) -> dict:
    cfg = compose(["preset=smoke", "model.dropout=0.0", f"trainer.cuda_graphs={str(cuda_graphs).lower()}",
                   "dataset.options.n_train=64"])
    data = load_dataset("synthetic", "data", **cfg.dataset.options)
    torch.manual_seed(0)
    task = SequenceTask(cfg, data.spec, ["val", "test"], [1.0, 1.0], steps_per_epoch=steps).cuda()

    opt_cfg = task.configure_optimizers()
    opt, sched = opt_cfg["optimizer"], opt_cfg["lr_scheduler"]["scheduler"]
    x = torch.randn(8, 1024, 1, device="cuda")
    y = torch.randint(0, 10, (8,), device="cuda")
    if cuda_graphs:
        from ssm_cli.train.task import CudaGraphStep
        g = CudaGraphStep(task, opt)
        for _ in range(steps):
            g(x, y)
            sched.step()
    else:
        for _ in range(steps):
            opt.zero_grad(set_to_none=True)
            torch.nn.functional.cross_entropy(task(x)[0], y).backward()
            opt.step()
            sched.step()
    torch.cuda.synchronize()
    return {k: v.detach().cpu().clone() for k, v in task.model.state_dict().items()}


@pytest.mark.gpu
def test_graph_step_equals_eager_step():
    eager, graph = train_steps(False), train_steps(True)
    for k in eager:
        torch.testing.assert_close(graph[k], eager[k], rtol=1e-4, atol=1e-5, msg=k)


def train_pack_steps(cuda_graphs: bool, steps: int = 6) -> dict:
    """A pack of the five inits: graph-captured steps = eager steps (dropout 0)."""
    from omegaconf import open_dict

    cfgs = []
    for init in ("inv", "lin", "legs", "real", "rand"):
        c = compose(["preset=smoke", "model.dropout=0.0", f"model.init={init}", "dataset.options.n_train=64",
                     f"trainer.cuda_graphs={str(cuda_graphs).lower()}"])
        with open_dict(c):
            c.run = {"seed": 0}
        cfgs.append(c)
    data = load_dataset("synthetic", "data", **cfgs[0].dataset.options)
    task = SequenceTask(cfgs, data.spec, ["val", "test"], [1.0, 1.0], steps_per_epoch=steps, seed=0).cuda()
    opt_cfg = task.configure_optimizers()
    opt, sched = opt_cfg["optimizer"], opt_cfg["lr_scheduler"]["scheduler"]
    torch.manual_seed(1)
    x = torch.randn(8, 1024, 1, device="cuda")
    y = torch.randint(0, 10, (8,), device="cuda")
    if cuda_graphs:
        from ssm_cli.train.task import CudaGraphStep
        g = CudaGraphStep(task, opt)
        for _ in range(steps):
            g(x, y)
            sched.step()
    else:
        for _ in range(steps):
            opt.zero_grad(set_to_none=True)
            task._loss(task(x), y).sum().backward()
            opt.step()
            sched.step()
    torch.cuda.synchronize()
    return {k: v.detach().cpu().clone() for k, v in task.model.state_dict().items()}


@pytest.mark.gpu
def test_pack_graph_step_equals_eager_step():
    eager, graph = train_pack_steps(False), train_pack_steps(True)
    assert any(k.startswith("members.4.") for k in eager)
    for k in eager:
        torch.testing.assert_close(graph[k], eager[k], rtol=1e-4, atol=1e-5, msg=k)
