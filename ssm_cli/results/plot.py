"""Learning curves: a per-epoch metric, one line per configuration (as ``ssm table``'s rows), the
mean over its seeds with a band of ± one standard deviation.

One file per (ablation, dataset, preset, metric): ``curves-<ablation>-<dataset>-<preset>-<metric>.<format>``.
Test-set curves (``--metric test_acc``) exist only for runs made with ``trainer.test_at=every``."""
from __future__ import annotations

import statistics
from pathlib import Path

from ssm_cli.errors import UserError
from ssm_cli.results.table import _CONFIG, _value, differing_keys, load_records

FORMATS = ("png", "pdf", "svg")


def _curve(record: dict, metric: str) -> list[float] | None:
    """The metric per epoch; None unless every epoch has it (with ``trainer.test_at=best`` the test
    sets' metrics are in the best epoch's entry alone)."""
    curve = [m.get(metric) if isinstance(m, dict) else None for m in record["epochs"]]
    return curve if curve and None not in curve else None


def mean_std(curves: list[list[float]]) -> tuple[list[float], list[float]]:
    """Per epoch, over the curves (seeds) as long as the shortest: mean and standard deviation
    (sample; 0 for one curve)."""
    n = min(len(c) for c in curves)
    columns = [[c[i] for c in curves] for i in range(n)]
    return ([statistics.fmean(col) for col in columns],
            [statistics.stdev(col) if len(col) > 1 else 0.0 for col in columns])


def plot_curves(runs_dir: Path, out_dir: Path | None = None, metric: str = "val_acc",
                unreadable: list | None = None, fmt: str = "png") -> list[Path]:
    """One picture per (ablation, dataset, preset) under ``out_dir`` (default: ``runs_dir``), in
    ``fmt`` (png, pdf, svg); returns the paths. Unreadable records are left out and added to
    ``unreadable`` (``table.load_records``)."""
    if fmt not in FORMATS:
        raise UserError(f"unknown plot format {fmt!r}; valid: {', '.join(FORMATS)}")
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    records = [r for r in load_records(runs_dir, unreadable) if isinstance(r.get("epochs"), list)]
    # panel (ablation, dataset, preset) -> line (variant index, variant, config hash) -> seeds' curves
    panels: dict[tuple, dict[tuple, list[list[float]]]] = {}
    configs: dict[tuple, dict] = {}  # (ablation, dataset, preset, variant) -> config hash -> flat config
    for r in records:
        curve = _curve(r, metric)
        if curve is None:
            continue
        panel = (r.get("ablation") or "", r.get("dataset") or "", r.get("preset") or "")
        line = (r.get("variant_index", 0), r.get("variant") or "", r.get("config_hash") or "")
        panels.setdefault(panel, {}).setdefault(line, []).append(curve)
        configs.setdefault((*panel, line[1]), {})[line[2]] = r.get(_CONFIG) or {}
    out_dir = Path(out_dir or runs_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = []
    for panel, lines in sorted(panels.items()):
        ablation, dataset, preset = panel
        fig, ax = plt.subplots(figsize=(6.4, 4.2))
        for (_, variant, h), curves in sorted(lines.items()):
            siblings = configs[(*panel, variant)]
            keys = differing_keys(list(siblings.values()))  # a variant run in several configurations
            label = variant + "".join(f", {k}={_value(siblings[h].get(k, '<absent>'))}" for k in keys)
            mean, std = mean_std(curves)
            epochs = range(1, len(mean) + 1)
            (drawn,) = ax.plot(epochs, mean, marker="o", markersize=3, label=f"{label} (n={len(curves)})")
            if len(curves) > 1:
                ax.fill_between(epochs, [m - s for m, s in zip(mean, std)], [m + s for m, s in zip(mean, std)],
                                color=drawn.get_color(), alpha=0.2, linewidth=0)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_xlabel("epoch")
        ax.set_ylabel(f"{metric} (mean ± std over seeds)")
        ax.set_title(f"{ablation} on {dataset} (preset {preset})")
        ax.grid(alpha=0.3)
        ax.legend(fontsize="small")
        path = out_dir / f"curves-{ablation}-{dataset}-{preset}-{metric}.{fmt}"
        fig.tight_layout()
        fig.savefig(path, dpi=120)
        plt.close(fig)
        paths.append(path)
    return paths
