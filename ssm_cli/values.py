"""Declarations of valid values for config keys, and the check that names the key when one is not.

A key's valid values are declared once, in the table beside its other declarations
(``ssm_cli.config.VALID`` for the keys outside the model, ``ssm_cli.model.BACKBONE_VALID`` for
the backbone's, ``ssm_cli.layers.registry.CORE_OPTIONS (each core's module)`` for the SSM cores'). A declaration is a
tuple of the allowed values, or one of the classes below.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

from ssm_cli.errors import UserError


def _number(value: object, integer: bool) -> bool:
    if isinstance(value, bool):
        return False
    if integer:
        return isinstance(value, int)
    return isinstance(value, (int, float)) and math.isfinite(value)


@dataclass(frozen=True)
class Range:
    """A number from ``lo`` to ``hi`` (either bound may be open or absent); ``integer``: ints only;
    ``none``: None is valid too (its meaning is the key's, e.g. "all")."""

    lo: float | None = None
    hi: float | None = None
    integer: bool = False
    lo_open: bool = False
    hi_open: bool = False
    none: bool = False

    def ok(self, value: object) -> bool:
        if value is None:
            return self.none
        if not _number(value, self.integer):
            return False
        if self.lo is not None and (value < self.lo or (self.lo_open and value == self.lo)):
            return False
        if self.hi is not None and (value > self.hi or (self.hi_open and value == self.hi)):
            return False
        return True

    def describe(self) -> str:
        what = "an integer" if self.integer else "a number"
        if self.lo is not None and self.hi is not None:
            what += f" in {'(' if self.lo_open else '['}{self.lo}, {self.hi}{')' if self.hi_open else ']'}"
        elif self.lo is not None:
            what += f" {'>' if self.lo_open else '>='} {self.lo}"
        elif self.hi is not None:
            what += f" {'<' if self.hi_open else '<='} {self.hi}"
        return what + (" or null" if self.none else "")


@dataclass(frozen=True)
class AnyOf:
    """Valid if any of ``options`` (Ranges or tuples of values) accepts the value."""

    options: tuple

    def ok(self, value: object) -> bool:
        return any(accepts(o, value) for o in self.options)

    def describe(self) -> str:
        return " or ".join(describe(o) for o in self.options)


@dataclass(frozen=True)
class ListOf:
    """A list of values each valid for ``item``, of ``length`` entries (None: any number, at least
    ``min_length``), with no repeats if ``unique``."""

    item: object
    length: int | None = None
    min_length: int = 0
    unique: bool = False

    def ok(self, value: object) -> bool:
        if not isinstance(value, (list, tuple)) or not all(accepts(self.item, v) for v in value):
            return False
        if (self.length is not None and len(value) != self.length) or len(value) < self.min_length:
            return False
        return not (self.unique and len(set(value)) != len(value))

    def describe(self) -> str:
        n = f"{self.length} " if self.length is not None else ("a non-empty list " if self.min_length else "a list ")
        n = f"a list of {n}" if self.length is not None else f"{n}of "
        return f"{n}values each {describe(self.item)}{', without repeats' if self.unique else ''}"


@dataclass(frozen=True)
class Text:
    """A non-empty string (a name the key passes on, e.g. a W&B project or a SLURM partition);
    ``none``: None too."""

    none: bool = False

    def ok(self, value: object) -> bool:
        return (value is None and self.none) or (isinstance(value, str) and bool(value.strip()))

    def describe(self) -> str:
        return "a non-empty string" + (" or null" if self.none else "")


@dataclass(frozen=True)
class MappingOf:
    """A mapping of non-empty string keys to values each valid for ``item`` (e.g. extra sbatch options)."""

    item: object

    def ok(self, value: object) -> bool:
        return isinstance(value, dict) and all(isinstance(k, str) and k and accepts(self.item, v)
                                               for k, v in value.items())

    def describe(self) -> str:
        return f"a mapping of names to values each {describe(self.item)}"


_CLASSES = (Range, AnyOf, ListOf, Text, MappingOf)


def accepts(valid, value: object) -> bool:
    """Whether ``value`` is valid under the declaration ``valid``."""
    if isinstance(valid, _CLASSES):
        return valid.ok(value)
    # a tuple of values: True/False/1/0 are told apart (1 == True in Python)
    return any(value == v and isinstance(value, bool) == isinstance(v, bool) for v in valid)


def describe(valid) -> str:
    """The valid values in words, for an error message."""
    if isinstance(valid, _CLASSES):
        return valid.describe()
    return ", ".join("null" if v is None else str(v) for v in valid)


def check(key: str, value: object, valid) -> None:
    """Raise UserError naming ``key``, its value and the valid values, unless ``value`` is valid."""
    if not accepts(valid, value):
        raise UserError(f"invalid value {value!r} for {key}; valid: {describe(valid)}")
