"""The shared vocabulary: one id space for special, text, video and audio tokens.

Layout (docs/design.md, "Shared vocabulary"), in this order, each range's size taken from the tokenizers' configs:

1. special tokens, a fixed block of 256 slots: `<pad> <bos> <eos> <mask>`, one token per task, the
   boundary tokens, a resolution/aspect set, the rest reserved;
2. text: the SentencePiece vocabulary;
3. video: 2^K lookup-free-quantization codes;
4. audio: one disjoint range of C codes per residual-VQ level.

The layout is saved as JSON beside every checkpoint; loading one with a different layout is an error that
says what differs.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any, NamedTuple, TypeVar

import numpy as np
import torch

from videopoet.errors import UserError

SPECIAL_SLOTS = 256

BASE_TOKENS = ("<pad>", "<bos>", "<eos>", "<mask>")
TASKS = (
    "text_to_video",
    "text_to_image",
    "text_to_video_audio",
    "image_to_video",
    "video_continuation",
    "video_inpainting",
    "video_outpainting",
    "video_to_audio",
    "audio_to_video",
    "unconditional_video",
)
BOUNDARY_TOKENS = (
    "<bot_i>", "<eot_i>", "<bov_i>", "<eov_i>", "<boa_i>", "<eoa_i>",
    "<bov_o>", "<eov_o>", "<boa_o>", "<eoa_o>",
)  # fmt: skip
# Resolution is told to the model as two tokens: the aspect ratio (height:width) and the short side.
ASPECT_RATIOS = ("1:1", "4:3", "3:4", "3:2", "2:3", "16:9", "9:16", "7:4", "4:7", "2:1", "1:2")
SHORT_SIDES = (32, 64, 128, 256, 512, 1024)

SPECIAL_TOKENS: tuple[str, ...] = (
    BASE_TOKENS
    + tuple(f"<task_{t}>" for t in TASKS)
    + BOUNDARY_TOKENS
    + tuple(f"<aspect_{a}>" for a in ASPECT_RATIOS)
    + tuple(f"<short_{s}>" for s in SHORT_SIDES)
)
assert len(SPECIAL_TOKENS) <= SPECIAL_SLOTS

Ids = TypeVar("Ids", int, list, np.ndarray, torch.Tensor)


class VocabError(UserError):
    """Ids outside their range, an unknown token name, or a vocabulary file that does not fit."""


class IdRange(NamedTuple):
    """A half-open range `[start, stop)` of global ids."""

    start: int
    stop: int

    @property
    def size(self) -> int:
        return self.stop - self.start

    def __contains__(self, i: object) -> bool:
        return isinstance(i, (int, np.integer)) and self.start <= int(i) < self.stop


def _as_array(ids: Any) -> tuple[Any, str]:
    """Ids as an array we can do arithmetic on, and how to give them back."""
    if isinstance(ids, torch.Tensor):
        return ids, "tensor"
    if isinstance(ids, np.ndarray):
        return ids, "ndarray"
    if isinstance(ids, (int, np.integer)):
        return np.asarray(int(ids), dtype=np.int64), "int"
    if isinstance(ids, Sequence):
        return np.asarray(ids, dtype=np.int64), "list"
    raise TypeError(f"ids must be an int, a sequence, a numpy array or a torch tensor, got {type(ids).__name__}")


def _give_back(arr: Any, kind: str) -> Any:
    if kind == "int":
        return int(arr)
    if kind == "list":
        return arr.tolist()
    return arr


def _shift(ids: Any, lo: int, hi: int, offset: int, what: str) -> Any:
    """Check every id lies in [lo, hi) and add `offset`, keeping the input's container type."""
    arr, kind = _as_array(ids)
    if arr.numel() if isinstance(arr, torch.Tensor) else arr.size:
        bad = (arr < lo) | (arr >= hi)
        if bool(bad.any()):
            first = arr[bad].reshape(-1)[0]
            raise VocabError(f"{what} id {int(first)} is outside [{lo}, {hi})")
    return _give_back(arr + offset, kind)


