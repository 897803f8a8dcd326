"""Model names: `ModelSpec(family, block, depth, variant)` <-> `{family}-{block}-{depth}[-{variant}]`.

The variant vocabulary (one variant per network; the family's default is left out of the name):

    shortcut at every unit (V1 Sec. 3.3 options; A is the default for basic, B for bottleneck)
        optA        parameter-free: identity, or stride-2 subsample + zero channels where the shape changes
        optB        identity, or 1x1 projection where the shape changes
        optC        1x1 projection at every unit (also V2 Table 1 "1x1 conv shortcut")
    V2 Table 1, what multiplies the shortcut and the residual branch F (family v1)
        scale-s<l>[-f<m>]   constant scaling: shortcut x l, F x m (m defaults to 1)
        exgate-b<b>         exclusive gating: shortcut x (1-g), F x g, g = sigmoid(1x1 conv(x) + b), b initialised to <b>
        scgate-b<b>         shortcut-only gating: shortcut x (1-g), F x 1
        dropsc[-p<p>]       dropout with probability p (default 0.5) on the shortcut
    V2 Table 2, where BN and ReLU sit in the unit
        bnafter     (b) BN after addition                     family v1
        relubefore  (c) ReLU before addition                  family v1
        reluonly    (d) ReLU-only pre-activation              family v2
    V2 Table 3
        1layer      basic units of a single 3x3 layer, depth 3n+2 (ResNet-110(1layer))

Numbers are written with Python's `g` format, so `exgate-b-6` means b = -6 and `scale-s0.5-f0.5`
means 0.5 / 0.5. A name parses back to the same spec; a non-canonical spelling (`optA` spelled out,
`b-6.0`) parses to the canonical spec.
"""

from __future__ import annotations

import operator
import re
from dataclasses import dataclass

FAMILIES = ("plain", "v1", "v2")
BLOCKS = {"plain": ("basic",), "v1": ("basic", "bottleneck"), "v2": ("basic", "bottleneck")}

# Layers per unit decide the depth rule: depth = 3 * (layers per unit) * n + 2 (stem conv and FC).
LAYERS_PER_UNIT = {"basic": 2, "bottleneck": 3, "1layer": 1}

_NUM = r"-?\d+(?:\.\d+)?"
# The parametrised V2 Table 1 variants (family v1): kind -> full-match pattern.
_PATTERNS = {
    "scale": re.compile(rf"scale-s(?P<s>{_NUM})(?:-f(?P<f>{_NUM}))?"),
    "exgate": re.compile(rf"exgate-b(?P<b>{_NUM})"),
    "scgate": re.compile(rf"scgate-b(?P<b>{_NUM})"),
    "dropsc": re.compile(rf"dropsc(?:-p(?P<p>{_NUM}))?"),
}
_SHORTCUT_OPTIONS = ("optA", "optB", "optC")
_TABLE1 = ("scale-s<l>[-f<m>]", "exgate-b<b>", "scgate-b<b>", "dropsc[-p<p>]")


class ModelNameError(ValueError):
    """An unknown family, block or variant, or a depth the block cannot have."""


def default_variant(family: str, block: str) -> str:
    if family == "plain":
        return "none"
    # The papers: option A for the basic CIFAR nets (V1 Sec. 4.2), projections where the
    # dimensions change for the bottleneck nets (V2 Sec. 4 / authors' resnet-1k-layers code).
    return "optA" if block == "basic" else "optB"


def _valid_variants(family: str, block: str) -> list[str]:
    if family == "plain":
        return ["none"]
    names = list(_SHORTCUT_OPTIONS)
    if family == "v1":
        names += list(_TABLE1) + ["bnafter", "relubefore"]
    else:
        names += ["reluonly"]
    if block == "basic":
        names.append("1layer")
    default = default_variant(family, block)
    return [f"{v} (default)" if v == default else v for v in names]


def _fmt(x: float) -> str:
    return format(float(x) + 0.0, "g")  # + 0.0 turns -0 into 0


