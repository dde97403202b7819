"""Downloading and unpacking the public releases, with checksums and honest failure messages.

Every download goes to ``<dest>.part`` first and is renamed only after its checksum matched, so an
interrupted download never looks like data. A failure says which URL failed and what to do on a
machine without network (download elsewhere, copy the files to the named path).
"""
from __future__ import annotations

import hashlib
import json
import shutil
import tarfile
import urllib.error
import urllib.request
from pathlib import Path
from typing import Iterable, Iterator

from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TimeRemainingColumn, TransferSpeedColumn

from ssm_cli.data.cache import fingerprint, refuse_in_prefetch
from ssm_cli.errors import UserError

TIMEOUT_S = 30
CHUNK = 1 << 20


def file_digest(path: Path, algo: str = "sha256") -> str:
    """Hex digest of a file, read in chunks."""
    h = hashlib.new(algo)
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(CHUNK), b""):
            h.update(block)
    return h.hexdigest()


def files_digest(files: Iterable[Path]) -> str:
    """One short digest of the (path, size, mtime) fingerprint of many files: a compact cache key."""
    blob = json.dumps(fingerprint(files)).encode()
    return hashlib.sha256(blob).hexdigest()


def fetch(url: str, dest: Path, *, checksum: tuple[str, str] | None = None, offline_hint: str = "") -> Path:
    """Download ``url`` to ``dest`` (skipped when ``dest`` exists with the right checksum).

    checksum: ``(algorithm, hexdigest)``, e.g. ``("md5", "c58f...")``; verified before ``dest`` appears.
    offline_hint: what to do without network; appended to the error message.
    """
    dest = Path(dest)
    if dest.exists() and (checksum is None or file_digest(dest, checksum[0]) == checksum[1]):
        return dest
    refuse_in_prefetch(f"downloading {url}")
    dest.parent.mkdir(parents=True, exist_ok=True)
    part = dest.with_name(dest.name + ".part")
    try:
        with urllib.request.urlopen(url, timeout=TIMEOUT_S) as response, open(part, "wb") as out:
            total = int(response.headers.get("Content-Length") or 0) or None
            with _progress() as progress:
                task = progress.add_task(f"download {dest.name}", total=total)
                for block in iter(lambda: response.read(CHUNK), b""):
                    out.write(block)
                    progress.advance(task, len(block))
    except (urllib.error.URLError, OSError, ValueError) as err:
        part.unlink(missing_ok=True)
        raise UserError(
            f"download of {url} failed ({err}).\n"
            f"Without network: download it on another machine and copy it to {dest}"
            + (f"\n{offline_hint}" if offline_hint else "")
        ) from None
    if checksum is not None:
        got = file_digest(part, checksum[0])
        if got != checksum[1]:
            part.unlink(missing_ok=True)
            raise UserError(
                f"download of {url} is corrupt: {checksum[0]} {got}, expected {checksum[1]}; "
                f"try again, or copy a good copy to {dest}"
            )
    part.replace(dest)
    return dest


def extract(archive: Path, into: Path) -> Path:
    """Unpack a .tar/.tar.gz/.tgz ``archive`` into ``into`` (refusing members that escape it)."""
    refuse_in_prefetch(f"unpacking {archive}")
    into.mkdir(parents=True, exist_ok=True)
    try:
        with tarfile.open(archive) as tar:
            try:
                tar.extractall(into, filter="data")
            except TypeError:  # Python without extraction filters
                root = into.resolve()
                for member in tar.getmembers():
                    if not (root / member.name).resolve().is_relative_to(root):
                        raise UserError(f"{archive} holds a path outside the archive: {member.name}")
                tar.extractall(into)
    except (tarfile.TarError, EOFError, OSError) as err:
        raise UserError(f"{archive} is not a readable archive ({err}); delete it and download again") from None
    return into


def remove(path: Path) -> None:
    """Delete a file or folder if present (used to drop an archive once unpacked)."""
    refuse_in_prefetch(f"removing {path}")
    if path.is_dir():
        shutil.rmtree(path, ignore_errors=True)
    else:
        path.unlink(missing_ok=True)


def _progress() -> Progress:
    return Progress(
        TextColumn("{task.description}"), BarColumn(), DownloadColumn(), TransferSpeedColumn(),
        TimeRemainingColumn(), transient=True,
    )


def track(items: Iterable, total: int, description: str) -> Iterator:
    """Iterate ``items`` under a rich progress bar (silent for small fixtures and non-terminals)."""
    with Progress(
        TextColumn("{task.description}"), BarColumn(), TextColumn("{task.completed}/{task.total}"),
        TimeRemainingColumn(), transient=True, disable=total < 5000,
    ) as progress:
        yield from progress.track(items, total=total, description=description)
