"""The network families, each declared once as a `Family` with every fact the suite needs of it.

A family is the first part of a model name (`{family}-{block}-{depth}[-{variant}]`). Its
declaration says which blocks it has, which residual unit it draws (and which variants change
that unit), whether it has a shortcut at all and whether V2 Table 1's modulated shortcuts apply,
how the papers name its nets in figures, how the figures draw it, and which role it plays in the
papers' claims. Everything else reads these declarations: the name grammar
(`resnet_bench.models.spec`), the builder (`networks.unit_class` imports the unit class a family
declares for a variant), the config schema's check, the workflow's wildcard constraint, the plot
styles, the figures' and the claims' choice of nets.

A family declared outside the package is one `register_family(Family(...))` call away from
being parsed, built, validated, tabulated and drawn (`tests/test_vocabulary.py` does it).

Torch-free: a unit class is named as `module:Class` and imported only when a network is built.
"""

from __future__ import annotations

import enum
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from importlib import import_module


# The blocks a family may have, in the papers' reading order (table columns, sort keys)
BLOCKS = ("basic", "bottleneck")
# The variants the name grammar (resnet_bench.models.spec) gives families alike, by name or by
# kind: V1's shortcut options, the unit shapes, a plain net's only variant and V2 Table 1's
# modulations. A family's own unit variant may not take one of these names: it would shadow it.
SHARED_VARIANTS = ("optA", "optB", "optC", "1layer", "stride3x3", "none",
                   "scale", "exgate", "scgate", "dropsc")


class Role(enum.Enum):
    """What a family stands for in the papers' claims and figures."""

    PLAIN = "the plain baseline: the original unit's layers without the shortcut (V1 Fig. 6 left)"
    ORIGINAL = "the original residual unit, post-activation (V1 Fig. 2, V2 Fig. 4a)"
    PREACT = "the full pre-activation unit (V2 Fig. 4e)"


@dataclass(frozen=True)
class Unit:
    """A residual unit as a figure of the papers draws it: its name, its torch class as
    `module:Class` (resnet_bench.models.units holds the papers' own), and the papers' words for
    it in a figure's legend (`label`, default: the name)."""

    name: str
    cls: str
    label: str = ""

    def __post_init__(self) -> None:
        if not self.label:
            object.__setattr__(self, "label", self.name)

    def load(self) -> type:
        module, _, name = self.cls.partition(":")
        return getattr(import_module(module), name)


@dataclass(frozen=True)
class PlotStyle:
    """How the figures draw a family's lines: colour, marker (basic and bottleneck nets)."""

    color: str = "#666666"
    marker: str = "P"
    bottleneck_marker: str = "*"


@dataclass(frozen=True, eq=False)
class Family:
    """A network family. Its variants: `none` alone without a shortcut; else V1's shortcut
    options (optA/optB/optC), V2 Table 1's modulations if `modulated`, the `unit_variants`, and
    the unit shapes every residual family has (1layer, stride3x3): resnet_bench.models.spec."""

    name: str
    label: str                 # in a figure label: "ResNet" -> ResNet-56, "pre-act ResNet" -> ...
    legend: str                # a family's line in the figures: "ResNet (original)"
    unit: Unit                 # the unit of the family's default variant
    blocks: tuple[str, ...] = BLOCKS
    shortcut: bool = True      # False: a plain net, no shortcut option and no variants
    modulated: bool = False    # V2 Table 1's scaled / gated / dropout shortcuts apply
    unit_variants: Mapping[str, Unit] = field(default_factory=dict)  # variant -> the unit it draws
    role: Role | None = None
    style: PlotStyle = PlotStyle()

    @property
    def short_label(self) -> str:
        """The papers' name where the figure says the unit elsewhere: plain-20, ResNet-56."""
        return self.label if not self.shortcut else "ResNet"

    def unit_of(self, variant: str) -> Unit:
        return self.unit_variants.get(variant, self.unit)

    def units(self) -> list[Unit]:
        """Every unit the family draws (models.cost keys its cache on their classes' sources)."""
        return [self.unit, *self.unit_variants.values()]


