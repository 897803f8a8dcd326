"""The embedded `synthetic` dataset: textured shapes in clutter, CIFAR-shaped, made from a seed.

Why it exists: tests and the CPU pipeline need a dataset that needs no download, is generated in a
few seconds, and on which depth actually matters, so that the papers' comparisons (plain vs
residual, shallow vs deep) show something on a laptop.

What an image is (32x32 RGB uint8, 10 classes):

* one *target object* of one of five shapes (disk, square, triangle, ring, cross) at a random
  position, size (radius 8-11 px) and any orientation, filled with one of two textures
  (stripes or checks) of random period (3-5.5 px), orientation and phase, in two random colours;
* the class is the *conjunction* shape x texture (``disk-stripes``, ``disk-checks``, ...): neither
  shape nor texture alone decides it, and the texture must be read *inside* the target's outline;
* clutter that carries no class information: a background of random colour with low-contrast
  stripes *and* checks, a colour gradient, and a smaller distractor shape (radius 3-4.5 px) of
  random shape and texture (the target is always the larger object, so "which object counts" is
  itself a relation the network has to learn), plus Gaussian pixel noise.

Colours, positions, phases and orientations are random, so pixel means carry no class signal: a
linear classifier or nearest-class-mean on raw pixels stays at chance (~90 % error), a two-layer
conv net learns slowly, a small ResNet gets well below chance within a few hundred iterations
(measured numbers and the knobs' tuning are in docs/datasets.md).

Determinism: images are rendered in chunks of 250, each from ``SeedSequence([seed, split, chunk])``,
so image i of a split depends only on (seed, split, i): a smaller dataset is a prefix of a larger
one and the test set does not depend on the training size. Labels are balanced in every run of
10 consecutive images (a random permutation of the 10 classes), so class counts differ by <= 1.
"""

from __future__ import annotations

import numpy as np
import torch

from resnet_bench.infra.checks import MAX_IMAGES, MAX_SEED, Choice, Int

from .dataset import ImageDataset
from .errors import DatasetError
from .kind import DatasetKind, Option, register

SHAPES = ("disk", "square", "triangle", "ring", "cross")
TEXTURES = ("stripes", "checks")
CLASSES = [f"{s}-{t}" for s in SHAPES for t in TEXTURES]
SIZE = 32
CHUNK = 250  # images per independently seeded chunk (a multiple of the 10 classes)
DEFAULT_TRAIN, DEFAULT_TEST = 10_000, 2_000
_SPLIT_IDS = {"train": 0, "test": 1}
# difficulty knobs (tuned so a small ResNet learns it in a few hundred iterations; see docs)
_STANDARD = {"bg_amp": 0.05, "distractors": 1, "distractor_radius": (3.0, 4.5),
         "target_radius": (8.0, 11.0), "swing": (0.25, 0.35), "noise": 0.03,
         "period": (3.0, 5.5), "rotation": np.pi}
# `easy` keeps the task (shape x texture conjunction, random colours, positions and phases) but
# drops the clutter, so that a small net learns it within the ~100-iteration budgets of CPU smoke
# runs and tests; `standard` is the harder default where depth keeps paying off.
DIFFICULTIES = {
    "standard": _STANDARD,
    "easy": {**_STANDARD, "bg_amp": 0.0, "distractors": 0, "target_radius": (11.0, 13.0),
             "noise": 0.02, "period": (5.0, 7.0), "rotation": 0.0, "swing": (0.4, 0.45)},
}
KNOBS = _STANDARD


def _u(rng: np.random.Generator, lo: float, hi: float, size) -> np.ndarray:
    return rng.uniform(lo, hi, size).astype(np.float32)


def _n(rng: np.random.Generator, mean: float, std: float, size) -> np.ndarray:
    return rng.normal(mean, std, size).astype(np.float32)


def _disk(u, v):
    return np.sqrt(u * u + v * v) - 1.0


def _square(u, v):
    return np.maximum(np.abs(u), np.abs(v)) - 0.85


def _triangle(u, v):  # equilateral: intersection of three half-planes
    return np.maximum(np.maximum(-v, 0.866 * u + 0.5 * v), -0.866 * u + 0.5 * v) - 0.55


def _ring(u, v):
    return np.abs(np.sqrt(u * u + v * v) - 0.72) - 0.28


