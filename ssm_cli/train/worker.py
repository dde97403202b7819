"""``python -m ssm_cli.train.worker RUN_DIR [RUN_DIR ...]``: execute one prepared run, or several
as one pack (used by launcher=local). As the serial path does, the worker starts reading the data,
CUDA and the compile workers in the background (``grid.start_early``) before it imports the
training code (Lightning)."""
import sys
from pathlib import Path

from omegaconf import OmegaConf

from ssm_cli.errors import UserError
from ssm_cli.trace import trace
from ssm_cli.train.grid import start_early
from ssm_cli.train.record import CONFIG


def main(run_dirs: list[Path]) -> int:
    try:
        start_early(OmegaConf.load(run_dirs[0] / CONFIG))  # a pack's members share their data
        from ssm_cli.train.run import execute_pack

        trace("training code imported (Lightning)")
        records = execute_pack(run_dirs, progress=False)
    except UserError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0 if all(r.get("status") in ("completed", "locked") for r in records) else 1


if __name__ == "__main__":
    sys.exit(main([Path(d) for d in sys.argv[1:]]))
