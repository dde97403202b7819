"""Aggregate run records into tables: mean ± std over seeds, beside the paper's figure.

One row per configuration that was run: (ablation, dataset, preset, variant, config hash). The
config hash (``config.config_hash``) leaves the seed out, so the seeds of one configuration share
it and ``n`` counts them; runs of one variant that differ in anything else (``model.d_state``,
``trainer.limit_train_batches``, ...) have different hashes and are never averaged together: each
is its own row, and the ``overrides`` column shows the keys in which the rows of a variant differ.
Rows come in the order the ablation declares its variants. Accuracies are in percent; ``diff`` is
ours minus the paper's.
"""
from __future__ import annotations

import csv
import io
import json
import math
import statistics
from pathlib import Path

import yaml

from ssm_cli.errors import UserError
from ssm_cli.train.record import CONFIG, RECORD, UnreadableRecord, load_record

FORMATS = ("rich", "md", "csv", "latex", "json")
COLUMNS = ("ablation", "dataset", "preset", "protocol", "variant", "overrides", "config_hash", "metric",
           "mean", "std", "n", "paper", "diff", "flags")
# the record field under which load_records keeps a run's flattened config (config.yaml), for the
# overrides column; never rendered
_CONFIG = "_config"


def _flatten(d: dict, prefix: str = "") -> dict:
    out = {}
    for k, v in d.items():
        if isinstance(v, dict):
            out.update(_flatten(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out


def _identity(config: dict) -> dict:
    """The keys of a resolved config that make up its hash (``config.HASH_EXCLUDED`` left out), flat."""
    from ssm_cli.config import HASH_EXCLUDED

    flat = _flatten(config)
    return {k: v for k, v in flat.items()
            if not any(k == x or k.startswith(x + ".") for x in HASH_EXCLUDED)}


def _read_config(run_dir: Path) -> dict | None:
    try:
        data = yaml.load((run_dir / CONFIG).read_text(), Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))
    except (OSError, yaml.YAMLError):
        return None
    return data if isinstance(data, dict) else None


def _complete(record: dict, run_dir: Path) -> None:
    """Fill in what a table needs and older records lack, from the run's ``config.yaml``: the
    config hash (without the seed), the protocol, and the flattened config for the overrides column."""
    from omegaconf import OmegaConf

    from ssm_cli.config import config_hash

    config = _read_config(run_dir)
    if config is None:
        record.setdefault(_CONFIG, {})
        return
    if not record.get("config_hash"):
        record["config_hash"] = config_hash(OmegaConf.create(config))
    if "protocol" not in record:
        chosen = [o.split("=", 1)[1] for o in record.get("overrides") or [] if o.startswith("protocol=")]
        uses = bool((config.get("preset") or {}).get("protocol")) or bool(chosen)
        record["protocol"] = (chosen[-1] if chosen else config.get("dataset", {}).get("name")) if uses else None
    record[_CONFIG] = _identity(config)


def load_records(runs_dir: Path, unreadable: list | None = None) -> list[dict]:
    """Every run record under ``runs_dir``, completed from its ``config.yaml`` (``_complete``). A
    ``record.json`` that is not a JSON object is left out and, with ``unreadable`` given, appended
    to it as an ``UnreadableRecord`` (path and reason): callers list them, never drop them silently."""
    runs_dir = Path(runs_dir)
    if not runs_dir.exists():
        raise UserError(f"no runs folder {str(runs_dir)!r}; run `ssm run ...` first or name the folder holding the runs")
    records = []
    for path in sorted(runs_dir.rglob(RECORD)):
        try:
            record = load_record(path)
        except UnreadableRecord as e:
            if unreadable is not None:
                unreadable.append(e)
            continue
        if record is not None:
            _complete(record, path.parent)
            records.append(record)
    return records


def _value(v) -> str:
    return json.dumps(v) if isinstance(v, (list, dict)) or v is None else str(v)


def differing_keys(configs: list[dict]) -> list[str]:
    """The keys (sorted) whose values are not the same in all of ``configs`` (flat dicts)."""
    keys = set().union(*configs) if configs else set()
    return sorted(k for k in keys if len({_value(c.get(k, "<absent>")) for c in configs}) > 1)


def aggregate(records: list[dict]) -> list[dict]:
    """Rows with mean/std over the completed seeds of each configuration:
    (ablation, dataset, preset, variant, config hash)."""
    groups: dict[tuple, list[dict]] = {}
    for r in records:
        key = (r.get("ablation"), r.get("dataset"), r.get("preset"), r.get("variant"), r.get("config_hash"))
        groups.setdefault(key, []).append(r)
    seeds_of: dict[tuple, set] = {}  # the seeds run by any configuration of each (ablation, dataset, preset)
    configs_of: dict[tuple, dict] = {}  # the configurations of each variant: hash -> flat config
    for (ablation, dataset, preset, variant, h), rs in groups.items():
        seeds_of.setdefault((ablation, dataset, preset), set()).update(r.get("seed") for r in rs)
        configs_of.setdefault((ablation, dataset, preset, variant), {})[h] = rs[0].get(_CONFIG) or {}
    rows = []
    for (ablation, dataset, preset, variant, h), rs in groups.items():
        done = [r for r in rs if r.get("status") == "completed" and isinstance(r.get("result"), (int, float))]
        values = [float(r["result"]) for r in done]
        mean = statistics.fmean(values) if values else None
        std = statistics.stdev(values) if len(values) > 1 else (0.0 if values else None)
        paper = next((r.get("paper") for r in rs if r.get("paper") is not None), None)
        counts = {s: sum(r.get("status") == s for r in rs) for s in ("diverged", "failed", "interrupted", "running", "pending")}
        flags = ", ".join(f"{n} {s}" for s, n in counts.items() if n)
        missing = sorted(seeds_of.get((ablation, dataset, preset), set()) - {r.get("seed") for r in rs}, key=str)
        if missing:  # seeds that other rows of the ablation ran and this one has no record of
            flags = ", ".join(filter(None, [flags, f"missing seed{'s' if len(missing) > 1 else ''} {', '.join(map(str, missing))}"]))
        siblings = configs_of[(ablation, dataset, preset, variant)]
        mine = siblings[h]
        overrides = ", ".join(f"{k}={_value(mine.get(k, '<absent>'))}" for k in differing_keys(list(siblings.values())))
        rows.append({
            "ablation": ablation, "dataset": dataset, "preset": preset, "protocol": rs[0].get("protocol"),
            "variant": variant, "overrides": overrides, "config_hash": h,
            "metric": rs[0].get("metric"), "mean": mean, "std": std, "n": len(values), "paper": paper,
            "diff": (mean - paper) if (mean is not None and paper is not None) else None,
            "flags": flags, "seeds": sorted(r.get("seed") for r in done),
            "_order": (ablation or "", dataset or "", preset or "", rs[0].get("variant_index", 0), overrides),
        })
    rows.sort(key=lambda row: row["_order"])
    for row in rows:
        del row["_order"]
    return rows


def _fmt(x, digits: int = 2) -> str:
    return "" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{x:.{digits}f}"


def _cells(row: dict) -> list[str]:
    ms = "" if row["mean"] is None else f"{row['mean']:.2f} ± {row['std']:.2f}"
    diff = "" if row["diff"] is None else f"{row['diff']:+.2f}"
    return [row["ablation"] or "", row["dataset"] or "", row["preset"] or "", row["protocol"] or "none",
            row["variant"] or "", row["overrides"], row["metric"] or "", ms,
            str(row["n"]), _fmt(row["paper"]), diff, row["flags"]]


HEADER = ["ablation", "dataset", "preset", "protocol", "variant", "overrides", "metric", "ours (mean ± std)", "n",
          "paper", "diff", "flags"]


def render(rows: list[dict], fmt: str) -> str:
    if fmt not in FORMATS:
        raise UserError(f"unknown table format {fmt!r}; valid: {', '.join(FORMATS)}")
    if fmt == "json":
        return json.dumps([{k: row[k] for k in (*COLUMNS, "seeds")} for row in rows], indent=1)
    if fmt == "csv":
        buf = io.StringIO()
        w = csv.writer(buf)
        w.writerow(COLUMNS)
        for row in rows:
            w.writerow(["" if row[c] is None else row[c] for c in COLUMNS])
        return buf.getvalue()
    if fmt == "md":
        esc = lambda s: s.replace("|", r"\|")
        lines = ["| " + " | ".join(HEADER) + " |", "|" + "---|" * len(HEADER)]
        lines += ["| " + " | ".join(esc(c) for c in _cells(row)) + " |" for row in rows]
        return "\n".join(lines) + "\n"
    if fmt == "latex":
        esc = lambda s: (s.replace("_", r"\_").replace("%", r"\%").replace("&", r"\&").replace("#", r"\#")
                         .replace("$", r"\$").replace("±", r"$\pm$"))
        lines = [r"\begin{tabular}{lllllllrrrrl}", r"\toprule", " & ".join(map(esc, HEADER)) + r" \\", r"\midrule"]
        lines += [" & ".join(esc(c) for c in _cells(row)) + r" \\" for row in rows]
        lines += [r"\bottomrule", r"\end{tabular}"]
        return "\n".join(lines) + "\n"
    # rich: rendered to text here so the CLI can print or save it alike
    from rich.console import Console
    from rich.markup import escape
    from rich.table import Table

    table = Table(title="ssm results", show_lines=False)
    for h in HEADER:
        table.add_column(h, justify="right" if h in ("n", "paper", "diff", "ours (mean ± std)") else "left")
    for row in rows:
        table.add_row(*map(escape, _cells(row)), style="yellow" if row["flags"] else None)
    console = Console(record=True, width=160, file=io.StringIO())
    console.print(table)
    return console.export_text()
