"""Checks of configuration values, and the value rules that vocabularies declare with.

Every refusal is a `ConfigError` whose one-line message names the key, the value and what is
allowed. Values are checked, never coerced: 20.7 iterations or `true` iterations are refused
rather than rounded; only an integral float (20.0, what YAML/JSON may give) counts as an
integer, as in JSON Schema.

A *rule* (`Int`, `Num`, `Bool`, `Choice`, `Text`, or a class of the same shape) is the type and
range of one value, stated once: its check, the words of its refusal, its JSON-schema fragment
and its command-line flag (parsing a value, and writing one) all follow from it. Recipe knobs
(resnet_bench.train.recipe) and dataset options (resnet_bench.data.kind) are declared with
rules.

Standard library only (device() imports torch, inside the function, to ask whether a device
exists), and no imports of the package: every layer may use it.
"""

from __future__ import annotations

import argparse
import math
import re
from dataclasses import dataclass
from typing import Any

# numpy's SeedSequence and the synthetic set take 32-bit seeds
MAX_SEED = 2**32 - 1
MAX_THREADS = 4096
MAX_IMAGES = 10_000_000  # image counts: set sizes, hold-outs (10M CIFAR-sized images = 30 GB)
NAME_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*")
DEVICE_PATTERN = re.compile(r"auto|cpu|mps|cuda(:\d+)?")


class ConfigError(ValueError):
    """A value that cannot be trained with; its message is one line naming key, value, allowed."""


def refuse(key: str, value: Any, allowed: str, where: str = "") -> ConfigError:
    shown = repr(value)
    if len(shown) > 80:
        shown = shown[:77] + "..."
    return ConfigError(" ".join(f"{where}{key}: got {shown}; allowed: {allowed}".split()))


# --- scalar checks: each returns the checked value (an int stays int, a float float) ------------

def integer(key: str, value: Any, lo: int, hi: int, where: str = "") -> int:
    allowed = f"an integer in {lo}..{hi}"
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise refuse(key, value, allowed, where)
    if isinstance(value, float) and not (math.isfinite(value) and value.is_integer()):
        raise refuse(key, value, allowed, where)
    if not lo <= value <= hi:
        raise refuse(key, value, allowed, where)
    return int(value)


def number(key: str, value: Any, allowed: str, ok, where: str = "") -> int | float:
    """A finite real number for which `ok(value)` holds (NaN and inf are never allowed)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) \
            or not math.isfinite(value) or not ok(value):
        raise refuse(key, value, f"a finite number {allowed}", where)
    return value  # as given: an int stays an int, so run identities do not change


def boolean(key: str, value: Any, where: str = "") -> bool:
    if not isinstance(value, bool):
        raise refuse(key, value, "true or false", where)
    return value


def choice(key: str, value: Any, choices: tuple[str, ...], where: str = "") -> str:
    if not isinstance(value, str) or value not in choices:
        raise refuse(key, value, "one of " + ", ".join(choices), where)
    return value


def text(key: str, value: Any, where: str = "", pattern: re.Pattern | None = None) -> str:
    if not isinstance(value, str) or not value or len(value) > 200 \
            or (pattern is not None and not pattern.fullmatch(value)):
        allowed = "a non-empty string" + (f" matching {pattern.pattern}" if pattern else "")
        raise refuse(key, value, allowed, where)
    return value


# --- the run's own values ----------------------------------------------------------------------

def seed(value: Any, key: str = "seed", where: str = "") -> int:
    return integer(key, value, 0, MAX_SEED, where=where)


def threads(value: Any) -> int:
    return integer("threads", value, 1, MAX_THREADS)


def device(value: Any, key: str = "device") -> str:
    """auto, cpu, mps, cuda or cuda:N; an MPS or CUDA device must exist on this machine."""
    allowed = "auto, cpu, mps, cuda or cuda:N"
    if not isinstance(value, str) or not DEVICE_PATTERN.fullmatch(value):
        raise refuse(key, value, allowed)
    if value in ("auto", "cpu"):
        return value
    import torch  # only to ask whether the device exists
    if value == "mps" and not torch.backends.mps.is_available():
        raise refuse(key, value, "auto, cpu or cuda (MPS, Apple's GPU backend, is not "
                                 "available on this machine)")
    if value.startswith("cuda"):
        n = torch.cuda.device_count() if torch.cuda.is_available() else 0
        index = int(value.partition(":")[2] or 0)
        if index >= n:
            raise refuse(key, value, f"{allowed}, with N < {n} CUDA devices on this machine"
                         if n else "auto or cpu (CUDA is not available on this machine)")
    return value


# --- rules: a value's type and range, declared once ---------------------------------------------

def flag(key: str) -> str:
    """The command-line flag of a value: --train-size for train_size."""
    return "--" + key.replace("_", "-")


class Rule:
    """The type and range of one configuration value. `check` returns the checked value or
    raises a one-line ConfigError; `schema` is the JSON-schema fragment the pipeline's config
    schema holds for it; `cli` the argparse keywords of its command-line flag, and `args` a
    checked value as that flag's arguments (what `cli` parses back to the value)."""

    def check(self, key: str, value: Any, where: str = "") -> Any:
        raise NotImplementedError

    def schema(self) -> dict[str, Any]:
        raise NotImplementedError

    def cli(self) -> dict[str, Any]:
        return {"type": str}

    def args(self, key: str, value: Any, where: str = "") -> list[str]:
        """A ConfigError where no flag can carry `value`."""
        return [flag(key), str(value)]


