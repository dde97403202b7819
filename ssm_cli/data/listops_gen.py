"""Generator of the LRA ListOps task, with the published parameters, plus a parser and evaluator.

An expression is a tree: a leaf is a digit 0-9, a node applies one operator to 2..``max_args``
arguments. Operators: ``[MIN``, ``[MAX``, ``[MED`` (median of the arguments, the mean of the two
middle ones floored when their number is even) and ``[SM`` (sum modulo 10). Generation (docs/papers.md §6):
a node at depth < ``max_depth`` becomes an operator with probability 0.25, otherwise (and always at
``max_depth``) a uniform digit; an operator draws ``randint(2, max_args)`` arguments. Only
expressions whose length is strictly between ``min_len`` and ``max_len`` are kept, length counting
digits, operators and ``]`` (the tokens left once parentheses are dropped). Duplicates are dropped.

The release writes each expression as the bracketing of a left-nested binary tree, e.g. the
expression MAX(4, 3) with a third argument 2 is ``( ( ( ( [MAX 4 ) 3 ) 2 ) ] )``:
``n`` arguments open ``n + 1`` parentheses, every argument is followed by ``)``, and the closing
``]`` by a last ``)``. Files: ``listops-1000/basic_{train,val,test}.tsv``, tab-separated, header
``Source\\tTarget``, ``\\r\\n`` line ends (Python's csv writer, as the release).
"""
from __future__ import annotations

import csv
import hashlib
import random
from multiprocessing import get_context
from pathlib import Path
from typing import Union

import numpy as np

OPERATORS = ("[MIN", "[MAX", "[MED", "[SM")
END = "]"
OPERATOR_P = 0.25
DIGITS = tuple(str(d) for d in range(10))
SPLITS = ("train", "val", "test")

Tree = Union[int, tuple]  # a digit, or (operator, [argument trees])


class _TooLong(Exception):
    """Raised to abandon an expression as soon as it reaches ``max_len`` tokens."""


def _apply(op: str, args: list[int]) -> int:
    """The generator's own arithmetic (integers only; ``evaluate`` is the independent check)."""
    if op == "[MIN":
        return min(args)
    if op == "[MAX":
        return max(args)
    if op == "[SM":
        return sum(args) % 10
    s = sorted(args)
    mid = len(s) // 2
    return s[mid] if len(s) % 2 else (s[mid - 1] + s[mid]) // 2


class _Builder:
    """Grows one random expression straight into its release string tokens."""

    def __init__(self, rnd: random.Random, max_depth: int, max_args: int, max_len: int):
        self.rnd, self.max_depth, self.max_args, self.max_len = rnd, max_depth, max_args, max_len
        self.out: list[str] = []
        self.length = 0  # tokens without parentheses

    def _count(self, n: int) -> None:
        self.length += n
        if self.length >= self.max_len:
            raise _TooLong

    def node(self, depth: int) -> int:
        rnd, out = self.rnd, self.out
        r = rnd.random() if depth < self.max_depth else 1.0
        if r > OPERATOR_P:
            v = rnd.randrange(10)
            self._count(1)
            out.append(DIGITS[v])
            return v
        n = rnd.randint(2, self.max_args)
        self._count(2)  # operator and END
        out.extend(["("] * (n + 1))
        op_at = len(out)
        out.append("")  # the operator, drawn after its arguments (as the reference does)
        values = []
        for _ in range(n):
            values.append(self.node(depth + 1))
            out.append(")")
        out.extend((END, ")"))
        op = OPERATORS[rnd.randrange(len(OPERATORS))]
        out[op_at] = op
        return _apply(op, values)


def sample(
    rnd: random.Random, max_depth: int = 10, max_args: int = 10, max_len: int = 2000
) -> tuple[str, int, int] | None:
    """One random expression: ``(source, target, length)``, or None if it reached ``max_len``."""
    b = _Builder(rnd, max_depth, max_args, max_len)
    try:
        value = b.node(1)
    except _TooLong:
        return None
    return " ".join(b.out), value, b.length


def parse(source: str) -> Tree:
    """Parse a release-format expression string into a tree (parentheses are ignored).

    Raises ValueError on a malformed expression (unknown token, unbalanced ``]``, trailing tokens).
    """
    stack: list[tuple[str, list]] = []
    result: list[Tree] = []
    for tok in source.split():
        if tok in ("(", ")"):
            continue
        if tok in OPERATORS:
            stack.append((tok, []))
        elif tok in DIGITS:
            (stack[-1][1] if stack else result).append(int(tok))
        elif tok == END:
            if not stack:
                raise ValueError("']' without an open operator")
            op, args = stack.pop()
            if not args:
                raise ValueError(f"operator {op} without arguments")
            (stack[-1][1] if stack else result).append((op, args))
        else:
            raise ValueError(f"unknown token {tok!r}")
    if stack or len(result) != 1:
        raise ValueError("incomplete expression" if stack else "not exactly one expression")
    return result[0]


