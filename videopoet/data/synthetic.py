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

On disk (:func:`write_shapes_dataset`)::

    out_dir/clips/clip_00000.mp4 ...   H.264 + AAC, written with videopoet.data.io.write_video
    out_dir/metadata.jsonl             one JSON object per clip (file, caption, color, shape, ...)
    out_dir/dataset.json               format, seed, num_clips, config, held-out combinations (written last)

Same seed, clip count and config give the same files. Writing into a directory that already holds the very
same dataset is a no-op; one that holds a different dataset, or anything else, is refused with a
:class:`~videopoet.errors.UserError`; an interrupted write of a shapes dataset (our own files only, no
``dataset.json`` yet) is overwritten.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from videopoet.errors import UserError

__all__ = [
    "COLORS",
    "SHAPES",
    "DIRECTIONS",
    "PITCH_HZ",
    "HELDOUT_COMBOS",
    "ALL_COMBOS",
    "TRAIN_COMBOS",
    "CAPTION_TEMPLATES",
    "DATASET_FORMAT",
    "ShapesConfig",
    "ShapeClip",
    "make_caption",
    "render_frames",
    "render_audio",
    "render_clip",
    "assign_splits",
    "generate_clips",
    "write_shapes_dataset",
    "read_metadata",
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

DATASET_FORMAT = "videopoet-shapes"
_FORMAT_VERSION = 1

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


@dataclass
class ShapeClip:
    """One rendered clip and its labels. ``file`` is set once written (relative to the dataset folder)."""

    index: int
    color: str
    shape: str
    direction: str
    caption: str
    pitch_hz: float
    split: str
    frames: np.ndarray = field(repr=False)  # uint8 [T, H, W, 3]
    audio: np.ndarray = field(repr=False)  # float32 [N]
    file: str | None = None

    def record(self) -> dict:
        """The clip's metadata.jsonl entry (no arrays)."""
        return {
            "file": self.file,
            "caption": self.caption,
            "color": self.color,
            "shape": self.shape,
            "direction": self.direction,
            "pitch_hz": self.pitch_hz,
            "split": self.split,
        }


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


def assign_splits(num_clips: int, config: ShapesConfig, rng: np.random.Generator) -> list[str]:
    """Split of each clip index: ``round(fraction * num_clips)`` val and heldout clips, the rest train."""
    n_val = int(round(config.val_fraction * num_clips))
    n_held = int(round(config.heldout_fraction * num_clips))
    n_val = min(n_val, num_clips - 1)  # always keep at least one training clip
    n_held = min(n_held, num_clips - 1 - n_val)
    splits = ["train"] * (num_clips - n_val - n_held) + ["val"] * n_val + ["heldout"] * n_held
    order = rng.permutation(num_clips)
    return [splits[i] for i in order]


def _combo_stream(pool: tuple[tuple[str, str, str], ...], rng: np.random.Generator):
    """Cycle through ``pool`` in a fresh shuffled order each pass, so combinations stay balanced."""
    while True:
        for i in rng.permutation(len(pool)):
            yield pool[int(i)]


def generate_clips(num_clips: int, seed: int, config: ShapesConfig | None = None) -> Iterator[ShapeClip]:
    """The clips of the dataset for (``num_clips``, ``seed``, ``config``), in order, in memory.

    Train and val clips cycle through :data:`TRAIN_COMBOS`, heldout clips through :data:`HELDOUT_COMBOS`
    (each in shuffled passes). Clip ``i``'s layout and caption come from its own generator seeded with
    ``(seed, i)``.
    """
    config = config or ShapesConfig()
    if not isinstance(num_clips, int) or isinstance(num_clips, bool) or num_clips < 1:
        raise UserError(f"shapes: num_clips must be a positive integer, got {num_clips!r}")
    if not isinstance(seed, int) or isinstance(seed, bool) or seed < 0:
        raise UserError(f"shapes: seed must be a non-negative integer, got {seed!r}")
    plan_rng = np.random.default_rng([seed, 0x5EED])
    splits = assign_splits(num_clips, config, plan_rng)
    seen = _combo_stream(TRAIN_COMBOS, plan_rng)
    held = _combo_stream(HELDOUT_COMBOS, np.random.default_rng([seed, 0x4E1D]))
    for index, split in enumerate(splits):
        color, shape, direction = next(held) if split == "heldout" else next(seen)
        rng = np.random.default_rng([seed, 1, index])
        caption = make_caption(color, shape, direction, rng)
        frames, audio = render_clip(color, shape, direction, rng, config)
        yield ShapeClip(
            index=index,
            color=color,
            shape=shape,
            direction=direction,
            caption=caption,
            pitch_hz=PITCH_HZ[shape],
            split=split,
            frames=frames,
            audio=audio,
        )


def _manifest(num_clips: int, seed: int, config: ShapesConfig) -> dict:
    return {
        "format": DATASET_FORMAT,
        "version": _FORMAT_VERSION,
        "seed": seed,
        "num_clips": num_clips,
        "config": json.loads(json.dumps(asdict(config))),  # as read back from dataset.json (tuples as lists)
        "heldout_combos": [list(c) for c in HELDOUT_COMBOS],
        "colors": {k: list(v) for k, v in COLORS.items()},
        "pitch_hz": dict(PITCH_HZ),
    }


def _clip_name(index: int) -> str:
    return f"clips/clip_{index:05d}.mp4"


def _is_own_partial(out_dir: Path) -> bool:
    """True when ``out_dir`` holds only files a shapes write leaves behind (an interrupted write)."""
    for entry in out_dir.iterdir():
        if entry.name in ("metadata.jsonl", "metadata.jsonl.tmp", "dataset.json.tmp") and entry.is_file():
            continue
        if entry.name == "clips" and entry.is_dir():
            if all(
                p.is_file() and p.name.startswith("clip_") and p.suffix == ".mp4" for p in entry.iterdir()
            ):
                continue
        return False
    return True


def _check_out_dir(out_dir: Path, manifest: dict) -> bool:
    """Decide what to do with ``out_dir``. Returns True when it already holds exactly this dataset."""
    if out_dir.exists() and not out_dir.is_dir():
        raise UserError(f"shapes: output path {out_dir} exists and is not a directory")
    if not out_dir.exists() or not any(out_dir.iterdir()):
        return False
    info_path = out_dir / "dataset.json"
    if info_path.is_file():
        try:
            existing = json.loads(info_path.read_text())
        except (OSError, ValueError) as e:
            raise UserError(
                f"shapes: {out_dir} holds an unreadable dataset.json ({e}); choose another directory"
            ) from e
        if isinstance(existing, dict) and {k: existing.get(k) for k in manifest} == manifest:
            meta = out_dir / "metadata.jsonl"
            files_ok = meta.is_file() and all(
                (out_dir / _clip_name(i)).is_file() for i in range(manifest["num_clips"])
            )
            if files_ok:
                return True
            raise UserError(
                f"shapes: {out_dir} holds this dataset but some of its files are missing; delete the folder and run again"
            )
        if isinstance(existing, dict) and existing.get("format") == DATASET_FORMAT:
            raise UserError(
                f"shapes: {out_dir} already holds a different shapes dataset "
                f"(seed={existing.get('seed')}, num_clips={existing.get('num_clips')}, config={existing.get('config')}); "
                "choose another directory or delete it"
            )
        raise UserError(
            f"shapes: {out_dir} is not empty and is not a shapes dataset; choose an empty directory"
        )
    if _is_own_partial(out_dir):
        return False  # an interrupted write of ours: overwrite it
    raise UserError(f"shapes: {out_dir} is not empty and is not a shapes dataset; choose an empty directory")


def write_shapes_dataset(
    out_dir: str | os.PathLike,
    num_clips: int,
    seed: int,
    config: ShapesConfig | None = None,
    progress: bool = True,
) -> Path:
    """Write the shapes dataset to ``out_dir`` and return its path (see the module docstring for the layout).

    ``metadata.jsonl`` rows: ``file`` (relative to ``out_dir``), ``caption``, ``color``, ``shape``,
    ``direction``, ``pitch_hz``, ``split`` (``train`` / ``val`` / ``heldout``). ``dataset.json`` is written
    last, so its presence marks a complete dataset.
    """
    from tqdm.auto import tqdm

    from videopoet.data import io as media_io

    config = config or ShapesConfig()
    if not isinstance(num_clips, int) or isinstance(num_clips, bool) or num_clips < 1:
        raise UserError(f"shapes: num_clips must be a positive integer, got {num_clips!r}")
    if not isinstance(seed, int) or isinstance(seed, bool) or seed < 0:
        raise UserError(f"shapes: seed must be a non-negative integer, got {seed!r}")
    out = Path(out_dir)
    manifest = _manifest(num_clips, seed, config)
    if _check_out_dir(out, manifest):
        return out
    (out / "clips").mkdir(parents=True, exist_ok=True)
    counts = {"train": 0, "val": 0, "heldout": 0}
    records = []
    for clip in tqdm(
        generate_clips(num_clips, seed, config),
        total=num_clips,
        desc="shapes",
        unit="clip",
        disable=not progress,
    ):
        clip.file = _clip_name(clip.index)
        media_io.write_video(
            out / clip.file, clip.frames, fps=config.fps, audio=clip.audio, sample_rate=config.sample_rate
        )
        records.append(clip.record())
        counts[clip.split] += 1
    tmp = out / "metadata.jsonl.tmp"
    tmp.write_text("".join(json.dumps(r) + "\n" for r in records))
    tmp.replace(out / "metadata.jsonl")
    manifest_tmp = out / "dataset.json.tmp"
    manifest_tmp.write_text(json.dumps({**manifest, "split_counts": counts}, indent=2, sort_keys=True) + "\n")
    manifest_tmp.replace(out / "dataset.json")
    return out


def read_metadata(path: str | os.PathLike) -> list[dict]:
    """Rows of a ``metadata.jsonl`` (or of ``<dir>/metadata.jsonl`` when given a dataset folder)."""
    p = Path(path)
    if p.is_dir():
        p = p / "metadata.jsonl"
    if not p.is_file():
        raise UserError(f"shapes: metadata file not found: {p}")
    rows = []
    with p.open() as f:
        for n, line in enumerate(f, 1):
            line = line.strip()
            if not line:
                continue
            try:
                rows.append(json.loads(line))
            except ValueError as e:
                raise UserError(f"{p}:{n}: not valid JSON ({e})") from e
    return rows
