"""The dataset kinds every command, check and schema looks up, and a run's data source parsed once.

The built-in kinds declare and register themselves in their modules (synthetic, cifar, folder,
imagenet); importing this module imports them. A kind registered elsewhere
(`resnet_bench.data.kind.register`) is known from then on like a built-in one.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from resnet_bench.infra.checks import ConfigError, refuse

# Each registers its kind; in this order the kinds are listed (the package imports this first).
from . import synthetic, cifar, folder, imagenet  # noqa: F401,I001
from .errors import DatasetError
from .kind import DatasetKind, aliases, registered
from .prepared import load_prepared, save_prepared


def kinds() -> dict[str, DatasetKind]:
    """Every registered kind by name, the built-in ones first."""
    return registered()


def canonical_kind(kind: str) -> str:
    """`imagefolder` -> `folder`; any other name as it is."""
    return aliases().get(kind, kind)


def lookup(kind: Any, key: str = "dataset", where: str = "") -> DatasetKind:
    """The kind called `kind` (or one of its aliases); a one-line ConfigError naming the kinds."""
    found = kinds().get(canonical_kind(kind)) if isinstance(kind, str) else None
    if found is None:
        raise refuse(key, kind, "one of " + ", ".join(kinds()), where)
    return found


def options_for(kind: str) -> list[str]:
    """The options a kind accepts (for error messages and the CLI)."""
    return lookup(kind).option_names


@dataclass(frozen=True)
class DatasetSource:
    """Where a run's images come from, checked: a kind with its root and options, or a prepared
    file (`kind` None). `name` is what the run records as its dataset: the kind's own name (an
    alias resolved), or with a prepared file the name given for it."""

    name: str
    kind: DatasetKind | None
    root: str | None
    options: dict[str, Any]
    prepared: str | None

    def load(self):
        """The dataset: an `ImageDataset` in memory, or what the kind streams (`ImageIndex`)."""
        if self.prepared:
            return load_prepared(self.prepared)
        return self.kind.load(self.root, **self.options)


def parse_source(dataset: str, root: Any = None, prepared: str | None = None,
                 options: Mapping[str, Any] | None = None, *, kind_key: str = "dataset",
                 root_key: str = "data_dir", where: str = "",
                 options_where: str = "data option ") -> DatasetSource:
    """Check a run's data source once: the kind and its options, and nothing the chosen source
    would silently ignore (a root for a generated set, a root or options beside a prepared
    file, whose images are already decided)."""
    options = {} if options is None else options
    if prepared:
        if root:
            raise refuse(root_key, root, "none with a prepared file (its images are in it)",
                         where)
        if options:
            raise ConfigError(f"{where}data option {', '.join(map(str, options))}: ignored with a "
                              "prepared file (set it when the file is prepared)")
        return DatasetSource(dataset, None, None, {}, prepared)
    kind = lookup(dataset, kind_key, where)
    if not kind.reads_files and root not in (None, ""):
        raise refuse(root_key, root, f"none for dataset {kind.name} (it is generated and "
                                     "reads no files)", where)
    checked = kind.check_options(options, options_where)
    return DatasetSource(kind.name, kind, None if root is None else str(root), checked, None)


def _api_source(kind: str, root: Any, options: dict[str, Any]) -> DatasetSource:
    """parse_source for the Python API, whose callers pass options as keywords."""
    found = kinds().get(canonical_kind(kind))
    if found is None:
        raise DatasetError(kind, f"unknown dataset kind; valid kinds: {', '.join(kinds())}")
    if unknown := sorted(set(options) - set(found.option_names)):
        raise DatasetError(kind, f"unknown option(s) {', '.join(unknown)}; "
                                 f"valid: {', '.join(found.option_names)}")
    return parse_source(found.name, root, options=options)


def load_dataset(kind: str, root: str | Path | None = None, **options):
    """Load a dataset of `kind` (synthetic, cifar10, cifar100, folder or imagefolder, or any
    registered kind) from `root`; kind imagenet gives an `ImageIndex` (files and statistics),
    not images in memory."""
    return _api_source(kind, root, options).load()


def prepare_dataset(kind: str, root: str | Path | None, out_path: str | Path, **options: Any):
    """Load `kind` from `root` with `options` and write it to `out_path` (atomically)."""
    return prepare(_api_source(kind, root, options), out_path)


def prepare(source: DatasetSource, out_path: str | Path):
    """Load a checked source and write it to `out_path` (atomically)."""
    ds = source.load()
    save_prepared(ds, out_path, extra={"kind": source.name, "root": source.root,
                                       "options": source.options})
    return ds


def schema_kinds() -> list[str]:
    """The config schema's enum of `datasets.*.kind`: every kind and alias."""
    return [*kinds(), *aliases()]


def schema_options() -> list[dict[str, Any]]:
    """The config schema's rules for `datasets.*.options`, one `if kind ... then options ...`
    per kind: the options it accepts, each of its rule's type and range."""
    return [{"if": {"required": ["kind"], "properties": {"kind": {"enum": [k.name, *k.aliases]}}},
             "then": {"properties": {"options": {
                 "additionalProperties": False,
                 "properties": {o.name: {**o.rule.schema(), "description": o.help}
                                for o in k.options}}}}}
            for k in kinds().values()]