def evaluate(tree: Tree) -> int:
    """Value of a parsed tree, computed independently of the generator (numpy for the median)."""
    if isinstance(tree, int):
        return tree
    op, args = tree
    vals = [evaluate(a) for a in args]
    if op == "[MIN":
        return int(min(vals))
    if op == "[MAX":
        return int(max(vals))
    if op == "[MED":
        return int(np.median(vals))
    if op == "[SM":
        return int(np.sum(vals) % 10)
    raise ValueError(f"unknown operator {op!r}")


def to_source(tree: Tree) -> str:
    """Release-format string of a tree (inverse of ``parse``)."""
    if isinstance(tree, int):
        return str(tree)
    op, args = tree
    parts = ["("] * (len(args) + 1) + [op]
    for a in args:
        parts += [to_source(a), ")"]
    return " ".join(parts + [END, ")"])


CHUNK = 500  # expressions per random stream: the unit of work of one process


def _chunk(job: tuple) -> list[tuple[str, int]]:
    """``count`` kept expressions ``(source, target)`` of stream ``(seed, index)``: own random
    stream per chunk, so the dataset does not depend on how many processes made it."""
    seed, index, count, min_len, max_len, max_depth, max_args = job
    rnd = random.Random(f"{seed}/{index}")
    out = []
    while len(out) < count:
        s = sample(rnd, max_depth, max_args, max_len)
        if s is not None and s[2] > min_len:
            out.append(s[:2])
    return out


def generate(
    out_root: Path,
    n_train: int = 96000,
    n_val: int = 2000,
    n_test: int = 2000,
    seed: int = 0,
    min_len: int = 500,
    max_len: int = 2000,
    max_depth: int = 10,
    max_args: int = 10,
    progress: bool = False,
    workers: int = 1,
) -> Path:
    """Write ``out_root/listops-1000/basic_{train,val,test}.tsv``; return that folder.

    Deterministic given ``seed`` whatever ``workers`` (processes): chunks of ``CHUNK`` expressions
    come from their own random streams and are consumed in order; train, val and test are cut from
    that one stream. Keeps unique expressions with ``min_len < length < max_len``.
    """
    folder = Path(out_root) / "listops-1000"
    folder.mkdir(parents=True, exist_ok=True)
    total = n_train + n_val + n_test
    bar = _progress(progress, total)
    seen: set[bytes] = set()  # digests of the kept expressions (the strings are ~4 kB each)
    kept: list[tuple[str, int]] = []
    next_chunk = 0
    n_jobs = -(-total // CHUNK)
    pool = get_context("spawn").Pool(min(workers, n_jobs)) if min(workers, n_jobs) > 1 else None
    try:
        while len(kept) < total:  # a second round only if duplicates were dropped
            n_chunks = -(-(total - len(kept)) // CHUNK)
            jobs = [(seed, next_chunk + i, CHUNK, min_len, max_len, max_depth, max_args) for i in range(n_chunks)]
            next_chunk += n_chunks
            for chunk in (pool.imap(_chunk, jobs) if pool else map(_chunk, jobs)):
                for source, target in chunk:
                    digest = hashlib.blake2b(source.encode(), digest_size=16).digest()
                    if digest in seen or len(kept) == total:
                        continue
                    seen.add(digest)
                    kept.append((source, target))
                if bar is not None:
                    bar[0].update(bar[1], completed=len(kept))
    finally:
        if pool is not None:
            pool.terminate()
        if bar is not None:
            bar[0].stop()
    first = 0
    for split, n in zip(SPLITS, (n_train, n_val, n_test)):
        tmp = folder / f".basic_{split}.tsv.tmp"
        with open(tmp, "w", newline="", encoding="utf-8") as f:
            w = csv.writer(f, delimiter="\t")
            w.writerow(["Source", "Target"])
            w.writerows(kept[first:first + n])
        tmp.replace(folder / f"basic_{split}.tsv")
        first += n
    return folder


def _progress(enabled: bool, total: int):
    if not enabled:
        return None
    from rich.progress import Progress

    p = Progress()
    p.start()
    return p, p.add_task("ListOps expressions", total=total)
