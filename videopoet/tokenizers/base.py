"""The interface every media tokenizer family's model offers to the layers above (data, llm, pipeline).

A family's own code may offer more (the video model's streaming `encode_frames(chunk_frames=...)`, the
audio codec's `encode_long`), but whatever only needs "media in, ids out, and where the ids go in the
shared vocabulary" goes through these methods, so a new family that implements them plugs in.
"""

from __future__ import annotations

from typing import Any, ClassVar, Protocol, runtime_checkable

import numpy as np


@runtime_checkable
class MediaTokenizer(Protocol):
    """Media <-> discrete ids, for one modality.

    - `modality`: `video` (uint8 RGB clips `[B, T, H, W, 3]`, a still image is one frame) or `audio`
      (float32 mono waveforms `[B, N]` in [-1, 1] at `geometry()["sample_rate"]`).
    - `encode_media(batch)`: int64 ids `[B, *latent]` (video `[B, t, h, w]`, audio `[B, levels, frames]`).
    - `decode_media(ids, length=None)`: the media back; `length` asks for exactly that many samples
      (audio) where the ids cover fewer.
    - `ids_shape(media_shape)`: the shape of one item's ids for one item's media shape (video
      `(T, H, W, 3)` -> `(t, h, w)`, audio `(N,)` -> `(levels, frames)`), without encoding anything;
    - `vocab_share()`: the keyword arguments of `SharedVocab` that size its block of the shared
      vocabulary (`video_bits`, or `audio_levels` and `audio_codebook_size`).
    - `geometry()`: what media it takes (video: `frames`, `height`, `width`; audio: `sample_rate`,
      `frame_rate`), as saved in its folder's config.
    """

    modality: ClassVar[str]
    config: Any

    def encode_media(self, batch: np.ndarray) -> np.ndarray: ...

    def decode_media(self, ids: np.ndarray, length: int | None = None) -> np.ndarray: ...

    def ids_shape(self, media_shape: tuple[int, ...]) -> tuple[int, ...]: ...

    def vocab_share(self) -> dict[str, int]: ...

    def geometry(self) -> dict[str, float]: ...
