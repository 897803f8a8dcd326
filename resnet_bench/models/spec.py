"""Model names: `ModelSpec(family, block, depth, variant, stem)` <-> `[imagenet-]{family}-{block}-{depth}[-{variant}]`.

Two input stems, one grammar. The CIFAR nets (stem `cifar`, the default, left out of the name like
the default variant) have one 3x3 conv, three stages of 16/32/64 and depth 6n+2 / 9n+2 (3n+2 for
1layer). The ImageNet nets (stem `imagenet`, names prefixed `imagenet-`) have V1 Table 1's 7x7/2
conv and 3x3/2 max-pool, four stages of 64/128/256/512 and the table's units per stage:

    basic        18: 2,2,2,2    34: 3,4,6,3
    bottleneck   50: 3,4,6,3   101: 3,4,23,3   152: 3,8,36,3   200: 3,24,36,3 (V2 Sec. 5)

No family may be called `imagenet` (`families.register_family` refuses it), so the prefix is never
mistaken for one and a CIFAR name needs no prefix.

The variant vocabulary (one variant per network; the family's default is left out of the name;
`families.SHARED_VARIANTS` names the ones every family shares, which no family's own unit variant
may shadow):

    shortcut at every unit (V1 Sec. 3.3 options; A is the default for basic, B for bottleneck)
        optA        parameter-free: identity, or stride-2 subsample + zero channels where the shape changes
        optB        identity, or 1x1 projection where the shape changes
        optC        1x1 projection at every unit (also V2 Table 1 "1x1 conv shortcut")
    V2 Table 1, what multiplies the shortcut and the residual branch F (a family declared
    `modulated`: v1)
        scale-s<l>[-f<m>]   constant scaling: shortcut x l, F x m (m defaults to 1)
        exgate-b<b>         exclusive gating: shortcut x (1-g), F x g, g = sigmoid(1x1 conv(x) + b), b initialised to <b>
        scgate-b<b>         shortcut-only gating: shortcut x (1-g), F x 1
        dropsc[-p<p>]       dropout with probability p (default 0.5) on the shortcut
    V2 Table 2, where BN and ReLU sit in the unit
        bnafter     (b) BN after addition                     family v1
        relubefore  (c) ReLU before addition                  family v1
        reluonly    (d) ReLU-only pre-activation              family v2
    V2 Table 3
        1layer      basic units of a single 3x3 layer, depth 3n+2 (ResNet-110(1layer)); CIFAR only
    Where a bottleneck unit downsamples (families v1 and v2, bottleneck only)
        stride3x3   stride 2 in the 3x3 conv instead of the first 1x1: torchvision's and
                    fb.resnet.torch's placement ("ResNet v1.5"). The default, stride in the first
                    1x1, is the papers' own: the authors' released Caffe models (res3a_branch2a has
                    stride 2) and their resnet-1k-layers code; V2's ImageNet nets were trained in the
                    same Caffe code. It is also what gives V1 Table 1's FLOPs for 50/101/152.

Aliases, the names people already type (the papers' networks only; resolved by
`parse_model_name`, which returns the canonical spec, so records carry the canonical name):

    resnet20 resnet32 resnet44 resnet56 resnet110 resnet1202   -> v1-basic-N    (V1 Table 6)
    plain20 plain32 plain44 plain56 plain110                   -> plain-basic-N (V1 Fig. 6)
    preact_resnet110                                           -> v2-basic-110
    preact_resnet164 preact_resnet1001                         -> v2-bottleneck-164 / -1001
    resnet18 resnet34 / resnet50 resnet101 resnet152 resnet200 -> imagenet-v1-basic-N / -bottleneck-N
    plain18 plain34                                            -> imagenet-plain-basic-N (V1 Table 2)
    preact_resnet18 ... preact_resnet200                       -> imagenet-v2-basic-N / -bottleneck-N

`resnet18` ... `resnet200` are the papers' nets (option A for 18/34, V1 Table 2; option B and the
stride in the 1x1 for 50+), not torchvision's models of the same name: torchvision's `resnet18`/
`resnet34` are `imagenet-v1-basic-N-optB`, its `resnet50`/`101`/`152` `imagenet-v1-bottleneck-N-stride3x3`
(`TORCHVISION_EQUIVALENTS`).

The families and what each one allows are declared in `resnet_bench.models.families`; this module
reads them. A spec also carries what the builders and tables need, so no one re-reads the string: the unit
(`unit`, `unit_shape`), the shortcut option (`shortcut`), the V2 Table 1 modulation
(`modulation`), labels in the papers' words (`label`, `short_label`) and the papers' order
(`sort_key`; `FAMILY_ORDER` / `BLOCK_ORDER` for table columns).

Numbers are written with Python's `g` format, so `exgate-b-6` means b = -6 and `scale-s0.5-f0.5`
means 0.5 / 0.5. A name parses back to the same spec; a non-canonical spelling (`optA` spelled out,
`b-6.0`) parses to the canonical spec.
"""