@dataclass(frozen=True)
class Int(Rule):
    lo: int
    hi: int

    def check(self, key: str, value: Any, where: str = "") -> int:
        return integer(key, value, self.lo, self.hi, where)

    def schema(self) -> dict[str, Any]:
        return {"type": "integer", "minimum": self.lo, "maximum": self.hi}

    def cli(self) -> dict[str, Any]:
        return {"type": int}


@dataclass(frozen=True)
class Num(Rule):
    """A finite number >= lo (> lo when lo_open), and <= hi (< hi when hi_open) if hi is set."""
    lo: float
    hi: float | None = None
    lo_open: bool = False
    hi_open: bool = False

    @property
    def allowed(self) -> str:
        if self.hi is None:
            return f"{'>' if self.lo_open else '>='} {self.lo}"
        return (f"in {'(' if self.lo_open else '['}{self.lo}, "
                f"{self.hi}{')' if self.hi_open else ']'}")

    def _ok(self, v: float) -> bool:
        above = v > self.lo if self.lo_open else v >= self.lo
        below = self.hi is None or (v < self.hi if self.hi_open else v <= self.hi)
        return above and below

    def check(self, key: str, value: Any, where: str = "") -> int | float:
        return number(key, value, self.allowed, self._ok, where)

    def schema(self) -> dict[str, Any]:
        out: dict[str, Any] = {"type": "number",
                               "exclusiveMinimum" if self.lo_open else "minimum": self.lo}
        if self.hi is not None:
            out["exclusiveMaximum" if self.hi_open else "maximum"] = self.hi
        return out

    def cli(self) -> dict[str, Any]:
        return {"type": float}


@dataclass(frozen=True)
class Bool(Rule):
    def check(self, key: str, value: Any, where: str = "") -> bool:
        return boolean(key, value, where)

    def schema(self) -> dict[str, Any]:
        return {"type": "boolean"}

    def cli(self) -> dict[str, Any]:
        return {"action": argparse.BooleanOptionalAction}

    def args(self, key: str, value: Any, where: str = "") -> list[str]:
        return [flag(key) if value else flag("no_" + key)]


@dataclass(frozen=True)
class Choice(Rule):
    choices: tuple[str, ...]

    def check(self, key: str, value: Any, where: str = "") -> str:
        return choice(key, value, self.choices, where)

    def schema(self) -> dict[str, Any]:
        return {"type": "string", "enum": list(self.choices)}

    def cli(self) -> dict[str, Any]:
        return {"type": str, "choices": self.choices}


@dataclass(frozen=True)
class Text(Rule):
    pattern: re.Pattern | None = None

    def check(self, key: str, value: Any, where: str = "") -> str:
        return text(key, value, where, self.pattern)

    def schema(self) -> dict[str, Any]:
        out: dict[str, Any] = {"type": "string", "minLength": 1, "maxLength": 200}
        if self.pattern is not None:
            out["pattern"] = f"^(?:{self.pattern.pattern})$"
        return out
