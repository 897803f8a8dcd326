"""Expand a pipeline config into runs: family x block x depth x variant x dataset x seed.

The Snakefile only asks this module which runs exist and where they live; the naming rule is
here (`RUN_DIR`), where it is tested, and the workflow's file patterns are derived from it.
"""

from __future__ import annotations

import itertools
import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterable

from resnet_bench.infra import checks
from resnet_bench.models.families import FAMILIES
from resnet_bench.models.spec import ModelSpec, parse_model_name
from resnet_bench.pipeline.launch import layout
from resnet_bench.public_data import public_dataset
from resnet_bench.tables.claims import check_family
from resnet_bench.train import recipe as recipes
from resnet_bench.train.recipe import Recipe

if TYPE_CHECKING:
    from resnet_bench.data.registry import DatasetSource


class GridError(ValueError):
    """A pipeline config that names something that does not exist."""


# Where a run lives: its directory below an experiment, and the name of its log and benchmark.
RUN_ID = "{dataset}/{recipe}/{model}/seed{seed}"
RUN_DIR = "{results}/{experiment}/runs/" + RUN_ID


@dataclass(frozen=True, order=True)
class Run:
    dataset: str
    recipe: str
    model: str
    seed: int

    def path(self, results: str, experiment: str) -> str:
        return RUN_DIR.format(results=results, experiment=experiment, **asdict(self))


def run_dir_pattern(results: str, experiment: str) -> str:
    """RUN_DIR as a Snakemake file pattern: the run's fields are the wildcards."""
    return RUN_DIR.replace("{results}", results).replace("{experiment}", experiment)


def _as_list(value: Any) -> list:
    return list(value) if isinstance(value, (list, tuple)) else [value]


def models_of(entry: dict[str, Any]) -> list[ModelSpec]:
    """The networks of one grid entry: an explicit `models` list (names or aliases), or a
    product of `family` x `block` x `depth` x `variant` (each a value or a list) with the
    entry's `stem`: `cifar` (default) or `imagenet` (V1 Table 1's nets, depths 18 ... 200)."""
    specs: list[ModelSpec] = [parse_model_name(name) for name in entry.get("models", [])]
    if "family" in entry:
        if "depth" not in entry:
            raise GridError("`family` needs `depth` (a value or a list)")
        stem = entry.get("stem", "cifar")
        for family, block, depth, variant in itertools.product(
                _as_list(entry["family"]), _as_list(entry.get("block", "basic")),
                _as_list(entry["depth"]), _as_list(entry.get("variant", "default"))):
            if family in FAMILIES and block not in FAMILIES[family].blocks:
                continue  # e.g. the papers have no plain bottleneck nets
            specs.append(ModelSpec(family, block, int(depth),
                                   "" if variant in ("default", None) else str(variant), stem))
    if not specs:
        raise GridError("grid entry lists no models: give `models: [...]` or `family`/`depth`")
    if "stem" in entry and "family" not in entry:
        raise GridError("`stem` applies to `family`/`depth` products; `models` names carry "
                        "their own (imagenet-... for the ImageNet nets)")
    return list(dict.fromkeys(specs))


def expand(config: dict[str, Any]) -> list[Run]:
    runs: list[Run] = []
    datasets, recipes = config.get("datasets", {}), config.get("recipes", {})
    for i, entry in enumerate(config["grid"]):
        for ds in _as_list(entry["datasets"]):
            if ds not in datasets:
                raise GridError(f"grid[{i}]: dataset {ds!r} is not defined under `datasets` "
                                f"(defined: {', '.join(sorted(datasets)) or 'none'})")
        if entry["recipe"] not in recipes:
            raise GridError(f"grid[{i}]: recipe {entry['recipe']!r} is not defined under `recipes` "
                            f"(defined: {', '.join(sorted(recipes)) or 'none'})")
        try:
            models = models_of(entry)
        except ValueError as exc:
            raise GridError(f"grid[{i}]: {exc}") from None
        for ds, spec, seed in itertools.product(_as_list(entry["datasets"]), models,
                                                _as_list(entry["seeds"])):
            runs.append(Run(ds, entry["recipe"], spec.name, int(seed)))  # the name: a path part
    return sorted(set(runs))