def canonical_variant(family: str, block: str, variant: str | None) -> str:
    """The canonical spelling of `variant` for this family/block, or ModelNameError."""
    if variant is None or variant == "" or variant != variant:  # missing (None, '', NaN from a table)
        return default_variant(family, block)
    variant = str(variant)
    valid = _valid_variants(family, block)
    plain_names = {v.split(" ")[0] for v in valid}
    if variant in plain_names:
        return variant
    if family == "v1":
        for kind, pattern in _PATTERNS.items():
            m = pattern.fullmatch(variant)
            if not m:
                continue
            if kind == "scale":
                f = m["f"]
                return f"scale-s{_fmt(m['s'])}" + ("" if f is None or float(f) == 1 else f"-f{_fmt(f)}")
            if kind == "dropsc":
                p = m["p"]
                if p is not None and not 0 <= float(p) < 1:
                    raise ModelNameError(f"dropout probability {p} in variant {variant!r} is not in [0, 1)")
                return "dropsc" if p is None or float(p) == 0.5 else f"dropsc-p{_fmt(p)}"
            return f"{kind}-b{_fmt(m['b'])}"
    raise ModelNameError(
        f"unknown variant {variant!r} for {family}-{block}; valid: {', '.join(valid)}"
    )


def layers_per_unit(block: str, variant: str) -> int:
    return LAYERS_PER_UNIT["1layer" if variant == "1layer" else block]


def valid_depths(block: str, variant: str, count: int = 8) -> list[int]:
    k = 3 * layers_per_unit(block, variant)
    return [k * n + 2 for n in range(1, count + 1)]


@dataclass(frozen=True)
class ModelSpec:
    family: str
    block: str
    depth: int
    variant: str = ""

    def __post_init__(self) -> None:
        if self.family not in FAMILIES:
            raise ModelNameError(f"unknown family {self.family!r}; valid: {', '.join(FAMILIES)}")
        if self.block not in BLOCKS[self.family]:
            raise ModelNameError(
                f"unknown block {self.block!r} for family {self.family}; valid: {', '.join(BLOCKS[self.family])}"
            )
        object.__setattr__(self, "variant", canonical_variant(self.family, self.block, self.variant))
        # Accept any whole number (numpy.int64, or 56.0 from a pandas row), nothing fractional.
        depth = self.depth
        if isinstance(depth, float) and depth.is_integer():
            depth = int(depth)
        try:
            object.__setattr__(self, "depth", operator.index(depth))
        except TypeError:
            raise ModelNameError(f"depth {self.depth!r} is not a whole number") from None
        k = 3 * layers_per_unit(self.block, self.variant)
        if self.depth < k + 2 or (self.depth - 2) % k:
            shown = ", ".join(map(str, valid_depths(self.block, self.variant)))
            what = f"{self.block}" + (f" ({self.variant})" if self.variant == "1layer" else "")
            raise ModelNameError(
                f"depth {self.depth} is not {k}n+2 (n>=1) for block {what}; valid: {shown}, ..."
            )

    @property
    def name(self) -> str:
        base = f"{self.family}-{self.block}-{self.depth}"
        return base if self.variant == default_variant(self.family, self.block) else f"{base}-{self.variant}"

    @property
    def units_per_stage(self) -> int:
        return (self.depth - 2) // (3 * layers_per_unit(self.block, self.variant))

    def __str__(self) -> str:
        return self.name


def parse_model_name(name: str) -> ModelSpec:
    """`v1-basic-110-exgate-b-6` -> ModelSpec('v1', 'basic', 110, 'exgate-b-6'); any valid depth."""
    parts = str(name).strip().split("-", 3)
    if len(parts) < 3:
        raise ModelNameError(
            f"model name {name!r} is not {{family}}-{{block}}-{{depth}}[-{{variant}}]; "
            "e.g. plain-basic-20, v1-basic-56-optB, v2-bottleneck-164"
        )
    family, block, depth = parts[:3]
    variant = parts[3] if len(parts) == 4 else ""
    if family not in FAMILIES:
        raise ModelNameError(f"unknown family {family!r} in {name!r}; valid: {', '.join(FAMILIES)}")
    if not re.fullmatch(r"\d+", depth):
        raise ModelNameError(f"depth {depth!r} in {name!r} is not a whole number")
    return ModelSpec(family, block, int(depth), variant)
