"""The learning-rate schedules (``train/optim.py``): their factors, and scheduler states of
checkpoints whose cosine schedule pickled ``ssm_cli.layers.optim._WarmupCosine`` still load."""
import math
import pickle

import torch
from omegaconf import OmegaConf

from ssm_cli.train.optim import make_schedule


def lrs(scheduler: dict, steps: int, steps_per_epoch: int = 10, epochs: int = 3) -> list[float]:
    opt = torch.optim.AdamW([torch.nn.Parameter(torch.zeros(1))], lr=1.0)
    sched = make_schedule(OmegaConf.create(scheduler), opt, steps_per_epoch, epochs)
    out = []
    for _ in range(steps):
        out.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    return out


def test_schedule_factors():
    cos = lrs({"name": "cosine", "warmup_steps": 5}, 30)
    assert cos[:6] == [0.0, 0.2, 0.4, 0.6, 0.8, 1.0]
    assert math.isclose(cos[5 + 25 // 2], 0.5 * (1 + math.cos(math.pi * 12 / 25)), rel_tol=1e-12)
    step = lrs({"name": "step", "warmup_steps": 2, "milestones": [1, 2], "gamma": 0.5}, 30)
    assert step[:3] == [0.5, 1.0, 1.0] and step[10] == 0.5 and step[20] == 0.25
    const = lrs({"name": "constant", "warmup_steps": 4}, 30)
    assert const[:5] == [0.25, 0.5, 0.75, 1.0, 1.0] and const[-1] == 1.0
    assert lrs({"name": "constant", "warmup_steps": 0}, 3) == [1.0, 1.0, 1.0]


def test_an_old_checkpoints_cosine_state_loads():
    # protocol 0, as pickle writes an instance of ssm_cli.layers.optim._WarmupCosine
    old = (b"ccopy_reg\n_reconstructor\n(cssm_cli.layers.optim\n_WarmupCosine\nc__builtin__\nobject\nNtR"
           b"(dVwarmup_steps\nI5\nsVtotal_steps\nI30\nsb.")
    schedule = pickle.loads(old)
    opt = torch.optim.AdamW([torch.nn.Parameter(torch.zeros(1))], lr=1.0)
    sched = make_schedule(OmegaConf.create({"name": "cosine", "warmup_steps": 5}), opt, 10, 3)
    state = sched.state_dict()
    state["schedule"] = schedule  # what the old scheduler's state held besides the numbers
    sched.load_state_dict(state)
    assert sched.lr_lambdas[0](10) == make_schedule(OmegaConf.create({"name": "cosine", "warmup_steps": 5}),
                                                    opt, 10, 3).lr_lambdas[0](10)