def recipe_of(config: dict[str, Any], name: str) -> Recipe:
    """The recipe `name` of `config`, built (and checked) once however often it is asked for:
    the pipeline asks for every job's resources and command line."""
    values = config["recipes"][name]
    if isinstance(values, dict):
        values = {"name": name, **values}
    key = (name, json.dumps(values, sort_keys=True, default=repr))
    if key not in _RECIPES:
        try:
            _RECIPES[key] = Recipe.from_dict(values, where=f"recipes.{name}")
        except ValueError as exc:
            raise GridError(str(exc)) from None
    return _RECIPES[key]


_RECIPES: dict[tuple[str, str], Recipe] = {}


def source_of(config: dict[str, Any], name: str) -> DatasetSource:
    """The dataset `name` of `config` as a checked data source (its kind and options)."""
    spec = config["datasets"][name]
    key = (name, json.dumps(spec, sort_keys=True, default=repr))
    if key not in _SOURCES:
        # here, not at the top: the kinds' loaders import torch, which listing outputs must not
        from resnet_bench.data.registry import parse_source
        try:
            _SOURCES[key] = parse_source(
                spec.get("kind"), spec.get("root"), options=spec.get("options", {}),
                kind_key="kind", root_key="root", where=f"datasets.{name}.",
                options_where=f"datasets.{name}.options.")
        except ValueError as exc:
            raise GridError(str(exc)) from None
    return _SOURCES[key]


_SOURCES: dict[tuple[str, str], DatasetSource] = {}


def recipe_json(config: dict[str, Any], name: str) -> str:
    return json.dumps(recipe_of(config, name).to_dict(), sort_keys=True)


def check_schema(config: Any, schema_path: str | Path) -> None:
    """The config against workflow/schemas/config.schema.yaml, refused in one line naming the key,
    the value and what the schema allows (Snakemake's own report spans a dozen lines)."""
    import jsonschema
    import yaml
    schema = with_vocabulary(yaml.safe_load(Path(schema_path).read_text()))
    validator = jsonschema.Draft202012Validator(schema)
    error = jsonschema.exceptions.best_match(validator.iter_errors(config))
    if error is None:
        return
    path = list(error.absolute_path)
    if len(path) >= 2 and path[0] in ("recipes", "datasets") \
            and isinstance(config[path[0]].get(path[1]), dict):
        # the declarations' own refusal (the same rule, in its words), when it gives one
        (recipe_of if path[0] == "recipes" else source_of)(config, path[1])
    key = ".".join(str(p) for p in path) or "(top level)"
    rule, expected = error.validator, error.validator_value
    if rule == "additionalProperties" and isinstance(error.instance, dict):
        known = sorted(error.schema.get("properties", {}))
        extra = sorted(k for k in error.instance if k not in known)
        raise GridError(f"config key {key}: unknown key(s) {', '.join(map(str, extra))}; "
                        f"valid keys: {', '.join(known)}")
    if rule == "required":
        raise GridError(f"config key {key}: {error.message}")
    allowed = {"type": lambda v: f"a value of type {v}",
               "enum": lambda v: "one of " + ", ".join(map(str, v)),
               "minimum": lambda v: f">= {v}", "maximum": lambda v: f"<= {v}",
               "exclusiveMinimum": lambda v: f"> {v}", "exclusiveMaximum": lambda v: f"< {v}",
               "pattern": lambda v: f"a string matching {v}",
               "minItems": lambda v: f"at least {v} item(s)",
               "minProperties": lambda v: f"at least {v} entry(ies)",
               "uniqueItems": lambda v: "a list without repeated items"}
    describe = allowed.get(rule)
    allowed = describe(expected) if describe else error.message
    raise checks.refuse(key, error.instance, allowed, where="config key ")


