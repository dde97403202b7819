"""``python -m ssm_cli.train.worker RUN_DIR [RUN_DIR ...]``: execute one prepared run, or several
as one pack (used by launcher=local). As the serial path does, the worker starts reading the data,
CUDA and the compile workers in the background (``grid.start_early``) before it imports the
training code (Lightning)."""
import sys
from pathlib import Path

from omegaconf import OmegaConf

from ssm_cli.errors import Interrupted, UserError
from ssm_cli.interrupts import SIGNALS, exit_code, signals_raise
from ssm_cli.trace import trace
from ssm_cli.train.grid import start_early
from ssm_cli.train.record import CONFIG

# the exit code of a worker that found some of its runs held by another process (EX_TEMPFAIL):
# the grid reports those as running elsewhere
LOCKED_EXIT = 75


def main(run_dirs: list[Path], signals: tuple = SIGNALS) -> int:
    """The worker's exit code: 0 all completed, 1 not all, 2 bad input, ``LOCKED_EXIT`` some held by
    another process, 128 + signal if interrupted
    (SIGINT or SIGTERM: the runs are recorded as interrupted and resume on the next ``ssm run``).
    ``signals``: those that interrupt the runs (a submitit job leaves SIGTERM to submitit)."""
    try:
        with signals_raise(signals):
            start_early(OmegaConf.load(run_dirs[0] / CONFIG))  # a pack's members share their data
            from ssm_cli.train.pack_size import execute_splitting

            trace("training code imported (Lightning)")
            records = execute_splitting(run_dirs, progress=False)
    except UserError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except Interrupted as e:
        print(f"interrupted (signal {e.signum}); the run resumes on the next `ssm run`", file=sys.stderr)
        return exit_code(e.signum)
    if any(r.get("status") == "locked" for r in records):
        return LOCKED_EXIT
    return 0 if all(r.get("status") == "completed" for r in records) else 1


if __name__ == "__main__":
    sys.exit(main([Path(d) for d in sys.argv[1:]]))
