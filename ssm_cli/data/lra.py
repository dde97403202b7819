"""LRA token tasks: ListOps, Text (IMDB bytes) and Retrieval (AAN pairs, two-tower).

Every item is ``x: (max_len,) int64`` (Retrieval: ``(2, max_len)``), right-padded with 0, and
``y: ()`` int64. Sequences longer than ``max_len`` are truncated (the end-of-sequence token, when
``append_eos``, is kept inside ``max_len``). Vocabularies are fixed, so ids never depend on the data:

- ListOps (18 ids): 0 ``<pad>``, 1 ``<unk>``, 2 ``<eos>``, 3..12 the digits 0-9, 13 ``[MIN``,
  14 ``[MAX``, 15 ``[MED``, 16 ``[SM``, 17 ``]``. Parentheses are dropped, as the reference
  pipelines do (the LRA tokenizer strips non-alphanumeric tokens; S4 deletes them explicitly),
  so a sequence is the prefix form ``[MAX 4 3 2 ]``.
- Text and Retrieval (258 ids): 0 ``<pad>``, 1 ``<eos>``, byte ``b`` of the UTF-8 text -> ``b + 2``.

Raw layouts (under ``data_dir``):
- ListOps: ``lra/listops-1000/basic_{train,val,test}.tsv`` (header ``Source<TAB>Target``);
- Text: ``aclImdb/{train,test}/{pos,neg}/*.txt`` (test doubles as val, as in LRA);
- Retrieval: ``lra/tsv_data/new_aan_pairs.{train,eval,test}.tsv``, no header, columns
  ``label, id1, id2, text1, text2``; ``eval`` is the validation split. The release stores each text
  as a Python bytes literal (``b'...'``); such a field is unescaped to its bytes, any other field is
  taken as text and UTF-8 encoded.

The parsed sequences are cached (ragged, one byte per token) next to the raw files with
``cached_arrays``; items are cut from in-memory / memory-mapped arrays, never from files.
"""
from __future__ import annotations

import ast
import csv
import shutil
import sys
import tarfile
import tempfile
import urllib.request
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

from ssm_cli.data.base import DatasetBundle, DataSpec
from ssm_cli.data.cache import cached_arrays, fingerprint, refuse_in_prefetch
from ssm_cli.errors import UserError

LRA_RELEASE_URL = "https://storage.googleapis.com/long-range-arena/lra_release.gz"
IMDB_URL = "https://ai.stanford.edu/~amaas/data/sentiment/aclImdb_v1.tar.gz"
PROCESSING_VERSION = 1
SPLITS = ("train", "val", "test")
RELEASE_FOLDERS = ("listops-1000", "tsv_data", "pathfinder32", "pathfinder64", "pathfinder128", "pathfinder256")

LISTOPS_VOCAB = ("<pad>", "<unk>", "<eos>", *map(str, range(10)), "[MIN", "[MAX", "[MED", "[SM", "]")
LISTOPS_EOS = 2
BYTE_VOCAB_SIZE = 258
BYTE_EOS = 1
BYTE_OFFSET = 2


# ---------------------------------------------------------------- options and downloads


def take_options(dataset: str, options: dict, defaults: dict) -> dict:
    """Defaults overridden by ``options``; an unknown key is a UserError listing the valid ones."""
    unknown = sorted(set(options) - set(defaults))
    if unknown:
        valid = ", ".join(f"{k} (default {v!r})" for k, v in defaults.items())
        raise UserError(f"unknown option(s) {', '.join(unknown)} for dataset {dataset}; valid: {valid}")
    out = {**defaults, **options}
    if "max_len" in out and isinstance(out["max_len"], int) and out["max_len"] < 2:
        raise UserError(f"option max_len of dataset {dataset} must be at least 2, got {out['max_len']!r}")
    for k, v in out.items():
        if isinstance(defaults[k], bool) and not isinstance(v, bool):
            raise UserError(f"option {k} of dataset {dataset} must be true or false, got {v!r}")
        if isinstance(defaults[k], int) and not isinstance(defaults[k], bool):
            if not isinstance(v, int) or isinstance(v, bool) or v < 0:
                raise UserError(f"option {k} of dataset {dataset} must be a non-negative integer, got {v!r}")
    return out


