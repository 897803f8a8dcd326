"""Expand a pipeline config into runs: family x block x depth x variant x dataset x seed.

The Snakefile only asks this module which runs exist and where they live; the naming rule is
here (`RUN_DIR`), where it is tested, and the workflow's file patterns are derived from it.
"""

from __future__ import annotations

import itertools
import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Iterable

from resnet_bench import validation as V
from resnet_bench.models.families import FAMILIES
from resnet_bench.models.spec import ModelSpec, parse_model_name
from resnet_bench.pipeline.launch import layout
from resnet_bench.public_data import public_dataset
from resnet_bench.tables.claims import check_family
from resnet_bench.train.recipe import Recipe


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
    values = config["recipes"][name]
    if isinstance(values, dict):
        values = {"name": name, **values}
    try:
        return Recipe.from_dict(values, where=f"recipes.{name}")
    except ValueError as exc:
        raise GridError(str(exc)) from None


def recipe_json(config: dict[str, Any], name: str) -> str:
    return json.dumps(recipe_of(config, name).to_dict(), sort_keys=True)


def with_registered_families(schema: dict) -> dict:
    """The schema with its family enums set to the registered families (the file lists the
    package's own, which a test keeps equal to the declarations)."""
    family = schema["properties"]["grid"]["items"]["properties"]["family"]["oneOf"]
    family[0]["enum"] = family[1]["items"]["enum"] = list(FAMILIES)
    return schema


def check_schema(config: Any, schema_path: str | Path) -> None:
    """The config against workflow/schemas/config.schema.yaml, refused in one line naming the key,
    the value and what the schema allows (Snakemake's own report spans a dozen lines)."""
    import jsonschema
    import yaml
    schema = with_registered_families(yaml.safe_load(Path(schema_path).read_text()))
    validator = jsonschema.Draft202012Validator(schema)
    error = jsonschema.exceptions.best_match(validator.iter_errors(config))
    if error is None:
        return
    key = ".".join(str(p) for p in error.absolute_path) or "(top level)"
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
    raise V.refuse(key, error.instance, allowed, where="config key ")


def validate(config: dict[str, Any]) -> list[Run]:
    """Everything Snakemake's schema cannot check, with the trainer's own rules
    (resnet_bench.validation): recipes are trainable, dataset options are valid, names exist,
    and every recipe's batch and hold-out fit the datasets it trains on (where the size is
    known before loading: synthetic sets by their options, CIFAR by its fixed 50k)."""
    for name in config.get("recipes", {}):
        recipe_of(config, name)
    for name, spec in config.get("datasets", {}).items():
        try:
            V.check_data_source(spec.get("kind"), spec.get("root"), root_key="root",
                                where=f"datasets.{name}.")
            V.check_dataset_options(spec.get("kind"), spec.get("options", {}),
                                    where=f"datasets.{name}.options.")
        except ValueError as exc:
            raise GridError(str(exc)) from None
        check_source(name, spec)
    try:
        fetch_targets(config)
    except ValueError as exc:
        raise GridError(str(exc)) from None
    world = layout(config).world_size  # gpus_per_run / ranks_per_run / runs_per_gpu / device agree
    for name in config.get("recipes", {}):
        recipe = recipe_of(config, name)
        try:  # every rank takes an equal slice of each batch (the trainer's rule)
            V.check_bn_batch_size(recipe.bn_batch_size, recipe.batch_size, world,
                                  where=f"recipes.{name}.")
        except ValueError as exc:
            raise GridError(str(exc)) from None
    for i, entry in enumerate(config.get("grid", [])):
        for seed in _as_list(entry.get("seeds", [])):  # the trainer's range, not only the schema's
            try:
                V.check_seed(seed, where=f"grid[{i}].seeds: ")
            except ValueError as exc:
                raise GridError(str(exc)) from None
    runs = expand(config)
    if not runs:
        raise GridError("the grid expands to no runs")
    for ds, rname in sorted({(r.dataset, r.recipe) for r in runs}):
        spec = config["datasets"][ds]
        n_train = V.known_train_size(spec["kind"], spec.get("options", {}))
        if n_train is not None:
            try:
                V.check_fits(recipe_of(config, rname), n_train, ds, where=f"recipes.{rname}.")
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
    from resnet_bench.data.registry import canonical_kind  # as validation does: loads torch
    where = f"config key datasets.{name}."
    if "source" not in spec:
        raise GridError(f"{where}url: needs `source` (the public dataset it downloads)")
    try:
        source = public_dataset(spec["source"])
    except ValueError as exc:
        raise GridError(f"{where}source: {exc}") from None
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
    spec = config["datasets"][dataset]
    return V.known_image_size(spec["kind"], spec.get("options") or {})


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
