"""Start-up of ``ssm run``: the dataset is read in the background while Lightning is imported,
and the SSM_TRACE timeline names each phase."""
import json

SMOKE = ["preset=smoke", "dataset.options.n_train=64", "dataset.options.n_val=32", "dataset.options.n_test=32"]


def test_data_is_prefetched_and_the_timeline_explains_itself(ssm, tmp_path):
    out = tmp_path / "runs"
    p = ssm("run", *SMOKE, "trainer.epochs=1", "trainer.data_on_device=true", f"out_dir={out}", env={"SSM_TRACE": "1"})
    lines = [line.split("] ", 1)[1] for line in p.stderr.splitlines() if line.startswith("[trace")]
    phases = ["ssm_cli imported", "imports done", "base config composed", "configs composed", "grid planned",
              "training code imported", "fit starts", "data loaded: synthetic (prefetched", "data on cpu",
              "setup done", "step 1 done"]
    found = [next((i for i, line in enumerate(lines) if line.startswith(ph)), None) for ph in phases]
    assert None not in found, dict(zip(phases, found))
    assert found == sorted(found), lines
    assert any(line.startswith("data read in the background: synthetic") for line in lines), lines
    [record] = [json.loads(r.read_text()) for r in out.rglob("record.json")]
    assert record["status"] == "completed"
