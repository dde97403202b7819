"""Time the authors' JAX S5 (lindermanlab/S5) training step, to compare with ``speed.py --model s5``.

The authors' code is not part of this repository: pass the folder of a checkout (the one that
holds ``s5/``) with ``--s5 PATH``; it is imported from there, never copied. Needs jax, flax and
optax (on the GPU machine). Shims for current JAX/Flax, applied before the import:
``jax.numpy.DeviceArray`` (removed; used as a type annotation) -> ``jax.Array``;
``jax.tree_leaves`` (removed) -> ``jax.tree_util.tree_leaves``; and ``Module.init`` returning a
plain dict where the authors call ``.unfreeze()`` on the parameters -> the result is frozen first.

    python benchmarks/speed_s5_jax.py --s5 ~/src/S5                      # sCIFAR ablation size
    python benchmarks/speed_s5_jax.py --s5 ~/src/S5 --n-layers 6 --d-model 512 --d-state 384 \\
        --blocks 3 --batchnorm --prenorm                                  # their LRA-Image size

Prints samples/s, ms per step and the device's peak memory; ``--json`` writes them.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from functools import partial


def apply_shims() -> None:
    import jax
    import jax.numpy as jnp
    if not hasattr(jnp, "DeviceArray"):
        jnp.DeviceArray = jax.Array
    if not hasattr(jax, "tree_leaves"):
        jax.tree_leaves = jax.tree_util.tree_leaves


class FrozenInit:
    """A model whose ``init`` returns frozen variables (the authors call ``.unfreeze()`` on them)."""

    def __init__(self, model):
        self.model = model

    def init(self, *args, **kwargs):
        from flax.core import freeze
        return freeze(self.model.init(*args, **kwargs))

    def __getattr__(self, name):
        return getattr(self.model, name)


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--s5", required=True, help="folder of a lindermanlab/S5 checkout (holds s5/)")
    p.add_argument("--batch", type=int, default=50)
    p.add_argument("--L", type=int, default=1024)
    p.add_argument("--d-input", type=int, default=3)
    p.add_argument("--classes", type=int, default=10)
    p.add_argument("--d-model", type=int, default=128)
    p.add_argument("--n-layers", type=int, default=4)
    p.add_argument("--d-state", type=int, default=64, help="P, the full state size")
    p.add_argument("--blocks", type=int, default=1, help="J")
    p.add_argument("--no-bidirectional", action="store_true")
    p.add_argument("--batchnorm", action="store_true")
    p.add_argument("--prenorm", action="store_true")
    p.add_argument("--dropout", type=float, default=0.1)
    p.add_argument("--lr", type=float, default=0.004)
    p.add_argument("--ssm-lr", type=float, default=0.001)
    p.add_argument("--weight-decay", type=float, default=0.05)
    p.add_argument("--warmup", type=int, default=5, help="untimed steps (compilation included)")
    p.add_argument("--steps", type=int, default=50)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", default=None)
    return p.parse_args(argv)


def main(argv=None) -> int:
    a = parse_args(argv)
    if not os.path.isdir(os.path.join(a.s5, "s5")):
        print(f"error: {a.s5!r} has no s5/ folder; pass the root of a lindermanlab/S5 checkout", file=sys.stderr)
        return 2
    apply_shims()
    sys.path.insert(0, os.path.abspath(a.s5))
    import jax
    import jax.numpy as jnp
    from jax.scipy.linalg import block_diag
    from s5.seq_model import BatchClassificationModel
    from s5.ssm import init_S5SSM
    from s5.ssm_init import make_DPLR_HiPPO
    from s5.train_helpers import create_train_state, train_step

    block = a.d_state // a.blocks
    Lambda, _, _, V, _ = make_DPLR_HiPPO(block)
    half, P = block // 2, a.d_state // 2  # conj_sym, as their runs
    Lambda, V = Lambda[:half], V[:, :half]
    Lambda = (Lambda * jnp.ones((a.blocks, half))).ravel()
    Vinv = block_diag(*([V.conj().T] * a.blocks))
    V = block_diag(*([V] * a.blocks))
    ssm = init_S5SSM(H=a.d_model, P=P, Lambda_re_init=Lambda.real, Lambda_im_init=Lambda.imag, V=V, Vinv=Vinv,
                     C_init="trunc_standard_normal", discretization="zoh", dt_min=0.001, dt_max=0.1,
                     conj_sym=True, clip_eigs=False, bidirectional=not a.no_bidirectional)
    model_cls = partial(BatchClassificationModel, ssm=ssm, d_output=a.classes, d_model=a.d_model,
                        n_layers=a.n_layers, padded=False, activation="half_glu1", dropout=a.dropout,
                        mode="pool", prenorm=a.prenorm, batchnorm=a.batchnorm, bn_momentum=0.95)
    rng = jax.random.PRNGKey(a.seed)
    state = create_train_state(lambda **kw: FrozenInit(model_cls(**kw)), rng, False, False, in_dim=a.d_input,
                               bsz=a.batch, seq_len=a.L, weight_decay=a.weight_decay, batchnorm=a.batchnorm,
                               opt_config="standard", ssm_lr=a.ssm_lr, lr=a.lr)
    model = model_cls(training=True)
    x = jax.random.normal(rng, (a.batch, a.L, a.d_input))
    y = jax.random.randint(rng, (a.batch,), 0, a.classes)
    ts = jnp.ones((a.batch, a.L))
    for _ in range(a.warmup):
        rng, k = jax.random.split(rng)
        state, loss = train_step(state, k, x, y, ts, model, a.batchnorm)
    loss.block_until_ready()
    times = []
    for _ in range(a.repeats):
        t = time.perf_counter()
        for _ in range(a.steps):
            rng, k = jax.random.split(rng)
            state, loss = train_step(state, k, x, y, ts, model, a.batchnorm)
        loss.block_until_ready()
        times.append((time.perf_counter() - t) / a.steps)
    step = min(times)
    stats = jax.devices()[0].memory_stats() or {}
    out = {"impl": "authors' JAX S5", "device": str(jax.devices()[0]), "jax": jax.__version__, "args": vars(a),
           "samples_per_s": a.batch / step, "step_ms": 1e3 * step,
           "peak_MiB": stats.get("peak_bytes_in_use", 0) / 2 ** 20 or None}
    print(f"authors' S5 on {out['device']}: {out['samples_per_s']:,.0f} samples/s, {out['step_ms']:.2f} ms/step, "
          f"peak {out['peak_MiB'] or float('nan'):.0f} MiB (best of {a.repeats} rounds x {a.steps} steps)")
    if a.json:
        with open(a.json, "w") as f:
            json.dump(out, f, indent=2, default=str)
    return 0


if __name__ == "__main__":
    sys.exit(main())
