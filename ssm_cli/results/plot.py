"""Learning curves: validation metric per epoch, one line per variant (mean over seeds).

Test-set curves (``--metric test_acc``) exist only for runs made with ``trainer.test_at=every``."""
from __future__ import annotations

from pathlib import Path

from ssm_cli.results.table import load_records


def plot_curves(runs_dir: Path, out_dir: Path | None = None, metric: str = "val_acc",
                unreadable: list | None = None) -> list[Path]:
    """One PNG per (ablation, dataset) under ``out_dir`` (default: ``runs_dir``); returns the paths.
    Unreadable records are left out and added to ``unreadable`` (``table.load_records``)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    records = [r for r in load_records(runs_dir, unreadable) if isinstance(r.get("epochs"), list)]
    by_panel: dict[tuple, dict[str, list[list[float]]]] = {}
    order: dict[tuple, dict[str, int]] = {}
    for r in records:
        key = (r.get("ablation"), r.get("dataset"))
        curve = [m.get(metric) if isinstance(m, dict) else None for m in r["epochs"]]
        # a curve only where every epoch has the metric: with trainer.test_at=best the test sets'
        # metrics are in the best epoch's entry alone
        if curve and None not in curve:
            by_panel.setdefault(key, {}).setdefault(r.get("variant"), []).append(curve)
            order.setdefault(key, {})[r.get("variant")] = r.get("variant_index", 0)
    out_dir = Path(out_dir or runs_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = []
    for (ablation, dataset), variants in sorted(by_panel.items()):
        fig, ax = plt.subplots(figsize=(6, 4))
        for variant in sorted(variants, key=lambda v: order[(ablation, dataset)][v]):
            curves = variants[variant]
            n = min(len(c) for c in curves)
            mean = [sum(c[i] for c in curves) / len(curves) for i in range(n)]
            ax.plot(range(1, n + 1), mean, marker="o", label=f"{variant} (n={len(curves)})")
        ax.set_xlabel("epoch")
        ax.set_ylabel(metric)
        ax.set_title(f"{ablation} on {dataset}")
        ax.grid(alpha=0.3)
        ax.legend()
        path = out_dir / f"curves-{ablation}-{dataset}.png"
        fig.tight_layout()
        fig.savefig(path, dpi=100)
        plt.close(fig)
        paths.append(path)
    return paths