@dataclass(frozen=True)
class SharedVocab:
    """Sizes of each range; every offset and conversion follows from them."""

    text_size: int
    video_bits: int
    audio_levels: int
    audio_codebook_size: int
    special_slots: int = SPECIAL_SLOTS

    def __post_init__(self) -> None:
        for f in fields(self):
            if getattr(self, f.name) < 0:
                raise VocabError(f"vocabulary {f.name} must not be negative, got {getattr(self, f.name)}")
        if self.special_slots < len(SPECIAL_TOKENS):
            raise VocabError(f"special_slots must be at least {len(SPECIAL_TOKENS)}")

    # ranges -----------------------------------------------------------------------------------------
    @property
    def special_range(self) -> IdRange:
        return IdRange(0, self.special_slots)

    @property
    def text_range(self) -> IdRange:
        return IdRange(self.special_slots, self.special_slots + self.text_size)

    @property
    def video_size(self) -> int:
        return 2**self.video_bits if self.video_bits else 0

    @property
    def video_range(self) -> IdRange:
        start = self.text_range.stop
        return IdRange(start, start + self.video_size)

    def audio_range(self, level: int | None = None) -> IdRange:
        """The ids of one RVQ level, or of all levels together when `level` is None."""
        start = self.video_range.stop
        if level is None:
            return IdRange(start, start + self.audio_levels * self.audio_codebook_size)
        if not 0 <= level < self.audio_levels:
            raise VocabError(f"audio level {level} is outside [0, {self.audio_levels})")
        lo = start + level * self.audio_codebook_size
        return IdRange(lo, lo + self.audio_codebook_size)

    @property
    def size(self) -> int:
        """Total number of ids."""
        return self.audio_range().stop

    def padded_size(self, multiple: int = 128) -> int:
        """Size rounded up to a multiple, for embedding tables that run faster on aligned shapes."""
        return -(-self.size // multiple) * multiple

    def modality_of(self, token_id: int) -> str:
        """'special', 'text', 'video', 'audio' or 'padding' (ids past the last range)."""
        for name, r in (("special", self.special_range), ("text", self.text_range), ("video", self.video_range)):
            if token_id in r:
                return name
        if token_id in self.audio_range():
            return "audio"
        if token_id >= self.size:
            return "padding"
        raise VocabError(f"id {token_id} is negative")

    # special tokens ---------------------------------------------------------------------------------
    def token_id(self, name: str) -> int:
        """The id of a special token by name, e.g. `<bos>` or `<task_text_to_video>`."""
        try:
            return SPECIAL_TOKENS.index(name)
        except ValueError:
            raise VocabError(f"unknown special token {name!r}") from None

    def task_id(self, task: str) -> int:
        if task not in TASKS:
            raise VocabError(f"unknown task {task!r}; tasks are: {', '.join(TASKS)}")
        return self.token_id(f"<task_{task}>")

    def special_name(self, token_id: int) -> str:
        """The name of a special id (`<reserved_N>` for unused slots)."""
        if token_id not in self.special_range:
            raise VocabError(f"id {token_id} is not a special token")
        return SPECIAL_TOKENS[token_id] if token_id < len(SPECIAL_TOKENS) else f"<reserved_{token_id}>"

    def resolution_ids(self, height: int, width: int) -> tuple[int, int]:
        """The aspect and short-side tokens nearest to a `height x width` clip."""
        ratio = np.log(height / width)
        aspect = min(ASPECT_RATIOS, key=lambda a: abs(np.log(int(a.split(":")[0]) / int(a.split(":")[1])) - ratio))
        short = min(SHORT_SIDES, key=lambda s: abs(np.log(s / min(height, width))))
        return self.token_id(f"<aspect_{aspect}>"), self.token_id(f"<short_{short}>")

    # conversions ------------------------------------------------------------------------------------
    def text_to_global(self, ids: Ids) -> Ids:
        return _shift(ids, 0, self.text_size, self.text_range.start, "text")

    def global_to_text(self, ids: Ids) -> Ids:
        r = self.text_range
        return _shift(ids, r.start, r.stop, -r.start, "global text")

    def video_to_global(self, codes: Ids) -> Ids:
        return _shift(codes, 0, self.video_size, self.video_range.start, "video")

    def global_to_video(self, ids: Ids) -> Ids:
        r = self.video_range
        return _shift(ids, r.start, r.stop, -r.start, "global video")

    def audio_to_global(self, codes: Ids, level: int | None = None) -> Ids:
        """Audio codes to global ids: of one `level`, or `[levels, frames]` (row i is level i) when None."""
        if level is not None:
            r = self.audio_range(level)
            return _shift(codes, 0, self.audio_codebook_size, r.start, f"audio level {level}")
        arr, kind = _as_array(codes)
        self._check_levels(arr)
        offsets = self._level_offsets(arr)
        return _give_back(_shift(arr, 0, self.audio_codebook_size, 0, "audio") + offsets, kind)

    def global_to_audio(self, ids: Ids, level: int | None = None) -> Ids:
        """Inverse of `audio_to_global`."""
        if level is not None:
            r = self.audio_range(level)
            return _shift(ids, r.start, r.stop, -r.start, f"global audio level {level}")
        arr, kind = _as_array(ids)
        self._check_levels(arr)
        local = arr - self._level_offsets(arr)
        return _give_back(_shift(local, 0, self.audio_codebook_size, 0, "global audio (per level)"), kind)

    def _check_levels(self, arr: Any) -> None:
        if arr.ndim < 2 or arr.shape[-2] != self.audio_levels:
            raise VocabError(f"audio codes must be shaped [..., {self.audio_levels} levels, frames], got {tuple(arr.shape)}")

    def _level_offsets(self, arr: Any) -> Any:
        offsets = [self.audio_range(level).start for level in range(self.audio_levels)]
        if isinstance(arr, torch.Tensor):
            return torch.tensor(offsets, dtype=arr.dtype, device=arr.device)[:, None]
        return np.asarray(offsets, dtype=arr.dtype)[:, None]

    # persistence ------------------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        """Sizes plus the derived layout and special-token names (the JSON saved with checkpoints)."""
        return {
            **asdict(self),
            "size": self.size,
            "ranges": {
                "special": list(self.special_range),
                "text": list(self.text_range),
                "video": list(self.video_range),
                **{f"audio_{level}": list(self.audio_range(level)) for level in range(self.audio_levels)},
            },
            "special_tokens": list(SPECIAL_TOKENS),
        }

    def save(self, path: str | Path) -> None:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(self.to_dict(), indent=2) + "\n", encoding="utf-8")

    @classmethod
    def load(cls, path: str | Path) -> SharedVocab:
        """Read a vocabulary JSON written by `save`; its special-token list must match this code's."""
        path = Path(path)
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise VocabError(f"vocabulary file not found: {path}") from None
        except (OSError, ValueError) as e:
            raise VocabError(f"cannot read vocabulary file {path}: {e}") from None
        try:
            vocab = cls(**{f.name: int(data[f.name]) for f in fields(cls)})
        except (KeyError, TypeError, ValueError) as e:
            raise VocabError(f"vocabulary file {path} is missing or has a bad field: {e}") from None
        saved_specials = data.get("special_tokens")
        if saved_specials is not None and list(saved_specials) != list(SPECIAL_TOKENS):
            changed = [
                f"slot {i}: {a!r} vs {b!r}"
                for i, (a, b) in enumerate(zip(saved_specials, SPECIAL_TOKENS))
                if a != b
            ]
            if len(saved_specials) != len(SPECIAL_TOKENS):
                changed.append(f"count {len(saved_specials)} vs {len(SPECIAL_TOKENS)}")
            raise VocabError(f"vocabulary file {path} has other special tokens than this code: {'; '.join(changed[:5])}")
        return vocab

    def check_same(self, other: SharedVocab, what: str = "checkpoint") -> None:
        """Raise VocabError listing every size and range that differs between `other` and this vocab."""
        mine, theirs = self.to_dict(), other.to_dict()
        diffs = [f"{f.name} {theirs[f.name]} vs {mine[f.name]}" for f in fields(self) if mine[f.name] != theirs[f.name]]
        if diffs:
            raise VocabError(f"the {what}'s vocabulary differs from the running one ({what} vs running): " + "; ".join(diffs))
