"""The test sets at each member's best validation epoch (``trainer.test_at=best``).

Each epoch evaluates ``val`` only. Whenever an epoch becomes a member's best so far
(``ssm_cli.train.record.best_epoch``: max accuracy / min RMSE, ties: the earliest), the task copies
that member's weights and buffers (``best_states``, on the device, saved in checkpoints so a
resumed run picks the same weights). After the last epoch ``run_test_pass`` loads each member's
copy and evaluates the other sets once, all members in one pass; their metrics join the best
epoch's history entry, so only that entry has test keys. With ``trainer.test_at=every`` every
set is evaluated every epoch and nothing is kept.
"""
from __future__ import annotations

import time

import pytorch_lightning as pl

from ssm_cli.trace import trace
from ssm_cli.train.record import best_epoch


class BestWeights:
    """Mixin of ``SequenceTask``: keeps and loads the members' weights of their best epochs.

    Uses the task's ``histories``, ``diverged``, ``best_states``, ``members``, ``spec`` and ``eval_names``."""

    @property
    def test_names(self) -> list[str]:
        """The evaluation sets that do not choose the best epoch: all but ``val``."""
        return [n for n in self.eval_names if n != "val"]

    def _has_test_metrics(self, entry: dict) -> bool:
        return all(f"{n}_loss" in entry for n in self.test_names)

    def keep_best_states(self) -> None:
        """Once an epoch's history entries are in: copy the weights and buffers of each member whose
        new epoch is its best so far and lacks the test metrics (a tie keeps the earlier copy)."""
        for k, history in enumerate(self.histories):
            best = best_epoch(history, self.spec.task) if k not in self.diverged else None
            if best is None:
                continue
            if self._has_test_metrics(best):  # evaluated with its epoch (test_at=every): nothing to keep
                self.best_states[k] = None
            elif best is history[-1]:
                state = {n: t.detach().clone() for n, t in self.members[k].state_dict().items()}
                self.best_states[k] = {"epoch": best["epoch"], "state": state}

    def untested_members(self) -> list[int]:
        """Members (not diverged) whose best epoch has no test metrics yet."""
        out = []
        for k, history in enumerate(self.histories):
            best = best_epoch(history, self.spec.task)
            if k not in self.diverged and best is not None and not self._has_test_metrics(best):
                out.append(k)
        return out

    def load_best_states(self, members: list[int]) -> None:
        """Load each of ``members``' weights and buffers of its best epoch (in place)."""
        for k in members:
            best, kept = best_epoch(self.histories[k], self.spec.task), self.best_states[k]
            if kept is None or kept["epoch"] != best["epoch"]:
                raise RuntimeError(f"member {k}: no weights kept of its best epoch {best['epoch']} "
                                   f"(kept: {kept and kept['epoch']})")
            self.members[k].load_state_dict(kept["state"])

    def evaluate_on(self, names: list[str]) -> None:
        """The next evaluation loop gets the loaders of ``names``, in this order; sums start at 0."""
        self.loop_names = list(names)
        self._reset_epoch()


def run_test_pass(trainer: pl.Trainer, task, loaders: dict) -> float | None:
    """Evaluate the sets other than ``val`` once, each member with its weights of its best
    validation epoch, for the members whose best epoch has no test metrics (``trainer.test_at=best``);
    the metrics join that epoch's history entry. All members in one pass (a member with nothing to
    test computes along, unused). Returns the pass's seconds, None if there was nothing to test.

    ``trainer.validate`` runs it as it runs each epoch's evaluation (eval mode, no CUDA graphs,
    the same precision and ``limit_eval_batches``), so ``every`` and ``best`` agree to float rounding.
    The weights stay those of the best epochs afterwards; ``last.ckpt`` keeps the last epoch's.
    """
    members = task.untested_members()
    if not members:
        return None
    t = time.perf_counter()
    task.load_best_states(members)
    task.evaluate_on(task.test_names)
    trainer.validate(task, dataloaders=[loaders[n] for n in task.test_names], verbose=False)
    metrics = task.eval_metrics()  # reads the sums: waits for the device
    for k in members:
        best_epoch(task.histories[k], task.spec.task).update(metrics[k])
    trace(f"test pass at the best epochs done ({len(members)} run(s))")
    return time.perf_counter() - t