def lra_layout_help(data_dir: Path, layout: str, generator: str | None = None) -> str:
    """The remedy part of a missing-data message for the LRA release."""
    lines = [
        f"expected layout: {data_dir}/lra/{layout}",
        f"get it: download {LRA_RELEASE_URL} (about 7.7 GB), unpack it with `tar -xzf lra_release.gz`"
        f" and move the contents of lra_release/ to {data_dir}/lra/ (or set the option download=true)",
    ]
    if generator:
        lines.append(f"or generate it: `{generator}`")
    return "\n  ".join(lines)


def download_and_unpack(url: str, dest: Path, what: str, timeout: float = 30.0) -> Path:
    """Download the tar archive at ``url`` and unpack it into a fresh folder under ``dest``.

    Returns the folder the archive was unpacked into; raises UserError naming the URL on failure.
    """
    refuse_in_prefetch(f"downloading {url}")
    dest.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=".download-", dir=dest))
    archive = work / "archive.tar.gz"
    print(f"downloading {what} from {url} ...", file=sys.stderr)
    try:
        with urllib.request.urlopen(url, timeout=timeout) as r, open(archive, "wb") as f:
            shutil.copyfileobj(r, f, length=1 << 20)
        with tarfile.open(archive) as tar:
            kwargs = {"filter": "data"} if hasattr(tarfile, "data_filter") else {}
            tar.extractall(work / "unpacked", **kwargs)
    except Exception as e:  # network, HTTP or archive errors all end the same way
        shutil.rmtree(work, ignore_errors=True)
        raise UserError(f"could not download {what} from {url}: {e}") from e
    archive.unlink()
    return work / "unpacked"


def _release_root(unpacked: Path, max_depth: int = 4) -> Path | None:
    """The shallowest folder under ``unpacked`` holding one of the LRA task folders (breadth
    first: the release holds millions of Pathfinder files, never walk them)."""
    level = [unpacked]
    for _ in range(max_depth):
        for d in level:
            if any((d / name).is_dir() for name in RELEASE_FOLDERS):
                return d
        level = sorted(c for d in level for c in d.iterdir() if c.is_dir())
    return None


def ensure_lra(data_dir: Path, needed: Path, layout: str, download: bool, generator: str | None = None) -> None:
    """Make sure ``needed`` (a path inside ``data_dir/lra``) exists, downloading the release if allowed."""
    if needed.exists():
        return
    help_text = lra_layout_help(data_dir, layout, generator)
    if download:
        try:
            unpacked = download_and_unpack(LRA_RELEASE_URL, data_dir, "the LRA release")
        except UserError as e:
            raise UserError(f"{needed} not found and the download failed\n  {e}\n  {help_text}") from e
        # the release unpacks to lra_release/ (sometimes nested twice): find the folder of the tasks
        found = _release_root(unpacked)
        if found is not None:
            (data_dir / "lra").mkdir(parents=True, exist_ok=True)
            for item in found.iterdir():
                target = data_dir / "lra" / item.name
                if not target.exists():
                    shutil.move(str(item), target)
        shutil.rmtree(unpacked.parent, ignore_errors=True)
        if needed.exists():
            return
    raise UserError(f"{needed} not found\n  {help_text}")


# ---------------------------------------------------------------- datasets