from __future__ import annotations

import operator
import re
from dataclasses import dataclass

from .families import BLOCKS, FAMILIES, FAMILY_ORDER, Family, Unit

STEMS = ("cifar", "imagenet")  # the CIFAR nets (default) and V1 Table 1's ImageNet nets
IMAGENET_PREFIX = "imagenet-"
# V1 Table 1 (and V2 Sec. 5 for 200): units in conv2_x ... conv5_x, per block and depth.
IMAGENET_STAGES = {
    "basic": {18: (2, 2, 2, 2), 34: (3, 4, 6, 3)},
    "bottleneck": {50: (3, 4, 6, 3), 101: (3, 4, 23, 3), 152: (3, 8, 36, 3), 200: (3, 24, 36, 3)},
}
STEM_ORDER = {s: i for i, s in enumerate(STEMS)}

# Layers per unit decide the depth rule: depth = 3 * (layers per unit) * n + 2 (stem conv and FC).
LAYERS_PER_UNIT = {"basic": 2, "bottleneck": 3, "1layer": 1}

_NUM = r"-?\d+(?:\.\d+)?"
# The parametrised V2 Table 1 variants (any family declared `modulated`): kind -> full-match
# pattern.
_PATTERNS = {
    "scale": re.compile(rf"scale-s(?P<s>{_NUM})(?:-f(?P<f>{_NUM}))?"),
    "exgate": re.compile(rf"exgate-b(?P<b>{_NUM})"),
    "scgate": re.compile(rf"scgate-b(?P<b>{_NUM})"),
    "dropsc": re.compile(rf"dropsc(?:-p(?P<p>{_NUM}))?"),
}
SHORTCUT_OPTIONS = ("optA", "optB", "optC")  # V1 Sec. 3.3 options A/B/C
_TABLE1 = ("scale-s<l>[-f<m>]", "exgate-b<b>", "scgate-b<b>", "dropsc[-p<p>]")
# V2 Table 1's shortcuts other than the identity, in its words, by kind: the modulations
# (`Modulation.kind`) and V1's option C, its "1x1 conv shortcut" (`ModelSpec.table1_shortcut`)
TABLE1_SHORTCUTS = {"scale": "constant scaling", "exgate": "exclusive gating",
                    "scgate": "shortcut-only gating", "dropsc": "dropout shortcut",
                    "optC": "1x1 conv shortcut"}

# The papers' reading order of blocks, declared in families.BLOCKS (families: `FAMILY_ORDER`,
# their declaration order).
BLOCK_ORDER = {b: i for i, b in enumerate(BLOCKS)}
NO_VARIANT = "none"  # the one variant of a family without a shortcut

