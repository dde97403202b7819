"""On a GPU: a CUDA-graph training step computes exactly what the eager step computes (one model
and a pack of five)."""
import pytest
import torch
from omegaconf import open_dict

from ssm_cli.config import compose
from ssm_cli.data import load_dataset
from ssm_cli.train.cuda_graph import CudaGraphStep
from ssm_cli.train.task import SequenceTask


def train_steps(cfgs: list, cuda_graphs: bool, steps: int) -> dict:
    """``steps`` optimizer steps on one fixed batch; the model's final state dict."""
    data = load_dataset("synthetic", "data", **cfgs[0].dataset.options)
    task = SequenceTask(cfgs, data.spec, ["val", "test"], [1.0, 1.0], steps_per_epoch=steps, seed=0).cuda()
    opt_cfg = task.configure_optimizers()
    opt, sched = opt_cfg["optimizer"], opt_cfg["lr_scheduler"]["scheduler"]
    torch.manual_seed(1)
    x = torch.randn(8, 1024, 1, device="cuda")
    y = torch.randint(0, 10, (8,), device="cuda")
    graph = CudaGraphStep(task, opt) if cuda_graphs else None
    for _ in range(steps):
        if graph is not None:
            graph(x, y)
        else:
            opt.zero_grad(set_to_none=True)
            task._loss(task(x), y).sum().backward()
            opt.step()
        sched.step()
    torch.cuda.synchronize()
    return {k: v.detach().cpu().clone() for k, v in task.model.state_dict().items()}


def configs(inits: list[str], cuda_graphs: bool) -> list:
    cfgs = []
    for init in inits:
        c = compose(["preset=smoke", "model.dropout=0.0", f"model.init={init}", "dataset.options.n_train=64",
                     f"trainer.cuda_graphs={str(cuda_graphs).lower()}"])
        with open_dict(c):
            c.run = {"seed": 0}
        cfgs.append(c)
    return cfgs


@pytest.mark.gpu
@pytest.mark.parametrize("inits", [["inv"], ["inv", "lin", "legs", "real", "rand"]], ids=["one model", "pack of 5"])
def test_graph_step_equals_eager_step(inits):
    eager = train_steps(configs(inits, False), False, steps=6)
    graph = train_steps(configs(inits, True), True, steps=6)
    for k in eager:
        torch.testing.assert_close(graph[k], eager[k], rtol=1e-4, atol=1e-5, msg=k)