def _cross(u, v):
    au, av = np.abs(u), np.abs(v)
    return np.minimum(np.maximum(au - 0.32, av - 1.0), np.maximum(au - 1.0, av - 0.32))


_DISTANCES = (_disk, _square, _triangle, _ring, _cross)  # same order as SHAPES


def _shape_distance(shape: np.ndarray, u: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Approximate signed distance (in object radii) to the outline of each image's shape."""
    out = np.empty_like(u)
    for k, fn in enumerate(_DISTANCES):
        sel = shape == k
        if sel.any():
            out[sel] = fn(u[sel], v[sel])
    return out


def _texture(kind: np.ndarray, x: np.ndarray, y: np.ndarray, rng: np.random.Generator,
             n: int, knobs: dict = KNOBS) -> np.ndarray:
    """Stripes (kind 0) or checks (kind 1) in [-1, 1], random period/orientation/phase per image."""
    period = _u(rng, *knobs["period"], n)[:, None, None]
    phi = _u(rng, 0, np.pi, n)[:, None, None]
    ph1, ph2 = (_u(rng, 0, 2 * np.pi, n)[:, None, None] for _ in range(2))
    a = (x * np.cos(phi) + y * np.sin(phi)) * (2 * np.pi / period)
    b = (-x * np.sin(phi) + y * np.cos(phi)) * (2 * np.pi / period)
    stripes = np.sin(a + ph1)
    checks = np.sin(a + ph1) * np.sin(b + ph2) * 1.6
    t = np.where(kind[:, None, None] == 0, stripes, checks)
    return np.tanh(2.5 * t)  # crisp but anti-aliased bars


def _object(rng: np.random.Generator, n: int, shape: np.ndarray, texture: np.ndarray,
            radius: np.ndarray, margin: float, gx: np.ndarray, gy: np.ndarray, knobs: dict = KNOBS):
    """Coverage mask [n,H,W] and colour [n,3,H,W] of one textured object per image."""
    cx = _u(rng, margin, SIZE - margin, n)[:, None, None]
    cy = _u(rng, margin, SIZE - margin, n)[:, None, None]
    theta = _u(rng, -knobs["rotation"], knobs["rotation"], n)[:, None, None]
    r = radius[:, None, None]
    dx, dy = gx - cx, gy - cy
    u = (dx * np.cos(theta) + dy * np.sin(theta)) / r
    v = (-dx * np.sin(theta) + dy * np.cos(theta)) / r
    d = _shape_distance(shape, u, v)
    mask = np.clip(0.5 - d * r, 0.0, 1.0)  # ~1 px anti-aliased edge
    tex = _texture(texture, dx, dy, rng, n, knobs)
    base = _u(rng, 0.2, 0.8, (n, 3))
    swing = _n(rng, 0, 1, (n, 3))
    swing *= _u(rng, *knobs["swing"], (n, 1)) / np.linalg.norm(swing, axis=1, keepdims=True)
    colour = base[:, :, None, None] + swing[:, :, None, None] * tex[:, None]
    return mask, colour, base


def _render_chunk(seed: int, split: int, chunk: int, n: int, knobs: dict = KNOBS
                  ) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.Generator(np.random.PCG64(np.random.SeedSequence([seed, split, chunk])))
    blocks = -(-CHUNK // len(CLASSES))
    labels = np.concatenate([rng.permutation(len(CLASSES)) for _ in range(blocks)])[:CHUNK]
    m = CHUNK  # always draw a full chunk so image i does not depend on the requested size
    # float32 throughout: half the memory traffic of float64, and rounding to uint8 hides the rest
    g = np.arange(SIZE, dtype=np.float32) + 0.5
    gy, gx = np.meshgrid(g, g, indexing="ij")
    gx, gy = gx[None], gy[None]

    # Background: random colour, gradient, low-contrast stripes and checks (both textures, so
    # texture statistics of the whole image do not reveal the class).
    bg = _u(rng, 0, 1, (m, 3))[:, :, None, None]
    grad_dir = _u(rng, 0, 2 * np.pi, m)[:, None, None]
    grad = ((gx - 16) * np.cos(grad_dir) + (gy - 16) * np.sin(grad_dir)) / 32
    img = bg + _u(rng, 0, 0.3, (m, 3))[:, :, None, None] * grad[:, None]
    for kind in (0, 1):
        tex = _texture(np.full(m, kind), gx, gy, rng, m, knobs)
        amp = _u(rng, 0.0, knobs["bg_amp"], (m, 3))[:, :, None, None]
        img = img + amp * tex[:, None]

    # Two small distractors of random shape/texture, drawn first so the target occludes them.
    for _ in range(knobs["distractors"]):
        dshape = rng.integers(0, len(SHAPES), m)
        dtex = rng.integers(0, len(TEXTURES), m)
        radius = _u(rng, *knobs["distractor_radius"], m)
        mask, colour, _ = _object(rng, m, dshape, dtex, radius, 3.0, gx, gy, knobs)
        img = img * (1 - mask[:, None]) + colour * mask[:, None]

    # The target: keep its mean colour away from the local background so its outline is visible.
    shape, texture = labels // len(TEXTURES), labels % len(TEXTURES)
    radius = _u(rng, *knobs["target_radius"], m)
    mask, colour, base = _object(rng, m, shape, texture, radius, 9.0, gx, gy, knobs)
    near = np.abs(base - bg[:, :, 0, 0]).max(axis=1) < 0.25
    colour[near] = 1.0 - colour[near]  # invert colours that would blend into the background
    img = img * (1 - mask[:, None]) + colour * mask[:, None]

    img = img + _n(rng, 0, knobs["noise"], img.shape)
    img = np.clip(np.rint(img * 255), 0, 255).astype(np.uint8)
    return img[:n], labels[:n].astype(np.int64)


def _render(seed: int, split: str, n: int, knobs: dict = KNOBS) -> tuple[torch.Tensor, torch.Tensor]:
    xs, ys = [], []
    for chunk in range(-(-n // CHUNK)):
        x, y = _render_chunk(seed, _SPLIT_IDS[split], chunk, min(CHUNK, n - chunk * CHUNK), knobs)
        xs.append(x)
        ys.append(y)
    if not xs:
        return torch.empty(0, 3, SIZE, SIZE, dtype=torch.uint8), torch.empty(0, dtype=torch.int64)
    return torch.from_numpy(np.concatenate(xs)), torch.from_numpy(np.concatenate(ys))


def load_synthetic(root: object = None, *, seed: int = 0, train_size: int = DEFAULT_TRAIN,
                   test_size: int = DEFAULT_TEST, difficulty: str = "standard") -> ImageDataset:
    """Generate the synthetic dataset (no files involved; `root` is ignored)."""
    if difficulty not in DIFFICULTIES:
        raise DatasetError("synthetic", f"unknown difficulty {difficulty!r}; valid: "
                                        f"{', '.join(DIFFICULTIES)}")
    knobs = DIFFICULTIES[difficulty]
    for key, val in (("train_size", train_size), ("test_size", test_size)):
        if int(val) < 1:
            raise DatasetError("synthetic", f"{key} must be >= 1, got {val}")
    train_x, train_y = _render(int(seed), "train", int(train_size), knobs)
    test_x, test_y = _render(int(seed), "test", int(test_size), knobs)
    return ImageDataset(
        train_x, train_y, test_x, test_y, list(CLASSES), name="synthetic",
        label="Synthetic shapes x textures" + ("" if difficulty == "standard" else f" ({difficulty})"),
        meta={"source": "generated (resnet_bench.data.synthetic)", "seed": int(seed),
              "train_size": int(train_size), "test_size": int(test_size), "difficulty": difficulty,
              "channels": "RGB (generated)", "image_size": [SIZE, SIZE], "generator_version": 1},
    )


KIND = register(DatasetKind(
    "synthetic", load_synthetic,
    options=(Option("seed", Int(0, MAX_SEED), "seed the images are generated from"),
             Option("train_size", Int(1, MAX_IMAGES), "training images"),
             Option("test_size", Int(1, MAX_IMAGES), "test images"),
             Option("difficulty", Choice(tuple(DIFFICULTIES)),
                    "easy: no clutter, for CPU smoke runs")),
    help="textured shapes in clutter, generated from a seed (embedded, no files)",
    train_size=lambda o: int(o["train_size"]), image_size=lambda o: (SIZE, SIZE),
    reads_files=False))