ALIASES = {
    **{f"resnet{d}": f"v1-basic-{d}" for d in (20, 32, 44, 56, 110, 1202)},
    **{f"plain{d}": f"plain-basic-{d}" for d in (20, 32, 44, 56, 110)},
    "preact_resnet110": "v2-basic-110",
    "preact_resnet164": "v2-bottleneck-164",
    "preact_resnet1001": "v2-bottleneck-1001",
    # V1 Table 1 / V2 Table 5: the ImageNet nets (no CIFAR alias has these depths)
    **{f"resnet{d}": f"imagenet-v1-{'basic' if d < 50 else 'bottleneck'}-{d}" for d in (18, 34, 50, 101, 152, 200)},
    "plain18": "imagenet-plain-basic-18",
    "plain34": "imagenet-plain-basic-34",
    **{f"preact_resnet{d}": f"imagenet-v2-{'basic' if d < 50 else 'bottleneck'}-{d}"
       for d in (18, 34, 50, 101, 152, 200)},
}

# torchvision's models (V1 Table 1 layouts with projections where the shape changes, and for the
# bottleneck nets the stride in the 3x3) and the names of the same networks here.
TORCHVISION_EQUIVALENTS = {
    "resnet18": "imagenet-v1-basic-18-optB",
    "resnet34": "imagenet-v1-basic-34-optB",
    "resnet50": "imagenet-v1-bottleneck-50-stride3x3",
    "resnet101": "imagenet-v1-bottleneck-101-stride3x3",
    "resnet152": "imagenet-v1-bottleneck-152-stride3x3",
}


class ModelNameError(ValueError):
    """An unknown family, block or variant, or a depth the block cannot have."""


def _family(name: str) -> Family:
    try:
        return FAMILIES[name]
    except KeyError:
        raise ModelNameError(f"unknown family {name!r}; valid: {', '.join(FAMILIES)}") from None


def default_variant(family: str, block: str) -> str:
    if not _family(family).shortcut:
        return NO_VARIANT
    # The papers: option A for the basic CIFAR nets (V1 Sec. 4.2), projections where the
    # dimensions change for the bottleneck nets (V2 Sec. 4 / authors' resnet-1k-layers code).
    return "optA" if block == "basic" else "optB"


def _valid_variants(family: str, block: str, stem: str = "cifar") -> list[str]:
    fam = _family(family)
    if not fam.shortcut:
        return [NO_VARIANT]
    names = list(SHORTCUT_OPTIONS)
    if fam.modulated:
        names += list(_TABLE1)
    names += list(fam.unit_variants)
    if block == "basic" and stem == "cifar":
        names.append("1layer")
    if block == "bottleneck":
        names.append("stride3x3")
    default = default_variant(family, block)
    return [f"{v} (default)" if v == default else v for v in names]


def _fmt(x: float) -> str:
    return format(float(x) + 0.0, "g")  # + 0.0 turns -0 into 0


def canonical_variant(family: str, block: str, variant: str | None, stem: str = "cifar") -> str:
    """The canonical spelling of `variant` for this family/block (and stem), or ModelNameError."""
    if variant is None or variant == "" or variant != variant:  # missing (None, '', NaN from a table)
        return default_variant(family, block)
    variant = str(variant)
    valid = _valid_variants(family, block, stem)
    plain_names = {v.split(" ")[0] for v in valid}
    if variant in plain_names:
        return variant
    if FAMILIES[family].modulated:
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
    where = f"{family}-{block}" if stem == "cifar" else f"{IMAGENET_PREFIX}{family}-{block}"
    raise ModelNameError(
        f"unknown variant {variant!r} for {where}; valid: {', '.join(valid)}"
    )


def base_name(family: str, block: str, depth: int, stem: str = "cifar") -> str:
    """The name of the family/block/depth's default variant (no variant suffix)."""
    return ("" if stem == "cifar" else IMAGENET_PREFIX) + f"{family}-{block}-{int(depth)}"


