"""A dataset kind, declared once where its loader is defined, and the store kinds register in.

A kind (`synthetic`, `cifar10`, `folder`, `imagenet`, ...) is a `DatasetKind`: its name and
aliases, its options (each an `Option`: a rule of resnet_bench.infra.checks and a help line; the
defaults are the loader's keyword defaults), the loader and what the config alone tells about
its size. The loader returns an object with `training_data(recipe, seed=, device=, rank=,
world_size=)` (resnet_bench.data.dataset.RunData): an `ImageDataset` for a set held in memory,
an `ImageIndex` for one streamed from disk (a kind declared `streamed`).

Everything else is derived from the declarations: the options' checks and refusals, the flags
of `resnet-bench data prepare`, the pipeline config schema's `datasets` section. Lookups go
through resnet_bench.data.registry, which imports the built-in kinds.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from resnet_bench.infra.checks import ConfigError, Rule, refuse


@dataclass(frozen=True)
class Option:
    """One option of a dataset kind: its rule (type and range) and what it does."""

    name: str
    rule: Rule
    help: str = ""


def _nothing(options: Mapping[str, Any]) -> None:
    return None


@dataclass(frozen=True)
class DatasetKind:
    """One kind of dataset. `load(root, **options)` reads (or generates) it; its keyword-only
    parameters are the options, their defaults the options' defaults. `train_size(options)` and
    `image_size(options)` (options with the defaults filled in) are what the config alone tells:
    the training-set size and the (height, width) of the training images, None when only
    loading tells. `check` refuses combinations of checked options (each option alone is
    checked by its rule). `reads_files` False: generated, so a root would be ignored.
    `streamed`: the loader gives an index of files read per batch, not images in memory."""

    name: str
    load: Callable[..., Any]
    options: tuple[Option, ...]
    help: str
    aliases: tuple[str, ...] = ()
    train_size: Callable[[Mapping[str, Any]], int | None] = _nothing
    image_size: Callable[[Mapping[str, Any]], tuple[int, int] | None] = _nothing
    check: Callable[[Mapping[str, Any], str], None] | None = None
    reads_files: bool = True
    streamed: bool = False
    defaults: dict[str, Any] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        params = {p.name: p.default for p in inspect.signature(self.load).parameters.values()
                  if p.kind is inspect.Parameter.KEYWORD_ONLY}
        if set(params) != {o.name for o in self.options}:
            raise TypeError(f"dataset kind {self.name}: the options {self.option_names} are not "
                            f"the loader's keyword-only parameters {list(params)}")
        object.__setattr__(self, "defaults", params)

    @property
    def option_names(self) -> list[str]:
        return [o.name for o in self.options]

    def check_options(self, options: Any, where: str = "data option ") -> dict[str, Any]:
        """The options, each checked by its rule (unknown ones refused), then together."""
        if not isinstance(options, Mapping):
            raise refuse("options", options, "a mapping of dataset options")
        rules = {o.name: o.rule for o in self.options}
        unknown = sorted(str(k) for k in options if k not in rules)
        if unknown:
            raise ConfigError(f"{where}{', '.join(unknown)}: unknown for dataset {self.name}; "
                              f"valid: {', '.join(rules)}")
        checked = {k: rules[k].check(k, v, where) for k, v in options.items()}
        if self.check is not None:
            self.check({**self.defaults, **checked}, where)
        return checked

    def prepare_args(self, options: Mapping[str, Any], where: str = "data option ") -> list[str]:
        """Checked `options` as the flags of `resnet-bench data prepare` that parse back to them
        (how the pipeline passes them on); a ConfigError for a value no flag can carry."""
        rules = {o.name: o.rule for o in self.options}
        return [arg for name, value in sorted(options.items()) if value is not None
                for arg in rules[name].args(name, value, where)]

    def known_train_size(self, options: Mapping[str, Any]) -> int | None:
        return self.train_size({**self.defaults, **options})

    def known_image_size(self, options: Mapping[str, Any]) -> tuple[int, int] | None:
        return self.image_size({**self.defaults, **options})


_KINDS: dict[str, DatasetKind] = {}
_ALIASES: dict[str, str] = {}


def register(kind: DatasetKind) -> DatasetKind:
    """Add a kind (and its aliases) to the kinds every command, check and schema knows."""
    taken = {*_KINDS, *_ALIASES} & {kind.name, *kind.aliases}
    if taken and _KINDS.get(kind.name) is not kind:
        raise ValueError(f"dataset kind {kind.name}: {', '.join(sorted(taken))} already registered")
    _KINDS[kind.name] = kind
    _ALIASES.update({alias: kind.name for alias in kind.aliases})
    return kind


def unregister(name: str) -> None:
    """Forget a kind and its aliases (a test or a plugin that registered one for a while)."""
    kind = _KINDS.pop(name)
    for alias in kind.aliases:
        del _ALIASES[alias]


def registered() -> dict[str, DatasetKind]:
    """The kinds registered so far, by name (resnet_bench.data.registry imports the built-ins)."""
    return dict(_KINDS)


def aliases() -> dict[str, str]:
    return dict(_ALIASES)
