"""Parameters and multiply-accumulates per image (32x32 for the CIFAR nets, 224x224 for the
ImageNet nets: `spec.image_size`), measured rather than derived by hand.

MACs come from torch's own FLOP counter (`FlopCounterMode`, MACs = FLOPs / 2) over one inference
forward pass. It counts convolutions and the FC layer; BN, ReLU, additions, gates' sigmoids and
pooling are not counted, the usual convention for published FLOP counts. The forward pass runs on the
'meta' device: shapes only, no activation memory, no arithmetic.

Results are cached in memory and in a JSON file (`$RESNET_BENCH_CACHE`, default
`~/.cache/resnet-bench/model_cost.json`) keyed by a hash of the torch version, this package's model
sources and the modules of the unit classes of every registered family (a family declared outside
the package), so editing a model invalidates its numbers and `resnet-bench models` stays fast.
"""

from __future__ import annotations

import hashlib
import inspect
import json
import os
import tempfile
from functools import lru_cache
from pathlib import Path

import torch
from torch.utils.flop_counter import FlopCounterMode

from .families import FAMILIES
from .registry import build_model
from .spec import ModelSpec, parse_model_name


def count_params(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def measure_cost(spec: ModelSpec | str, num_classes: int | None = None, in_channels: int = 3) -> tuple[int, int]:
    """(params, MACs per image), computed now on the meta device."""
    spec = parse_model_name(spec)
    # Built on the CPU and then moved: building under `torch.device("meta")` is ~3x slower, since
    # that mode intercepts every torch call made while the modules are constructed.
    model = build_model(spec, num_classes=num_classes, in_channels=in_channels).eval().to("meta")
    x = torch.empty(1, in_channels, spec.image_size, spec.image_size, device="meta")
    params = count_params(model)
    # The counter gives BN no FLOPs, but on 'meta' BN runs through slow Python decompositions:
    # drop it from this throwaway copy (tests check the count against a real CPU pass).
    _replace_batchnorm(model)
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        model(x)
    return params, counter.get_total_flops() // 2


def _replace_batchnorm(module: torch.nn.Module) -> None:
    for name, child in module.named_children():
        if isinstance(child, torch.nn.modules.batchnorm._BatchNorm):
            setattr(module, name, torch.nn.Identity())
        else:
            _replace_batchnorm(child)


@lru_cache(maxsize=1)
def _package_source() -> bytes:
    """The torch version and this package's model sources, as they enter the cache key."""
    files = sorted(Path(__file__).parent.glob("*.py"))
    return torch.__version__.encode() + b"".join(p.name.encode() + p.read_bytes() for p in files)


def _family_sources() -> dict[str, Path]:
    """Module -> source file of the unit classes of every registered family that are defined
    outside this package's models; looked up on every call, as a family can be registered at
    any time."""
    here = Path(__file__).parent.resolve()
    files = {}
    for cls in {unit.load() for family in FAMILIES.values() for unit in family.units()}:
        try:
            path = Path(inspect.getsourcefile(cls) or inspect.getfile(cls)).resolve()
        except TypeError:   # a class with no file (typed into an interactive session)
            continue
        if path.parent != here:
            files[cls.__module__] = path
    return dict(sorted(files.items()))


def _source_key() -> str:
    h = hashlib.sha256(_package_source())   # with no family from outside: the package's key
    for module, path in _family_sources().items():
        h.update(module.encode() + path.read_bytes())
    return h.hexdigest()[:16]


def cache_path() -> Path:
    env = os.environ.get("RESNET_BENCH_CACHE")
    base = Path(env) if env else Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "resnet-bench"
    return base / "model_cost.json"


def _load_disk() -> dict[str, list[int]]:
    try:
        data = json.loads(cache_path().read_text())
    except (OSError, ValueError):
        return {}
    return data.get("entries", {}) if data.get("key") == _source_key() else {}


def _save_disk(entries: dict[str, list[int]]) -> None:
    path = cache_path()
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".model_cost.")
        with os.fdopen(fd, "w") as f:
            json.dump({"key": _source_key(), "entries": entries}, f, indent=0, sort_keys=True)
        os.replace(tmp, path)  # atomic: concurrent readers see the old or the new file, never half
    except OSError:
        pass  # a read-only home only costs speed


_memory: dict[str, tuple[int, int]] = {}


def model_costs(specs: list[ModelSpec | str], num_classes: int | None = None,
                in_channels: int = 3) -> dict[str, tuple[int, int]]:
    """Cost of several networks, computing (and caching) only the missing ones. `num_classes`
    defaults to each net's own (10 for CIFAR, 1000 for ImageNet)."""
    by_name = {spec.name: spec for spec in map(parse_model_name, specs)}
    classes = {name: s.default_num_classes if num_classes is None else num_classes for name, s in by_name.items()}
    keys = {name: f"{name}|{classes[name]}|{in_channels}" for name in by_name}
    missing = [k for k in keys.values() if k not in _memory]
    if missing:
        disk = _load_disk()
        for k in missing:
            if k in disk:
                _memory[k] = tuple(disk[k])
        todo = [name for name, k in keys.items() if k not in _memory]
        if todo:
            for name in todo:
                _memory[keys[name]] = measure_cost(by_name[name], classes[name], in_channels)
            disk = _load_disk()  # re-read: another process may have added entries meanwhile
            disk.update({k: list(v) for k, v in _memory.items()})
            _save_disk(disk)
    return {name: _memory[k] for name, k in keys.items()}


@lru_cache(maxsize=None)
def conv_output_elements(spec: ModelSpec | str) -> int:
    """Elements of every convolution's output per `spec.image_size` image, summed: what a
    training step keeps for backward grows with it (each conv output, its BN output and ReLU
    output are saved). Measured on the 'meta' device like the MACs; scales with the image area."""
    spec = parse_model_name(spec)
    model = build_model(spec).eval().to("meta")
    _replace_batchnorm(model)
    total = 0

    def count(_module, _inputs, output) -> None:
        nonlocal total
        total += output[0].numel()   # one image

    for module in model.modules():
        if isinstance(module, torch.nn.Conv2d):
            module.register_forward_hook(count)
    with torch.no_grad():
        model(torch.empty(1, 3, spec.image_size, spec.image_size, device="meta"))
    return total


def model_cost(spec: ModelSpec | str, num_classes: int | None = None, in_channels: int = 3) -> tuple[int, int]:
    """(params, MACs per image: 32x32 CIFAR, 224x224 ImageNet) of a network; cached."""
    return next(iter(model_costs([spec], num_classes, in_channels).values()))
