"""benchmarks/speed.py on CPU at tiny sizes: ours only (no reference file needed), JSON has positive figures."""
import json
import os
import subprocess
import sys

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SCRIPT = os.path.join(REPO, "benchmarks", "speed.py")
TINY = ["--device", "cpu", "--L", "64", "--batch", "4", "--d-model", "16", "--d-state", "8", "--n-layers", "2",
        "--warmup", "1", "--steps", "2", "--repeats", "2"]


def run(*args, tmp_path):
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    p = subprocess.run([sys.executable, SCRIPT, *args], cwd=tmp_path, capture_output=True, text=True,
                       timeout=120, env=env)
    assert p.returncode == 0, p.stdout + p.stderr
    return p


def test_speed_tiny_cpu_ours_only(tmp_path):
    out = tmp_path / "speed.json"
    p = run(*TINY, "--no-reference", "--bf16", "--block", "16", "--json", str(out), tmp_path=tmp_path)
    data = json.loads(out.read_text())
    assert data["device_type"] == "cpu" and data["torch"]
    rows = {r["name"]: r for r in data["variants"]}
    assert set(rows) == {"ours", "ours+bf16", "ours+block16"}
    for r in rows.values():
        assert r["error"] is None
        assert r["samples_per_s"] > 0 and len(r["samples_per_s_all"]) == 2 and r["step_ms"] > 0
        assert r["ratio_to_reference"] is None
    assert data["params"]["ours"]["total"] > 0
    groups = data["params"]["ours"]["groups"]
    # the reference's convention: biases and norm parameters without weight decay
    assert [(g["lr"], g["weight_decay"]) for g in groups] == [(0.01, 0.01), (0.01, 0.0), (0.001, 0.0)]
    assert "| ours " in p.stdout and "samples/s" in p.stdout


def test_speed_missing_reference_is_a_clear_error(tmp_path):
    p = subprocess.run([sys.executable, SCRIPT, *TINY, "--reference", str(tmp_path / "nope.py")], cwd=tmp_path,
                       capture_output=True, text=True, timeout=60)
    assert p.returncode == 2 and "--no-reference" in p.stderr


def test_speed_model_option_times_a_family_core(tmp_path):
    out = tmp_path / "speed.json"
    run(*TINY, "--no-reference", "--model", "gss", "--json", str(out), tmp_path=tmp_path)
    data = json.loads(out.read_text())
    (row,) = data["variants"]
    assert row["error"] is None and row["samples_per_s"] > 0
    assert data["args"]["model"] == "gss"