FAMILIES: dict[str, Family] = {}        # name -> family, in the papers' reading order
FAMILY_ORDER: dict[str, int] = {}       # name -> its place in that order (table rows, legends)


def register_family(family: Family) -> Family:
    if family.name in FAMILIES:
        raise ValueError(f"family {family.name!r} is already registered")
    if not re.fullmatch(r"[A-Za-z0-9_]+", family.name) or family.name == "imagenet":
        raise ValueError(f"family name {family.name!r}: letters, digits and '_' (a name part), "
                         "not 'imagenet' (the ImageNet nets' name prefix)")
    if unknown := [b for b in family.blocks if b not in BLOCKS]:
        raise ValueError(f"family {family.name!r}: unknown block(s) {', '.join(unknown)}; "
                         f"valid: {', '.join(BLOCKS)}")
    if shadowed := [v for v in family.unit_variants if v in SHARED_VARIANTS]:
        raise ValueError(f"family {family.name!r}: unit variant(s) {', '.join(shadowed)} would "
                         f"shadow the shared variants ({', '.join(SHARED_VARIANTS)})")
    if any(f.role is not None and f.role is family.role for f in FAMILIES.values()):
        raise ValueError(f"a family already plays {family.role}")
    FAMILIES[family.name] = family
    FAMILY_ORDER[family.name] = len(FAMILY_ORDER)
    return family


def unregister_family(name: str) -> None:
    del FAMILIES[name]
    FAMILY_ORDER.clear()
    FAMILY_ORDER.update({n: i for i, n in enumerate(FAMILIES)})


def family_for(role: Role) -> Family:
    """The family that plays `role` in the papers' claims and figures."""
    for f in FAMILIES.values():
        if f.role is role:
            return f
    raise LookupError(f"no registered family plays {role}")


def style_of(name: str) -> PlotStyle:
    """A family's plot style; the default grey for a name no family has (a record of another
    version)."""
    f = FAMILIES.get(name)
    return f.style if f is not None else PlotStyle()


def legend_of(name: str) -> str:
    f = FAMILIES.get(name)
    return f.legend if f is not None else name


# ---------------------------------------------------------------------------------------------
# the papers' families

_UNITS = "resnet_bench.models.units"

register_family(Family(
    "plain", label="plain", legend="plain", blocks=("basic",), shortcut=False,
    unit=Unit("plain", f"{_UNITS}:PlainUnit"), role=Role.PLAIN,
    # Okabe-Ito vermillion, a navy and Okabe-Ito sky blue below: L* 54, 21 and 70, apart in
    # greyscale (red/blue/green of tab10 are all near L* 45 and merge)
    style=PlotStyle("#D55E00", "o", "o"),
))
register_family(Family(
    "v1", label="ResNet", legend="ResNet (original)", modulated=True,
    unit=Unit("original", f"{_UNITS}:OriginalUnit"),
    unit_variants={"bnafter": Unit("bn-after-addition", f"{_UNITS}:BNAfterAdditionUnit",
                                   "BN after addition"),
                   "relubefore": Unit("relu-before-addition", f"{_UNITS}:ReLUBeforeAdditionUnit",
                                      "ReLU before addition")},
    role=Role.ORIGINAL, style=PlotStyle("#08306B", "s", "D"),
))
register_family(Family(
    "v2", label="pre-act ResNet", legend="ResNet (pre-act)",
    unit=Unit("full-preact", f"{_UNITS}:PreActUnit", "full pre-activation"),
    unit_variants={"reluonly": Unit("relu-only-preact", f"{_UNITS}:ReLUOnlyPreActUnit",
                                    "ReLU-only pre-activation")},
    role=Role.PREACT, style=PlotStyle("#56B4E9", "^", "v"),
))
