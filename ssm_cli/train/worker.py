"""``python -m ssm_cli.train.worker RUN_DIR [RUN_DIR ...]``: execute one prepared run, or several
as one pack (used by launcher=local)."""
import sys
from pathlib import Path

from ssm_cli.errors import UserError
from ssm_cli.train.run import execute_pack

if __name__ == "__main__":
    try:
        records = execute_pack([Path(d) for d in sys.argv[1:]], progress=False)
    except UserError as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)
    sys.exit(0 if all(r.get("status") in ("completed", "locked") for r in records) else 1)