class TokenSequences(Dataset):
    """Ragged sequences of stored bytes, mapped through ``lookup`` and padded at indexing time.

    tokens: (total,) uint8 stored values; offsets: (n + 1,) int64; labels: (n,) int64;
    lookup: (256,) int64 id of each stored value. Items: ``x: (max_len,) int64``, ``y: ()`` int64.
    """

    def __init__(self, tokens, offsets, labels, lookup: np.ndarray, max_len: int, eos: int | None):
        self.tokens, self.offsets, self.labels = tokens, np.asarray(offsets), np.asarray(labels)
        self.lookup, self.max_len, self.eos = lookup, max_len, eos

    def __len__(self) -> int:
        return len(self.labels)

    def sequence(self, i: int) -> torch.Tensor:
        keep = self.max_len - (self.eos is not None)
        lo, hi = int(self.offsets[i]), int(self.offsets[i + 1])
        ids = self.lookup[np.asarray(self.tokens[lo : min(hi, lo + keep)])]
        x = np.zeros(self.max_len, dtype=np.int64)
        x[: len(ids)] = ids
        if self.eos is not None:
            x[len(ids)] = self.eos
        return torch.from_numpy(x)

    def __getitem__(self, i: int):
        return self.sequence(i), torch.tensor(int(self.labels[i]), dtype=torch.int64)


class TokenPairs(Dataset):
    """Two-tower items: ``x: (2, max_len) int64`` (first and second document), ``y: ()`` int64."""

    def __init__(self, first: TokenSequences, second: TokenSequences):
        self.first, self.second = first, second

    def __len__(self) -> int:
        return len(self.first)

    def __getitem__(self, i: int):
        x = torch.stack([self.first.sequence(i), self.second.sequence(i)])
        return x, torch.tensor(int(self.first.labels[i]), dtype=torch.int64)


def ragged(seqs: list[bytes]) -> tuple[np.ndarray, np.ndarray]:
    """Concatenate byte strings: ``(tokens (total,) uint8, offsets (n + 1,) int64)``."""
    offsets = np.zeros(len(seqs) + 1, dtype=np.int64)
    offsets[1:] = np.cumsum([len(s) for s in seqs])
    return np.frombuffer(b"".join(seqs), dtype=np.uint8).copy(), offsets


BYTE_LOOKUP = np.arange(256, dtype=np.int64) + BYTE_OFFSET


# ---------------------------------------------------------------- ListOps

# Each ListOps token is stored as one byte: the digit characters, a-d for the operators, ']'.
_LISTOPS_CHARS = {"[MIN": "a", "[MAX": "b", "[MED": "c", "[SM": "d"}
_LISTOPS_LOOKUP = np.ones(256, dtype=np.int64)  # unknown bytes -> <unk>
for _i, _c in enumerate("0123456789abcd]"):
    _LISTOPS_LOOKUP[ord(_c)] = 3 + _i
_DROP = str.maketrans("", "", "() ")


def listops_to_bytes(source: str) -> bytes:
    """One byte per token of a ListOps source string (parentheses dropped)."""
    toks = source.split()
    return "".join(_LISTOPS_CHARS.get(t, t if len(t) == 1 else "?") for t in toks if t not in ("(", ")")).encode("ascii", "replace")


