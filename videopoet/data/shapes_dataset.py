"""The shapes dataset on disk: clips split into train / val / held-out, written as MP4 with metadata.

On disk (:func:`write_shapes_dataset`)::

    out_dir/clips/clip_00000.mp4 ...   H.264 + AAC, written with videopoet.media.write_video
    out_dir/metadata.jsonl             one JSON object per clip (file, caption, color, shape, ...)
    out_dir/dataset.json               format, seed, num_clips, config, held-out combinations (written last)

Same seed, clip count and config give the same files. Writing into a directory that already holds the very
same dataset is a no-op; one that holds a different dataset, or anything else, is refused with a
:class:`~videopoet.errors.UserError`; an interrupted write of a shapes dataset (our own files only, no
``dataset.json`` yet) is overwritten.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from videopoet.data.synthetic import (
    COLORS,
    HELDOUT_COMBOS,
    PITCH_HZ,
    TRAIN_COMBOS,
    ShapesConfig,
    make_caption,
    render_clip,
)
from videopoet.errors import UserError
from videopoet.runs import atomic_write_text

DATASET_FORMAT = "videopoet-shapes"
_FORMAT_VERSION = 1


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

    from videopoet import media as media_io

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
    atomic_write_text(out / "metadata.jsonl", "".join(json.dumps(r) + "\n" for r in records))
    # written last: its presence says the dataset is complete
    atomic_write_text(out / "dataset.json", json.dumps({**manifest, "split_counts": counts}, indent=2, sort_keys=True) + "\n")
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
