"""``python -m ssm_cli.train.worker RUN_DIR``: execute one prepared run (used by launcher=local)."""
import sys
from pathlib import Path

from ssm_cli.errors import UserError
from ssm_cli.train.run import execute

if __name__ == "__main__":
    try:
        record = execute(Path(sys.argv[1]), progress=False)
    except UserError as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)
    sys.exit(0 if record.get("status") in ("completed", "locked") else 1)