def read_listops_tsv(path: Path) -> tuple[list[bytes], list[int]]:
    """Parse a release ListOps tsv; a malformed or truncated file is a UserError naming it."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise UserError(f"cannot read ListOps file {path}: {e}") from e
    lines = text.splitlines()
    if not lines or lines[0].split("\t") != ["Source", "Target"]:
        raise UserError(f"corrupt ListOps file {path}: the first line must be the header 'Source<TAB>Target'")
    seqs, labels = [], []
    for n, line in enumerate(lines[1:], start=2):
        if not line:
            continue
        fields = line.split("\t")
        ok = len(fields) == 2 and fields[1].strip().isdigit() and int(fields[1]) < 10
        if not ok or fields[0].count("(") != fields[0].count(")"):
            raise UserError(
                f"corrupt or truncated ListOps file {path}, line {n}: expected '<expression><TAB><digit 0-9>'"
                " with balanced parentheses; regenerate or re-download the file"
            )
        seqs.append(listops_to_bytes(fields[0]))
        labels.append(int(fields[1]))
    return seqs, labels


def load_listops(data_dir: Path, **options) -> DatasetBundle:
    """LRA ListOps. Options: ``max_len`` (2048), ``append_eos`` (True), ``download`` (True)."""
    o = take_options("listops", options, {"max_len": 2048, "append_eos": True, "download": True})
    folder = Path(data_dir) / "lra" / "listops-1000"
    files = {s: folder / f"basic_{s}.tsv" for s in SPLITS}
    for f in files.values():
        ensure_lra(Path(data_dir), f, "listops-1000/basic_{train,val,test}.tsv", o["download"], "ssm data generate listops")

    def build() -> dict[str, np.ndarray]:
        out = {}
        for split, f in files.items():
            seqs, labels = read_listops_tsv(f)
            out[f"{split}_tokens"], out[f"{split}_offsets"] = ragged(seqs)
            out[f"{split}_labels"] = np.asarray(labels, dtype=np.int64)
        return out

    key = {"version": PROCESSING_VERSION, "files": fingerprint(files.values())}
    a = cached_arrays(folder, "listops", key, build)
    eos = LISTOPS_EOS if o["append_eos"] else None
    sets = {
        s: TokenSequences(a[f"{s}_tokens"], a[f"{s}_offsets"], a[f"{s}_labels"], _LISTOPS_LOOKUP, o["max_len"], eos)
        for s in SPLITS
    }
    spec = DataSpec("listops", o["max_len"], 1, 10, input="tokens", vocab_size=len(LISTOPS_VOCAB))
    return DatasetBundle(spec, sets["train"], sets["val"], sets["test"])


# ---------------------------------------------------------------- Text (IMDB)


def ensure_imdb(data_dir: Path, download: bool) -> Path:
    root = Path(data_dir) / "aclImdb"
    needed = [root / s / c for s in ("train", "test") for c in ("pos", "neg")]
    if all(p.is_dir() for p in needed):
        return root
    help_text = (
        f"expected layout: {root}/{{train,test}}/{{pos,neg}}/*.txt\n"
        f"  get it: download {IMDB_URL} and unpack it in {data_dir} (`tar -xzf aclImdb_v1.tar.gz`),"
        " or set the option download=true"
    )
    missing = next(p for p in needed if not p.is_dir())
    if download:
        try:
            unpacked = download_and_unpack(IMDB_URL, Path(data_dir), "the IMDB reviews (aclImdb)")
        except UserError as e:
            raise UserError(f"{missing} not found and the download failed\n  {e}\n  {help_text}") from e
        if (unpacked / "aclImdb").is_dir() and not root.exists():
            shutil.move(str(unpacked / "aclImdb"), root)
        shutil.rmtree(unpacked.parent, ignore_errors=True)
        if all(p.is_dir() for p in needed):
            return root
    raise UserError(f"{missing} not found\n  {help_text}")


def load_text(data_dir: Path, **options) -> DatasetBundle:
    """LRA Text: IMDB reviews as UTF-8 bytes, neg = 0, pos = 1; val is the test split.

    Options: ``max_len`` (4096), ``append_eos`` (True), ``download`` (True).
    """
    o = take_options("lra_text", options, {"max_len": 4096, "append_eos": True, "download": True})
    root = ensure_imdb(Path(data_dir), o["download"])
    files = {
        s: [(f, label) for label, c in enumerate(("neg", "pos")) for f in sorted((root / s / c).glob("*.txt"))]
        for s in ("train", "test")
    }

    def build() -> dict[str, np.ndarray]:
        out = {}
        for split, items in files.items():
            seqs = []
            for f, _ in items:
                try:
                    seqs.append(f.read_bytes())
                except OSError as e:
                    raise UserError(f"cannot read IMDB review {f}: {e}") from e
            out[f"{split}_tokens"], out[f"{split}_offsets"] = ragged(seqs)
            out[f"{split}_labels"] = np.asarray([label for _, label in items], dtype=np.int64)
        return out

    for split, items in files.items():
        if not items:
            raise UserError(f"no reviews in {root / split}/{{pos,neg}}/*.txt; re-download {IMDB_URL}")
    key = {"version": PROCESSING_VERSION, "files": fingerprint(f for items in files.values() for f, _ in items)}
    a = cached_arrays(root, "lra_text", key, build)
    eos = BYTE_EOS if o["append_eos"] else None
    sets = {s: TokenSequences(a[f"{s}_tokens"], a[f"{s}_offsets"], a[f"{s}_labels"], BYTE_LOOKUP, o["max_len"], eos) for s in ("train", "test")}
    spec = DataSpec("lra_text", o["max_len"], 1, 2, input="tokens", vocab_size=BYTE_VOCAB_SIZE)
    return DatasetBundle(spec, sets["train"], sets["test"], sets["test"])


# ---------------------------------------------------------------- Retrieval (AAN)


def aan_text_bytes(field: str) -> bytes:
    """The bytes of one AAN text field: a ``b'...'`` literal is unescaped, plain text encoded."""
    if len(field) >= 3 and field[0] == "b" and field[1] in "'\"" and field[-1] == field[1]:
        try:
            value = ast.literal_eval(field)
            if isinstance(value, bytes):
                return value
        except (ValueError, SyntaxError):
            pass
    return field.encode("utf-8")


def read_aan_tsv(path: Path) -> tuple[list[bytes], list[bytes], list[int]]:
    """Parse an AAN pairs tsv (label, id1, id2, text1, text2); malformed rows are a UserError."""
    csv.field_size_limit(1 << 30)
    first, second, labels = [], [], []
    try:
        with open(path, newline="", encoding="utf-8") as f:
            for n, row in enumerate(csv.reader(f, delimiter="\t"), start=1):
                if not row:
                    continue
                try:
                    label = int(float(row[0]))
                    ok = len(row) == 5 and label in (0, 1)
                except ValueError:
                    ok = False
                if not ok:
                    raise UserError(
                        f"corrupt or truncated Retrieval file {path}, line {n}: expected 5 tab-separated"
                        " columns 'label id1 id2 text1 text2' with label 0 or 1; re-download the LRA release"
                    )
                labels.append(label)
                first.append(aan_text_bytes(row[3]))
                second.append(aan_text_bytes(row[4]))
    except (OSError, UnicodeDecodeError, csv.Error) as e:
        raise UserError(f"cannot read Retrieval file {path}: {e}") from e
    return first, second, labels


def load_retrieval(data_dir: Path, **options) -> DatasetBundle:
    """LRA Retrieval: two-tower ``x: (2, max_len)`` byte ids of the two papers, ``y`` = linked.

    Options: ``max_len`` (4000, per document), ``append_eos`` (True), ``download`` (True).
    """
    o = take_options("lra_retrieval", options, {"max_len": 4000, "append_eos": True, "download": True})
    folder = Path(data_dir) / "lra" / "tsv_data"
    files = {s: folder / f"new_aan_pairs.{'eval' if s == 'val' else s}.tsv" for s in SPLITS}
    for f in files.values():
        ensure_lra(Path(data_dir), f, "tsv_data/new_aan_pairs.{train,eval,test}.tsv", o["download"])

    def build() -> dict[str, np.ndarray]:
        out = {}
        for split, f in files.items():
            t1, t2, labels = read_aan_tsv(f)
            out[f"{split}_tokens1"], out[f"{split}_offsets1"] = ragged(t1)
            out[f"{split}_tokens2"], out[f"{split}_offsets2"] = ragged(t2)
            out[f"{split}_labels"] = np.asarray(labels, dtype=np.int64)
        return out

    key = {"version": PROCESSING_VERSION, "files": fingerprint(files.values())}
    a = cached_arrays(folder, "lra_retrieval", key, build)
    eos = BYTE_EOS if o["append_eos"] else None

    def tower(s: str, k: int) -> TokenSequences:
        return TokenSequences(a[f"{s}_tokens{k}"], a[f"{s}_offsets{k}"], a[f"{s}_labels"], BYTE_LOOKUP, o["max_len"], eos)

    sets = {s: TokenPairs(tower(s, 1), tower(s, 2)) for s in SPLITS}
    spec = DataSpec("lra_retrieval", o["max_len"], 1, 2, input="tokens", vocab_size=BYTE_VOCAB_SIZE, two_tower=True)
    return DatasetBundle(spec, sets["train"], sets["val"], sets["test"])