def key_pattern(schema_path: str | Path, section: str) -> str:
    """The pattern the config schema gives the names of a section's entries (`datasets`,
    `recipes`), unanchored: the workflow's wildcard constraint for those names."""
    import yaml
    schema = yaml.safe_load(Path(schema_path).read_text())
    pattern = schema["properties"][section]["propertyNames"]["pattern"]
    return pattern.removeprefix("^").removesuffix("$")


def with_vocabulary(schema: dict[str, Any]) -> dict[str, Any]:
    """The config schema with its `recipes` and `datasets` entries derived from the recipe knobs
    and the registered dataset kinds, its family enums from the registered families: the schema
    file holds the same (tests keep them equal), and a kind or family registered at run time is
    known here too."""
    props = schema["properties"]
    family = props["grid"]["items"]["properties"]["family"]["oneOf"]
    family[0]["enum"] = family[1]["items"]["enum"] = list(FAMILIES)
    props["recipes"]["additionalProperties"] = recipes.schema()
    from resnet_bench.data.registry import schema_kinds, schema_options  # torch: see source_of
    entry = props["datasets"]["additionalProperties"]
    entry["properties"]["kind"]["enum"] = schema_kinds()
    entry["allOf"] = schema_options()
    return schema


def validate(config: dict[str, Any]) -> list[Run]:
    """Everything Snakemake's schema cannot check, with the trainer's own rules (the recipe
    knobs', the dataset kinds'): recipes are trainable, dataset options are valid, names exist,
    and every recipe's batch and hold-out fit the datasets it trains on (where the size is
    known before loading: synthetic sets by their options, CIFAR by its fixed 50k)."""
    parsed = {name: recipe_of(config, name) for name in config.get("recipes", {})}
    sources = {}
    for name, spec in config.get("datasets", {}).items():
        sources[name] = source = source_of(config, name)
        check_source(name, spec)
        try:  # its prepare_data job passes the options on as flags
            source.kind.prepare_args(source.options, where=f"datasets.{name}.options.")
        except ValueError as exc:
            raise GridError(str(exc)) from None
    try:
        fetch_targets(config)
    except ValueError as exc:
        raise GridError(str(exc)) from None
    world = layout(config).world_size  # gpus_per_run / ranks_per_run / runs_per_gpu / device agree
    for name, recipe in parsed.items():
        try:  # every rank takes an equal slice of each batch (the trainer's rule)
            recipe.bn_mode(world, where=f"recipes.{name}.")
        except ValueError as exc:
            raise GridError(str(exc)) from None
    for i, entry in enumerate(config.get("grid", [])):
        for seed in _as_list(entry.get("seeds", [])):  # the trainer's range, not only the schema's
            try:
                checks.seed(seed, where=f"grid[{i}].seeds: ")
            except ValueError as exc:
                raise GridError(str(exc)) from None
    runs = expand(config)
    if not runs:
        raise GridError("the grid expands to no runs")
    from resnet_bench.data.runs import check_fits  # torch: see source_of
    for ds, rname in sorted({(r.dataset, r.recipe) for r in runs}):
        n_train = sources[ds].kind.known_train_size(sources[ds].options)
        if n_train is not None:
            recipe = parsed[rname]
            try:
                check_fits(recipe.batch_size, recipe.val_split, n_train, ds,
                           where=f"recipes.{rname}.")
            except ValueError as exc:
                raise GridError(str(exc)) from None
    for key in config.get("analysis", {}):
        analysis_runs(config, key)
    try:
        check_family(config.get("claims"))
    except ValueError as exc:
        raise GridError(str(exc)) from None
    return runs


