"""One run over several devices (``trainer.devices=N``, Lightning DDP).

Every rank trains the same run: rank 0 keeps its record and checkpoint, the others only compute
(``is_rank_zero``). Each global batch of ``trainer.batch_size`` samples is drawn as in a
one-process run (the same shuffling generator on every rank) and cut into one share per rank
(``RankShard``); the loss of a share is weighted so that the mean of the ranks' gradients (DDP
averages them) is the gradient of the whole batch's mean loss. Metric sums are added over the
ranks (``all_sum``) before they become a record's numbers: the record equals a one-process run's
up to float rounding.

Under DDP a run trains without CUDA graphs and outside packs; its record says so (``ddp_notes``).
"""
from __future__ import annotations

import os

import torch


def world_size() -> int:
    """Ranks of the process group (1 when none is initialised)."""
    d = torch.distributed
    return d.get_world_size() if d.is_available() and d.is_initialized() else 1


def rank() -> int:
    """This process's global rank: from the process group once it exists, before that from the
    variables the launchers set (Lightning's: LOCAL_RANK and NODE_RANK; SLURM's: SLURM_PROCID
    when the job has several tasks); 0 in a process started on its own."""
    d = torch.distributed
    if d.is_available() and d.is_initialized():
        return d.get_rank()
    if int(os.environ.get("SLURM_NTASKS", "1")) > 1 and "SLURM_PROCID" in os.environ:
        return int(os.environ["SLURM_PROCID"])
    return int(os.environ.get("RANK") or os.environ.get("LOCAL_RANK") or 0)


def is_rank_zero() -> bool:
    return rank() == 0


def share(n: int, r: int, w: int) -> tuple[int, int]:
    """The slice [lo, hi) of a batch of ``n`` samples that rank ``r`` of ``w`` computes."""
    return n * r // w, n * (r + 1) // w


class RankShard:
    """This rank's share of each batch of ``loader`` (an iterable of (x, y)): yields
    (x_share, y_share, weight) with weight = share size × ranks / batch size, so that the average
    over the ranks of weight × (the share's mean loss) is the batch's mean loss. With one rank it
    yields the batches whole (weight 1).

    A rank with an empty share (a last batch of fewer samples than ranks) skips it: in evaluation
    its sums miss nothing; in training (``train``) every rank skips that batch, as DDP needs the
    same steps on all ranks, so such a run leaves out those few samples of each epoch."""

    def __init__(self, loader, train: bool):
        self.loader, self.train = loader, train
        self.generator = getattr(loader, "generator", None)  # the shuffling state (RecordKeeper)

    def __len__(self) -> int:
        return len(self.loader)

    def __iter__(self):
        r, w = rank(), world_size()
        for x, y in self.loader:
            n = y.shape[0]
            lo, hi = share(n, r, w)
            if (self.train and n < w) or hi == lo:
                continue
            yield x[lo:hi], y[lo:hi], (hi - lo) * w / n


def all_sum(t: torch.Tensor) -> torch.Tensor:
    """``t`` summed over the ranks (itself with one rank)."""
    if world_size() == 1:
        return t
    t = t.detach().clone()
    torch.distributed.all_reduce(t)
    return t


def ddp_notes(cfg) -> list[str]:
    """What a run over ``trainer.devices`` > 1 does differently, for its record."""
    notes = [f"DDP over {int(cfg.trainer.devices)} devices: each rank computes its share of every "
             f"batch of {int(cfg.trainer.batch_size)}; metrics are summed over the ranks"]
    if cfg.trainer.cuda_graphs:
        notes.append("CUDA graphs off under DDP (trainer.cuda_graphs ignored)")
    if int(cfg.launcher.get("pack", 1)) > 1:
        notes.append("packs off under DDP: the run trains alone (launcher.pack ignored)")
    return notes