@dataclass(frozen=True)
class Modulation:
    """What multiplies the two summands (V2 Table 1): `kind` is none, scale, exgate, scgate or
    dropsc; `shortcut`/`residual` the constant factors (scale), `gate_bias` the initial b_g
    (exgate, scgate), `dropout` the probability on the shortcut (dropsc)."""

    kind: str = "none"
    shortcut: float = 1.0
    residual: float = 1.0
    gate_bias: float | None = None
    dropout: float | None = None


def _modulation(variant: str) -> Modulation:
    """The modulation of a canonical variant (`none` for every non-Table-1 variant)."""
    for kind, pattern in _PATTERNS.items():
        m = pattern.fullmatch(variant)
        if m is None:
            continue
        if kind == "scale":
            return Modulation(kind, shortcut=float(m["s"]), residual=float(m["f"] or 1))
        if kind == "dropsc":
            return Modulation(kind, dropout=float(m["p"] or 0.5))
        return Modulation(kind, gate_bias=float(m["b"]))
    return Modulation()


def layers_per_unit(block: str, variant: str) -> int:
    return LAYERS_PER_UNIT["1layer" if variant == "1layer" else block]


def valid_depths(block: str, variant: str, count: int = 8) -> list[int]:
    k = 3 * layers_per_unit(block, variant)
    return [k * n + 2 for n in range(1, count + 1)]


# The deepest CIFAR net the suite will build: a training step keeps every conv, BN and ReLU output
# for backward (~3 x 4 bytes per conv output element at fp32). Above 1 TiB of activations at the
# papers' CIFAR batch of 128 (more than 8 GPUs of 141 GB hold) a depth is a typo, refused before
# anything is built: ResNet-1202 needs ~18 GB, the bound is ~75k layers for basic units.
MAX_ACTIVATION_BYTES = 2**40
REFERENCE_BATCH = 128
_STAGE_ELEMENTS = sum(16384 >> s for s in range(3))  # width x side^2 of stages 16x32^2 ... 64x8^2


def activation_bytes(block: str, variant: str, depth: int) -> int:
    """Estimated bytes a CIFAR net keeps for backward at batch REFERENCE_BATCH (fp32), from its
    stage layout alone (widths 16/32/64, bottlenecks x1, x1, x4)."""
    lpu = layers_per_unit(block, variant)
    units = (depth - 2) // (3 * lpu)
    per_unit = 6 if block == "bottleneck" else lpu  # conv outputs per unit, in stage widths
    elements = 16384 + units * per_unit * _STAGE_ELEMENTS
    return elements * 3 * 4 * REFERENCE_BATCH