def check_source(name: str, spec: dict[str, Any]) -> None:
    """A `source` must be a public dataset of the entry's kind, fetched into an explicit root."""
    if "source" not in spec and "url" not in spec:
        return
    where = f"config key datasets.{name}."
    if "source" not in spec:
        raise GridError(f"{where}url: needs `source` (the public dataset it downloads)")
    try:
        source = public_dataset(spec["source"])
    except ValueError as exc:
        raise GridError(f"{where}source: {exc}") from None
    from resnet_bench.data.registry import canonical_kind  # torch: see source_of
    if canonical_kind(spec.get("kind", "")) != source.kind:
        raise GridError(f"{where}kind: {spec.get('kind')!r}, but source {source.key} is read by "
                        f"kind {source.kind}")
    if not spec.get("root"):
        raise GridError(f"{where}root: missing; where {source.key} lives or is fetched to, "
                        f"e.g. {source.default_root}")


# A `datasets:` entry with a `source` (resnet_bench/public_data.py) is fetched into its `root`
# when that is absent; the root is then an input of its prepare_data job. An entry without one
# only reads its root, so a study registered before sources existed keeps its jobs and inputs.
def fetch_targets(config: dict[str, Any]) -> dict[str, list[str]]:
    """root -> `resnet-bench data fetch` arguments, one fetch per root (entries sharing a root
    must name the same source and URL)."""
    targets: dict[str, list[str]] = {}
    for name, spec in sorted(config.get("datasets", {}).items()):
        if not spec.get("source"):
            continue
        args = [spec["source"], *(["--url", spec["url"]] if spec.get("url") else [])]
        if targets.setdefault(spec["root"], args) != args:
            raise ValueError(f"datasets.{name}: root {spec['root']!r} is also fetched with "
                             f"{' '.join(targets[spec['root']])!r}; one root, one source")
    return targets


def check_results_dir(results: str) -> None:
    """`results` (and every folder above it) must be a directory or not yet exist: Snakemake
    would otherwise fail deep in its file inventory with a traceback."""
    path = Path(results)
    for p in (path, *path.parents):
        if p.exists() and not p.is_dir():
            raise GridError(f"config key results: {results!r}: {p} exists and is not a directory")


def image_size_of(config: dict[str, Any], dataset: str) -> tuple[int, int] | None:
    """(h, w) of a dataset's training images as far as the config tells (the resources'
    scale; None for a folder without `image_size`)."""
    source = source_of(config, dataset)
    return source.kind.known_image_size(source.options)


def run_dirs(runs: Iterable[Run], results: str, experiment: str) -> list[str]:
    return [r.path(results, experiment) for r in runs]


def prepared_path(results: str, dataset: str) -> str:
    return str(Path(results) / "data" / f"{dataset}.pt")


def analysis_runs(config: dict[str, Any], key: str) -> list[Run]:
    """The trained runs an analysis reads: its `models` at its dataset/recipe/seed (all models of
    that dataset and recipe when it names none). Every one must be part of the grid."""
    spec = config.get("analysis", {}).get(key)
    if spec is None:
        return []
    runs = expand(config)
    dataset = spec.get("dataset", runs[0].dataset)
    recipe = spec.get("recipe", runs[0].recipe)
    pool = [r for r in runs if r.dataset == dataset and r.recipe == recipe]
    if "seed" in spec:
        pool = [r for r in pool if r.seed == spec["seed"]]
    if "models" not in spec:
        if not pool:
            raise GridError(f"analysis.{key}: no runs of dataset {dataset!r} and recipe {recipe!r}")
        return pool
    chosen = []
    for name in spec["models"]:
        model = parse_model_name(name).name
        match = [r for r in pool if r.model == model]
        if not match:
            raise GridError(f"analysis.{key}: {model} (dataset {dataset}, recipe {recipe}, seed "
                            f"{spec.get('seed', 'any')}) is not in the grid")
        chosen += match
    return chosen
