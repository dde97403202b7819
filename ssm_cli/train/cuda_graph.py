"""The CUDA-graph training step (``trainer.cuda_graphs``): one optimizer step replayed from a graph."""
from __future__ import annotations

import torch

from ssm_cli.trace import trace


class CudaGraphStep:
    """A whole training step (forward, backward, clipping, AdamW) captured once in a CUDA graph.

    These models are launch-bound on a GPU: a step of the sCIFAR ablation model is ~1,000 small
    kernels. Replaying a captured graph removes the CPU launch cost (about 2x on an H100,
    benchmarks/README.md). The first ``WARMUP`` steps run eagerly on a side stream (cuFFT plans,
    allocator), then one step is captured; later steps copy the batch into the static inputs and
    replay. Batches of another shape (the last of an epoch) run eagerly — they update the same
    parameters and optimizer state in place. Requires AdamW(fused, capturable) with tensor lrs.
    """

    WARMUP = 3

    def __init__(self, task, optimizer: torch.optim.Optimizer):
        """``task``: the ``ssm_cli.train.task.SequenceTask`` whose step is captured."""
        self.task, self.optimizer = task, optimizer
        self.graph: torch.cuda.CUDAGraph | None = None
        self.shape: tuple | None = None
        self.warm = 0
        self.stream = torch.cuda.Stream()

    def accepts(self, x: torch.Tensor, y: torch.Tensor) -> bool:
        if self.shape is None:
            self.shape = (tuple(x.shape), x.dtype, tuple(y.shape))
        return self.shape == (tuple(x.shape), x.dtype, tuple(y.shape))

    def _step(self, x: torch.Tensor, y: torch.Tensor):
        """Forward, backward, clipping, AdamW: eager during warm-up, recorded during capture."""
        self.optimizer.zero_grad(set_to_none=True)
        with self._autocast():
            out = self.task(x)
            losses = self.task._loss(out, y)  # (K)
        losses.sum().backward()
        self.task.clip_gradients_()
        self.optimizer.step()
        return out, losses

    def _autocast(self):
        # Lightning's autocast (bf16-mixed) is active around training_step; captured code must not
        # use the autocast weight cache (it is freed when autocast exits).
        enabled = torch.is_autocast_enabled("cuda")
        dtype = torch.get_autocast_dtype("cuda") if enabled else torch.float32
        return torch.autocast("cuda", dtype=dtype, enabled=enabled, cache_enabled=False)

    def __call__(self, x: torch.Tensor, y: torch.Tensor):
        if self.warm < self.WARMUP:
            self.stream.wait_stream(torch.cuda.current_stream())
            with torch.cuda.stream(self.stream):
                out, loss = self._step(x, y)
            torch.cuda.current_stream().wait_stream(self.stream)
            self.warm += 1
            return out, loss
        if self.graph is None:
            self.x, self.y = x.clone(), y.clone()
            self.graph = torch.cuda.CUDAGraph()
            with torch.cuda.graph(self.graph):
                self.out, self.loss = self._step(self.x, self.y)
            trace("training step captured in a CUDA graph")
        self.x.copy_(x)
        self.y.copy_(y)
        self.graph.replay()
        return self.out, self.loss