def max_depth(block: str, variant: str) -> int:
    lpu = layers_per_unit(block, variant)
    per_unit = 6 if block == "bottleneck" else lpu
    units = (MAX_ACTIVATION_BYTES // (3 * 4 * REFERENCE_BATCH) - 16384) // (per_unit * _STAGE_ELEMENTS)
    return 3 * lpu * units + 2


@dataclass(frozen=True)
class ModelSpec:
    family: str
    block: str
    depth: int
    variant: str = ""
    stem: str = "cifar"  # "imagenet": V1 Table 1's 7x7/2 conv + 3x3/2 max-pool, 4 stages of 64..512

    def __post_init__(self) -> None:
        if self.stem not in STEMS:
            raise ModelNameError(f"unknown stem {self.stem!r}; valid: {', '.join(STEMS)}")
        blocks = _family(self.family).blocks
        if self.block not in blocks:
            raise ModelNameError(
                f"unknown block {self.block!r} for family {self.family}; valid: {', '.join(blocks)}"
            )
        object.__setattr__(self, "variant", canonical_variant(self.family, self.block, self.variant, self.stem))
        # Accept any whole number (numpy.int64, or 56.0 from a pandas row), nothing fractional.
        depth = self.depth
        if isinstance(depth, float) and depth.is_integer():
            depth = int(depth)
        try:
            object.__setattr__(self, "depth", operator.index(depth))
        except TypeError:
            raise ModelNameError(f"depth {self.depth!r} is not a whole number") from None
        if self.stem == "imagenet":
            if self.depth not in IMAGENET_STAGES[self.block]:
                shown = ", ".join(map(str, IMAGENET_STAGES[self.block]))
                raise ModelNameError(
                    f"depth {self.depth} is not a V1 Table 1 depth for ImageNet block {self.block}; valid: {shown}"
                )
            return
        k = 3 * layers_per_unit(self.block, self.variant)
        if self.depth < k + 2 or (self.depth - 2) % k:
            shown = ", ".join(map(str, valid_depths(self.block, self.variant)))
            what = f"{self.block}" + (f" ({self.variant})" if self.variant == "1layer" else "")
            raise ModelNameError(
                f"depth {self.depth} is not {k}n+2 (n>=1) for block {what}; valid: {shown}, ..."
            )
        need = activation_bytes(self.block, self.variant, self.depth)
        if need > MAX_ACTIVATION_BYTES:
            raise ModelNameError(
                f"depth {self.depth}: a training step would keep ~{need / 1e12:,.0f} TB of "
                f"activations at batch {REFERENCE_BATCH} (fp32); allowed: at most "
                f"{MAX_ACTIVATION_BYTES / 1e12:.1f} TB, depth <= "
                f"{max_depth(self.block, self.variant)} for block {self.block}"
            )

    @property
    def is_default(self) -> bool:
        """The family/block's default unit and shortcut (its name has no variant suffix)."""
        return self.variant == default_variant(self.family, self.block)

    @property
    def base_name(self) -> str:
        return base_name(self.family, self.block, self.depth, self.stem)

    @property
    def image_size(self) -> int:
        """The papers' input side: 32 (CIFAR) or 224 (ImageNet crops); costs are per such image."""
        return 32 if self.stem == "cifar" else 224

    def area_scale(self, image_size: tuple[int, int] | int | None) -> float:
        """Images of `image_size` over the side costs are counted at: convolution MACs and
        activations scale with the area (1 when the size is unknown)."""
        if image_size is None:
            return 1.0
        h, w = (image_size, image_size) if isinstance(image_size, int) else image_size
        return h * w / self.image_size**2

    @property
    def default_num_classes(self) -> int:
        return 10 if self.stem == "cifar" else 1000

    @property
    def stride_in(self) -> str | None:
        """Which conv of a downsampling bottleneck unit has stride 2: `1x1` (the first; the papers'
        Caffe models and resnet-1k-layers) or `3x3` (variant stride3x3); None for other units."""
        if self.unit_shape != "bottleneck":
            return None
        return "3x3" if self.variant == "stride3x3" else "1x1"

    @property
    def name(self) -> str:
        return self.base_name if self.is_default else f"{self.base_name}-{self.variant}"

    @property
    def family_facts(self) -> Family:
        return FAMILIES[self.family]

    @property
    def unit(self) -> str:
        """The residual unit this network is built of, by its figure's name (`unit_decl`)."""
        return self.unit_decl.name

    @property
    def unit_decl(self) -> Unit:
        """The unit's declaration: its name and its torch class."""
        return self.family_facts.unit_of(self.variant)

    @property
    def unit_shape(self) -> str:
        """The unit's weight layers: basic (two 3x3), bottleneck (1x1-3x3-1x1) or 1layer (one 3x3)."""
        return "1layer" if self.variant == "1layer" else self.block

    @property
    def shortcut(self) -> str | None:
        """The shortcut option at every unit (None: a plain net has none)."""
        if not self.family_facts.shortcut:
            return None
        return self.variant if self.variant in SHORTCUT_OPTIONS else default_variant(self.family, self.block)

    @property
    def modulation(self) -> Modulation:
        return _modulation(self.variant)

    @property
    def table1_shortcut(self) -> str | None:
        """Which of V2 Table 1's shortcuts other than the identity the net has: its modulation's
        kind or optC (`TABLE1_SHORTCUTS`); None for the identity shortcut or none at all."""
        for kind in (self.modulation.kind, self.shortcut):
            if kind in TABLE1_SHORTCUTS:
                return kind
        return None

    @property
    def label(self) -> str:
        """Figure label in the papers' words: plain-20, ResNet-56, pre-act ResNet-164 (+ variant)."""
        label = f"{self.family_facts.label}-{self.depth}"
        if self.block == "bottleneck" and self.stem == "cifar" and self.depth not in (164, 1001):
            label += " (bottleneck)"
        return label if self.is_default else f"{label} {self.variant}"

    @property
    def short_label(self) -> str:
        """plain-20, ResNet-56: the papers' names for a net whose unit the figure says elsewhere."""
        return f"{self.family_facts.short_label}-{self.depth}"

    @property
    def sort_key(self) -> tuple:
        """The papers' order: CIFAR nets before ImageNet nets, then family, block, depth, variant."""
        return STEM_ORDER[self.stem], FAMILY_ORDER[self.family], BLOCK_ORDER[self.block], self.depth, self.variant

    @property
    def units_per_stage(self) -> int:
        """n, the units in each of the three stages of a CIFAR net (ImageNet nets: `stage_units`)."""
        if self.stem != "cifar":
            raise ValueError(f"{self.name} has {self.stage_units} units per stage (stage_units), not one n")
        return (self.depth - 2) // (3 * layers_per_unit(self.block, self.variant))

    @property
    def stage_units(self) -> tuple[int, ...]:
        """Units per stage: (n, n, n) for CIFAR, V1 Table 1's four counts for ImageNet."""
        if self.stem == "imagenet":
            return IMAGENET_STAGES[self.block][self.depth]
        return (self.units_per_stage,) * 3

    def __str__(self) -> str:
        return self.name


def model_name_pattern() -> str:
    """A regular expression that every model name of a registered family matches (the workflow's
    wildcard constraint; the full check is `parse_model_name`)."""
    return rf"({IMAGENET_PREFIX})?({'|'.join(FAMILIES)})-[A-Za-z0-9.-]+"


def parse_model_name(name: str | ModelSpec) -> ModelSpec:
    """`v1-basic-110-exgate-b-6` -> ModelSpec('v1', 'basic', 110, 'exgate-b-6'); any valid depth,
    or an alias (`resnet56` -> v1-basic-56); `imagenet-v1-bottleneck-50` -> ModelSpec('v1',
    'bottleneck', 50, 'optB', 'imagenet'). A spec is returned as it is."""
    if isinstance(name, ModelSpec):
        return name
    text = str(name).strip()
    text = ALIASES.get(text.lower(), text)
    stem = "cifar"
    if text.startswith(IMAGENET_PREFIX):
        stem, text = "imagenet", text[len(IMAGENET_PREFIX):]
    parts = text.split("-", 3)
    if len(parts) < 3:
        raise ModelNameError(
            f"model name {name!r} is not {{family}}-{{block}}-{{depth}}[-{{variant}}]; "
            f"e.g. plain-basic-20, v1-basic-56-optB, v2-bottleneck-164, imagenet-v1-bottleneck-50; "
            f"or an alias: {', '.join(ALIASES)}"
        )
    family, block, depth = parts[:3]
    variant = parts[3] if len(parts) == 4 else ""
    if family not in FAMILIES:
        raise ModelNameError(f"unknown family {family!r} in {name!r}; valid: {', '.join(FAMILIES)}")
    if not re.fullmatch(r"\d+", depth):
        raise ModelNameError(f"depth {depth!r} in {name!r} is not a whole number")
    return ModelSpec(family, block, int(depth), variant, stem)
