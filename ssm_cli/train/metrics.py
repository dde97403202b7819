"""Per-member losses and metrics of the Lightning module, and the divergence checks.

Sums are kept on the device as (K,) tensors, one entry per member of a pack (K = 1 for a single
run), and read once per epoch: reading a value waits for the device. A member whose loss goes
NaN or Inf is noted with its first bad step; ``Diverged`` is raised once every member has.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F

CHECK_EVERY = 100  # training steps between divergence checks on a GPU (each check waits for it)


class Diverged(RuntimeError):
    """The training loss became NaN or Inf (of every member of a pack)."""

    def __init__(self, step: int):
        super().__init__(f"loss is not finite at step {step}")
        self.step = step


class MemberMetrics:
    """Mixin of ``SequenceTask``: the metric sums of the current epoch and what is read from them.

    Uses the task's ``K``, ``spec``, ``eval_names``, ``steps_done``, ``diverged`` and ``trainer``."""

    def _reset_epoch(self) -> None:
        # sums per member: tensors of shape (K,) once the first batch is in
        self._train = {"loss": 0.0, "correct": 0.0, "n": 0}
        self._eval = {name: {"loss": 0.0, "correct": 0.0, "sq": 0.0, "n": 0} for name in self.eval_names}
        self._t_train = None
        self._epoch_train_seconds = 0.0
        self._t_eval = None
        self._epoch_eval_seconds = 0.0

    def _loss(self, out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """Per-member mean losses (K,) of out (K, B, O) against y (B, ...)."""
        out = out.float()
        K, B_ = out.shape[:2]
        if self.spec.task == "regression":
            return ((out - y.float().view(1, B_, -1)) ** 2).flatten(1).mean(1)  # (K)
        return F.cross_entropy(out.flatten(0, 1), y.repeat(K), reduction="none").view(K, B_).mean(1)  # (K)

    def _account(self, out: torch.Tensor, losses: torch.Tensor, y: torch.Tensor, batch_idx: int) -> None:
        """Accumulate per-member loss/accuracy on the device; reading a value forces a GPU sync, so
        divergence is checked every CHECK_EVERY steps, with each member's first bad step remembered."""
        n = y.shape[0]
        t = self._train
        t["loss"] = t["loss"] + losses * n  # (K)
        if self.spec.task == "classification":
            t["correct"] = t["correct"] + (out.argmax(-1) == y).sum(-1)  # (K)
        t["n"] += n
        if not isinstance(t.get("bad_step"), torch.Tensor):
            t["bad_step"] = torch.full((self.K,), -1, dtype=torch.long, device=losses.device)
        bad = ~torch.isfinite(losses) & (t["bad_step"] < 0)  # (K)
        t["bad_step"] = torch.where(bad, torch.full_like(t["bad_step"], self.steps_done - 1), t["bad_step"])
        if batch_idx % CHECK_EVERY == CHECK_EVERY - 1 or not losses.is_cuda:
            self.check_finite()

    def _account_eval(self, name: str, out: torch.Tensor, y: torch.Tensor) -> None:
        """Accumulate one evaluation batch of set ``name``: per-member loss, correct or squared error."""
        acc = self._eval[name]
        n = y.shape[0]
        acc["loss"] = acc["loss"] + self._loss(out, y).detach() * n  # (K)
        if self.spec.task == "classification":
            acc["correct"] = acc["correct"] + (out.argmax(-1) == y).sum(-1)  # (K)
        else:
            acc["sq"] = acc["sq"] + ((out.float() - y.float().view(1, n, -1)) ** 2).flatten(1).sum(1)  # (K)
        acc["n"] += n

    def check_finite(self) -> None:
        """Note members whose loss went non-finite; raise Diverged once every member has.

        A diverged member of a pack trains on as dead weight (its NaNs stay in its own parameters
        and activations); the others are unaffected (``ssm_cli.layers.packed``: NaN and Inf never
        cross from one member to another, forward or backward), and its record says where it
        diverged."""
        bad = self._train.get("bad_step")
        if not isinstance(bad, torch.Tensor):
            return
        for k, step in enumerate(bad.tolist()):
            if step >= 0 and k not in self.diverged:
                self.diverged[k] = int(step)
        if len(self.diverged) == self.K:
            raise Diverged(min(self.diverged.values()))

    def _per_member(self, v) -> list[float]:
        """A (K,) tensor of sums -> K floats (one device sync)."""
        return v.tolist() if isinstance(v, torch.Tensor) else [float(v)] * self.K

    def _over_ranks(self, sums: dict) -> dict:
        """``sums`` (loss, correct, sq, n) added over the DDP ranks; as they are with one rank."""
        from ssm_cli.train.ddp import all_sum, world_size

        if world_size() == 1:
            return sums
        keys = [k for k in ("loss", "correct", "sq", "n") if k in sums]
        stacked = torch.stack([torch.as_tensor(sums[k], dtype=torch.float64, device=self.device).expand(self.K)
                               for k in keys])  # (keys K)
        total = all_sum(stacked)
        out = {**sums, **{k: total[i] for i, k in enumerate(keys)}}
        out["n"] = int(total[keys.index("n"), 0].item())
        return out

    def epoch_metrics(self) -> list[dict]:
        """The finished epoch's metrics, one dict per member: accuracies in percent, RMSE for regression."""
        self.check_finite()
        t = self._over_ranks(self._train)
        common: dict = {"epoch": self.current_epoch + 1, "step": self.steps_done,
                        "lr": self.trainer.optimizers[0].param_groups[0]["lr"] if self.trainer.optimizers else None,
                        "train_seconds": self._epoch_train_seconds, "eval_seconds": self._epoch_eval_seconds}
        ms = [dict(common) for _ in range(self.K)]
        if t["n"]:
            for m, loss, correct in zip(ms, self._per_member(t["loss"]), self._per_member(t["correct"])):
                m["train_loss"] = loss / t["n"]
                if self.spec.task == "classification":
                    m["train_acc"] = 100.0 * correct / t["n"]
                m["train_samples_per_s"] = t["n"] / max(self._epoch_train_seconds, 1e-9)
        for m, e in zip(ms, self.eval_metrics()):
            m.update(e)
        return ms

    def eval_metrics(self) -> list[dict]:
        """Per member, the metrics of the sets evaluated since the last reset: ``<set>_loss`` and
        ``<set>_acc`` (percent) or ``<set>_rmse``."""
        ms: list[dict] = [{} for _ in range(self.K)]
        for name, acc in self._eval.items():
            acc = self._over_ranks(acc)
            if not acc["n"]:
                continue
            per = self._per_member
            for m, loss, correct, sq in zip(ms, per(acc["loss"]), per(acc["correct"]), per(acc["sq"])):
                m[f"{name}_loss"] = loss / acc["n"]
                if self.spec.task == "classification":
                    m[f"{name}_acc"] = 100.0 * correct / acc["n"]
                else:
                    m[f"{name}_rmse"] = math.sqrt(sq / (acc["n"] * self.spec.d_output))
        return ms
