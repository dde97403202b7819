"""Output paths: checked before any work, so a run or a table never fails at its end on a folder
it cannot write."""
from __future__ import annotations

import os
import tempfile
from pathlib import Path

from ssm_cli.errors import UserError


def check_writable(path: Path, what: str) -> None:
    """Raise UserError unless the folder ``path`` exists and can be written to, or could be created
    (its nearest existing ancestor is a writable folder). Leaves nothing behind (``--dry-run`` too):
    the probe is a temporary file, deleted at once."""
    path = Path(path)
    probe = path
    while not probe.exists():
        if probe.is_symlink():
            raise UserError(f"{what} {str(path)!r} cannot be created: {probe} is a broken symbolic link")
        probe = probe.parent
    if not probe.is_dir():
        raise UserError(f"{what} {str(path)!r} cannot be created: {probe} is a file, not a folder; "
                        f"choose another {what}")
    try:  # a real write: permissions, ACLs, read-only mounts and pseudo file systems alike
        if not os.access(probe, os.W_OK | os.X_OK):
            raise PermissionError(13, "permission denied")
        tempfile.TemporaryFile(dir=probe).close()
    except OSError as e:
        where = "" if probe == path else f" (in {probe})"
        raise UserError(f"{what} {str(path)!r} is not writable{where}: {e.strerror or e}; "
                        f"choose another {what} or fix the permissions") from None
