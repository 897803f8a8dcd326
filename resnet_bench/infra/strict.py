"""YAML and JSON as the suite reads them: a key given twice is refused, never last-one-wins.

A config that says `iterations: 300` and, further down, `iterations: 3000000` is a mistake the
usual loaders hide. Standard library (and PyYAML, imported when YAML is read) only, so the run
record can use it.
"""

from __future__ import annotations

import json
from typing import Any


class DuplicateKeyError(ValueError):
    """A mapping that names one key twice; the message names the source, the key, the lines."""


def _pairs(source: str):
    def hook(pairs: list[tuple[str, Any]]) -> dict:
        out: dict = {}
        for key, value in pairs:
            if key in out:
                raise DuplicateKeyError(f"{source}: key {key!r} is given twice; keep one")
            out[key] = value
        return out
    return hook


def json_loads(text: str, source: str) -> Any:
    """json.loads refusing duplicate keys (json.JSONDecodeError for invalid JSON, as json's)."""
    return json.loads(text, object_pairs_hook=_pairs(source))


def yaml_load(text: str, source: str) -> Any:
    """yaml.safe_load refusing duplicate keys, naming both lines (yaml.YAMLError as PyYAML's)."""
    import yaml

    class Loader(yaml.SafeLoader):
        pass

    def construct_mapping(loader, node, deep=False):
        if isinstance(node, yaml.MappingNode):
            seen: dict = {}
            for key_node, _ in node.value:
                if key_node.tag == "tag:yaml.org,2002:merge":
                    continue
                key = loader.construct_object(key_node, deep=True)
                line = key_node.start_mark.line + 1
                try:
                    if key in seen:
                        raise DuplicateKeyError(f"{source}: key {key!r} is given twice (lines "
                                                f"{seen[key]} and {line}); keep one")
                    seen[key] = line
                except TypeError:  # an unhashable key: PyYAML's own error follows
                    continue
        return yaml.SafeLoader.construct_mapping(loader, node, deep=deep)

    Loader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, construct_mapping)
    return yaml.load(text, Loader=Loader)


def config_file(path: str) -> Any:
    """A JSON or YAML config file as Snakemake reads it (JSON first), duplicates refused."""
    with open(path, encoding="utf-8") as f:
        text = f.read()
    try:
        return json_loads(text, path)
    except json.JSONDecodeError:
        return yaml_load(text, path)
