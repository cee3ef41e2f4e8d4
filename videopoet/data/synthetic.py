"""The built-in "shapes" dataset: one filled shape moving across a dark background, with a tone and a caption.

This is the embedded default on which the whole pipeline is demonstrated and scored on a CPU. Every clip has
four attributes that a small model can learn and that :mod:`videopoet.eval.shapes` can read back from pixels
and audio:

* color: one of :data:`COLORS` (exact RGB fill, anti-aliased edges);
* shape: one of :data:`SHAPES` (circle, square, triangle with its apex up), ``shape_width`` (default 0.3) of
  the canvas wide;
* direction: one of :data:`DIRECTIONS`; the shape's center travels at constant speed from about 20% to about
  80% of the canvas along that axis (``"left"`` goes from x~0.8 to x~0.2; image y grows downwards, so
  ``"up"`` goes from y~0.8 to y~0.2);
* a 16 kHz mono sine tone whose pitch is set by the shape (:data:`PITCH_HZ`).

Per-clip randomness (from the seed) keeps clips apart without making any attribute ambiguous: size +-10%,
start and end +-4% of the canvas, the perpendicular position within +-8% of the middle (all scaled by
``jitter``, 1 by default), a dark gray background level (drawn from ``background_levels``; one fixed level
makes the background cheap for a small LLM to model), and the caption template.

:data:`HELDOUT_COMBOS` lists (color, shape, direction) combinations that never appear in the ``train`` or
``val`` splits; the ``heldout`` split uses only them, to measure compositional generalisation.

The dataset on disk (splits, files, metadata) is written by :mod:`videopoet.data.shapes_dataset`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from videopoet.errors import UserError

__all__ = [
    "COLORS",
    "SHAPES",
    "DIRECTIONS",
    "PITCH_HZ",
    "PITCH_TOLERANCE",
    "HELDOUT_COMBOS",
    "ALL_COMBOS",
    "TRAIN_COMBOS",
    "CAPTION_TEMPLATES",
    "ShapesConfig",
    "make_caption",
    "render_frames",
    "render_audio",
    "render_clip",
]

COLORS: dict[str, tuple[int, int, int]] = {
    "red": (230, 40, 40),
    "green": (40, 200, 70),
    "blue": (50, 90, 240),
    "yellow": (240, 220, 50),
}
SHAPES: tuple[str, ...] = ("circle", "square", "triangle")
DIRECTIONS: tuple[str, ...] = ("left", "right", "up", "down")
PITCH_HZ: dict[str, float] = {"circle": 262.0, "square": 392.0, "triangle": 659.0}
PITCH_TOLERANCE = 0.02  # relative pitch error within which a tone counts as its shape's (the tones are far further apart)

# Six of the 48 combinations, kept out of train/val. Each color, shape and direction appears at most twice
# here, so every single attribute (and every pair of attributes but one per held-out combo) is still seen
# in training.
HELDOUT_COMBOS: tuple[tuple[str, str, str], ...] = (
    ("red", "square", "up"),
    ("green", "triangle", "left"),
    ("blue", "circle", "down"),
    ("yellow", "square", "right"),
    ("red", "triangle", "right"),
    ("blue", "triangle", "up"),
)
ALL_COMBOS: tuple[tuple[str, str, str], ...] = tuple(
    (c, s, d) for c in COLORS for s in SHAPES for d in DIRECTIONS
)
TRAIN_COMBOS: tuple[tuple[str, str, str], ...] = tuple(c for c in ALL_COMBOS if c not in HELDOUT_COMBOS)

# {d}: bare direction word ("left", "up"); {dp}: phrase ("to the left", "upwards").
CAPTION_TEMPLATES: tuple[str, ...] = (
    "a {c} {s} moving {d}",
    "a {c} {s} moves {d}",
    "{c} {s} going {dp}",
    "a {c} {s} sliding {dp}",
    "the {c} {s} travels {dp}",
    "a {s}, {c}, moving {d}",
)
_DIRECTION_PHRASES = {"left": "to the left", "right": "to the right", "up": "upwards", "down": "downwards"}


# Geometry (fractions of the canvas).
_SIZE_JITTER = 0.10
_TRAVEL_START = 0.20
_TRAVEL_END = 0.80
_TRAVEL_JITTER = 0.04
_PERP_JITTER = 0.08
_SUPERSAMPLE = 4
_TONE_AMPLITUDE = 0.5
_FADE_S = 0.010


@dataclass
class ShapesConfig:
    """How shapes clips look and sound. Fractions are of ``num_clips`` in :func:`write_shapes_dataset`."""

    size: int = 64
    frames: int = 17
    fps: float = 8.0
    sample_rate: int = 16000
    val_fraction: float = 0.1
    heldout_fraction: float = 0.1
    shape_width: float = 0.30  # the shape's width as a fraction of the canvas, before the +-10% size jitter
    background_levels: tuple[int, int] = (12, 48)  # inclusive range of the dark gray background level
    jitter: float = 1.0  # scales the per-clip size and position randomness; 0: every clip of a combination alike

    def __post_init__(self) -> None:
        self.background_levels = tuple(self.background_levels)
        if not isinstance(self.size, int) or self.size < 16:
            raise UserError(f"shapes: size must be an integer >= 16, got {self.size!r}")
        if not isinstance(self.frames, int) or self.frames < 2:
            raise UserError(f"shapes: frames must be an integer >= 2, got {self.frames!r}")
        if not (self.fps > 0):
            raise UserError(f"shapes: fps must be > 0, got {self.fps!r}")
        if not isinstance(self.sample_rate, int) or self.sample_rate < 4000:
            raise UserError(f"shapes: sample_rate must be an integer >= 4000, got {self.sample_rate!r}")
        for name in ("val_fraction", "heldout_fraction"):
            value = getattr(self, name)
            if not (0.0 <= value < 1.0):
                raise UserError(f"shapes: {name} must be in [0, 1), got {value!r}")
        if not (0.1 <= self.shape_width <= 0.4):
            raise UserError(f"shapes: shape_width must be in [0.1, 0.4] (it must fit the travel), got {self.shape_width!r}")
        if not (0.0 <= self.jitter <= 1.0):
            raise UserError(f"shapes: jitter must be in [0, 1], got {self.jitter!r}")
        bg = self.background_levels
        if len(bg) != 2 or not all(isinstance(v, int) for v in bg) or not (0 <= bg[0] <= bg[1] <= 64):
            raise UserError(f"shapes: background_levels must be two integers 0 <= low <= high <= 64, got {list(self.background_levels)}")
        if self.val_fraction + self.heldout_fraction >= 1.0:
            raise UserError(
                "shapes: val_fraction + heldout_fraction must be < 1 "
                f"(got {self.val_fraction} + {self.heldout_fraction})"
            )

    @property
    def duration_s(self) -> float:
        return self.frames / self.fps

    @property
    def num_samples(self) -> int:
        return int(round(self.frames * self.sample_rate / self.fps))


def _check_attrs(color: str, shape: str, direction: str) -> None:
    if color not in COLORS:
        raise UserError(f"shapes: unknown color {color!r}; choose from {', '.join(COLORS)}")
    if shape not in SHAPES:
        raise UserError(f"shapes: unknown shape {shape!r}; choose from {', '.join(SHAPES)}")
    if direction not in DIRECTIONS:
        raise UserError(f"shapes: unknown direction {direction!r}; choose from {', '.join(DIRECTIONS)}")


def make_caption(color: str, shape: str, direction: str, rng: np.random.Generator) -> str:
    """A caption naming the three attributes, its template drawn from ``rng``."""
    _check_attrs(color, shape, direction)
    template = CAPTION_TEMPLATES[int(rng.integers(len(CAPTION_TEMPLATES)))]
    return template.format(c=color, s=shape, d=direction, dp=_DIRECTION_PHRASES[direction])


def _shape_mask(shape: str, x: np.ndarray, y: np.ndarray, cx: np.ndarray, cy: np.ndarray, half: float):
    """Boolean mask of ``shape`` centered (bounding box) at (cx, cy) with half-width ``half``.

    ``x`` [1, 1, S] and ``y`` [1, S, 1] are sample coordinates; ``cx``, ``cy`` are [T, 1, 1].
    """
    dx = x - cx
    dy = y - cy
    if shape == "circle":
        return dx * dx + dy * dy <= half * half
    if shape == "square":
        return (np.abs(dx) <= half) & (np.abs(dy) <= half)
    if shape == "triangle":
        # Apex up at (cx, cy - half), base from (cx - half, cy + half) to (cx + half, cy + half).
        depth = (dy + half) / (2.0 * half)  # 0 at the apex, 1 at the base
        return (depth >= 0.0) & (depth <= 1.0) & (np.abs(dx) <= half * depth)
    raise UserError(f"shapes: unknown shape {shape!r}; choose from {', '.join(SHAPES)}")


def _draw_layout(direction: str, rng: np.random.Generator, config: ShapesConfig) -> tuple[float, float, float, float]:
    """Per-clip random layout: (half width, start, end, perpendicular position), fractions of the canvas."""
    j = config.jitter
    half = 0.5 * config.shape_width * (1.0 + j * rng.uniform(-_SIZE_JITTER, _SIZE_JITTER))
    start = _TRAVEL_START + j * rng.uniform(-_TRAVEL_JITTER, _TRAVEL_JITTER)
    end = _TRAVEL_END + j * rng.uniform(-_TRAVEL_JITTER, _TRAVEL_JITTER)
    perp = 0.5 + j * rng.uniform(-_PERP_JITTER, _PERP_JITTER)
    # Keep the whole shape on the canvas (one pixel margin is added by the clamp in render_frames).
    lo, hi = half, 1.0 - half
    start, end = min(max(start, lo), hi), min(max(end, lo), hi)
    if direction in ("left", "up"):
        start, end = 1.0 - start, 1.0 - end
    return half, start, end, perp


def render_frames(
    color: str,
    shape: str,
    direction: str,
    rng: np.random.Generator,
    config: ShapesConfig | None = None,
) -> np.ndarray:
    """Render the frames of one clip: uint8 ``[T, H, W, 3]`` (H = W = ``config.size``)."""
    config = config or ShapesConfig()
    _check_attrs(color, shape, direction)
    half, start, end, perp = _draw_layout(direction, rng, config)
    background = int(rng.integers(config.background_levels[0], config.background_levels[1] + 1))

    size, t_count, ss = config.size, config.frames, _SUPERSAMPLE
    # Keep a pixel of margin so anti-aliased edges never touch the border.
    margin = half + 1.0 / size
    start = min(max(start, margin), 1.0 - margin)
    end = min(max(end, margin), 1.0 - margin)
    along = start + (end - start) * np.linspace(0.0, 1.0, t_count)  # constant speed
    perp_t = np.full(t_count, perp)
    if direction in ("left", "right"):
        cx, cy = along, perp_t
    else:
        cx, cy = perp_t, along

    coords = (np.arange(size * ss, dtype=np.float64) + 0.5) / (size * ss)
    mask = _shape_mask(
        shape,
        coords[None, None, :],
        coords[None, :, None],
        cx[:, None, None],
        cy[:, None, None],
        half,
    )
    coverage = mask.reshape(t_count, size, ss, size, ss).mean(axis=(2, 4), dtype=np.float64)[..., None]
    fg = np.asarray(COLORS[color], dtype=np.float64)
    frames = background * (1.0 - coverage) + fg * coverage
    return np.clip(np.rint(frames), 0, 255).astype(np.uint8)


def render_audio(shape: str, config: ShapesConfig | None = None) -> np.ndarray:
    """The clip's tone: float32 mono sine at ``PITCH_HZ[shape]``, amplitude 0.5, 10 ms fades, ``frames/fps`` s."""
    config = config or ShapesConfig()
    if shape not in PITCH_HZ:
        raise UserError(f"shapes: unknown shape {shape!r}; choose from {', '.join(SHAPES)}")
    n = config.num_samples
    t = np.arange(n, dtype=np.float64) / config.sample_rate
    wave = _TONE_AMPLITUDE * np.sin(2.0 * math.pi * PITCH_HZ[shape] * t)
    fade = min(int(round(_FADE_S * config.sample_rate)), n // 2)
    if fade > 0:
        ramp = 0.5 - 0.5 * np.cos(np.linspace(0.0, math.pi, fade))  # raised cosine 0 -> 1
        wave[:fade] *= ramp
        wave[n - fade :] *= ramp[::-1]
    return wave.astype(np.float32)


def render_clip(
    color: str,
    shape: str,
    direction: str,
    rng: np.random.Generator,
    config: ShapesConfig | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Frames (uint8 ``[T, H, W, 3]``) and audio (float32 ``[N]``) of one clip."""
    config = config or ShapesConfig()
    return render_frames(color, shape, direction, rng, config), render_audio(shape, config)
