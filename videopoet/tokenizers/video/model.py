"""The video tokenizer: a MAGVIT-v2 style causal 3D CNN encoder/decoder around lookup-free quantization.

Clips are float `[B, 3, T, H, W]` in [-1, 1] with `T = 1 + k * temporal_factor`: the first frame is
encoded on its own and every later group of `temporal_factor` frames becomes one latent frame, so a still
image is a 1-frame clip and one model serves images and video. Sides must be multiples of
`spatial_factor`; the aspect ratio is free.

Causality: every 3D convolution pads time on the past side only and normalisation is per frame (group
norm over channels and space, never over time), so latent frame j depends on input frames up to the end
of its span and decoded frame f on latent frames up to the one covering f. That is what makes chunked
encoding exact: each causal convolution keeps the tail of its padded input as a cache, and feeding a clip
chunk by chunk through the same convolutions computes the same numbers as feeding it whole (up to the
summation order a convolution kernel picks for a given input length: latents agree to ~1e-6, so ids are
equal unless a latent lies within that of zero).

Down-sampling stages: `len(channel_mult) - 1` strided causal convolutions; space halves at the first
log2(spatial_factor) stages and time at the last log2(temporal_factor) ones (time compression deep in the
network, as MAGVIT-v2). Up-sampling mirrors them with a causal convolution followed by depth-to-space
and depth-to-time; the first `st - 1` frames of a stream are dropped so 1 + k*tf frames come back.

`temporal_kernel` 1 makes every convolution that keeps the frame rate spatial-only (kernel 1x3x3): time is
then mixed only by the convolutions that down- or up-sample it, which keep a time kernel of 3. At the CPU
demo's scale this learns much faster per step and each step is cheaper (held-out shapes PSNR after 600
steps: 22.4 dB against 20.4 with full 3D kernels; see docs/results.md, "Video tokenizer").

`norm` and `output_skips` are for real content (docs/results.md, "Real video"). A per-frame group norm over
few channels per group cannot carry a flat frame's colour (a two-channel group of a flat frame normalises
to +-1 whatever its level), so the tokenizer learns to paint texture into smooth areas and shifts their
colour; `norm: pixel` normalises each pixel's channels instead. `output_skips` gives every decoder level a
1x1 RGB output that is up-sampled smoothly and summed into the clip, a short path for colour and shading.

`patch_size` p (as the Cosmos tokenizer's patching and DC-AE's space-to-depth stems): frames enter the
encoder as p x p patches folded into channels and the decoder's last convolution outputs p x p patches of
RGB, so the first level works at 1/p the resolution and the spatial factor needs log2(p) strided stages
fewer. The full-resolution level is what a CPU step spends most on (its convolutions have the fewest
channels and its activations are the largest); the patches are per frame, so causality and streaming hold.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn

from videopoet.errors import UserError
from videopoet.tokenizers.video.layers import NORMS, Cache, Decoder, Encoder
from videopoet.tokenizers.video.lfq import LFQ, LFQConfig, LFQOutput


class VideoShapeError(UserError):
    """A clip whose frame count or sides the tokenizer cannot take."""


@dataclass
class VideoTokenizerConfig:
    """Shape and quantizer of the video tokenizer. `frames`, `height`, `width`: the clip size it is made
    for (training and evaluation default); any fitting size encodes."""

    channels: int = 128
    channel_mult: tuple[int, ...] = (1, 2, 2, 4)
    num_res_blocks: int = 2  # per level, in the encoder, the decoder and their middles
    temporal_kernel: int = 3  # time extent of every conv that keeps the frame rate; 1: spatial-only convs
    # (time is then mixed only where it is down/up-sampled, whose convs keep 3)
    norm_groups: int = 32
    norm: str = "group"  # group: per-frame group norm; pixel: per-pixel channel norm (keeps flat frames' colour)
    output_skips: bool = False  # every decoder level adds a smoothly up-sampled RGB image to the output
    patch_size: int = 1  # frames enter as p x p patches (space-to-depth) and leave the same way: the first
    # level works at 1/p the resolution, so the full-resolution stage and its cost are gone
    spatial_factor: int = 8  # 4, 8 or 16
    temporal_factor: int = 4  # 1, 2, 4 or 8
    bits: int = 18  # K: 2^K codes
    group_bits: int = 9  # factorized entropy groups (see lfq.py)
    entropy_temperature: float = 0.01
    commitment_weight: float = 0.25
    entropy_weight: float = 0.1
    codebook_entropy_weight: float = 1.0
    frames: int = 17
    height: int = 128
    width: int = 128

    def __post_init__(self) -> None:
        self.channel_mult = tuple(self.channel_mult)
        if self.spatial_factor not in (4, 8, 16):
            raise ValueError(f"spatial_factor must be 4, 8 or 16, got {self.spatial_factor}")
        if self.temporal_factor not in (1, 2, 4, 8):
            raise ValueError(f"temporal_factor must be 1, 2, 4 or 8, got {self.temporal_factor}")
        if self.patch_size not in (1, 2, 4):  # at most the smallest spatial_factor
            raise ValueError(f"patch_size must be 1, 2 or 4, got {self.patch_size}")
        stages = len(self.channel_mult) - 1
        need = max(self.spatial_stages, self.temporal_stages)
        if stages < need:
            raise ValueError(
                f"channel_mult {self.channel_mult} gives {stages} down-sampling stages; spatial_factor "
                f"{self.spatial_factor} and temporal_factor {self.temporal_factor} need at least {need} "
                f"(channel_mult of length {need + 1})"
            )
        if self.temporal_kernel not in (1, 3):
            raise ValueError(f"temporal_kernel must be 1 or 3, got {self.temporal_kernel}")
        if self.channels < 1 or min(self.channel_mult) < 1 or self.num_res_blocks < 1:
            raise ValueError("channels, channel_mult and num_res_blocks must be positive")
        if self.norm not in NORMS:
            raise ValueError(f"norm must be one of {', '.join(NORMS)}, got {self.norm!r}")
        bad = [self.channels * m for m in self.channel_mult if (self.channels * m) % self.norm_groups]
        if self.norm_groups < 1 or bad:
            raise ValueError(f"norm_groups {self.norm_groups} must divide every level's channels, not {bad}")
        self.lfq_config()  # validates bits and the loss settings
        if (self.frames - 1) % self.temporal_factor or self.frames < 1:
            raise ValueError(f"frames {self.frames} must be 1 + k * temporal_factor ({self.temporal_factor})")
        if (
            self.height % self.spatial_factor
            or self.width % self.spatial_factor
            or min(self.height, self.width) < 1
        ):
            raise ValueError(
                f"height and width ({self.height}x{self.width}) must be multiples of spatial_factor {self.spatial_factor}"
            )

    @property
    def spatial_stages(self) -> int:
        """Strided down-sampling stages in space: the patches take log2(patch_size) of the factor."""
        return int(math.log2(self.spatial_factor // self.patch_size))

    @property
    def temporal_stages(self) -> int:
        return int(math.log2(self.temporal_factor))

    @property
    def codebook_size(self) -> int:
        return 2**self.bits

    def stage_strides(self) -> list[tuple[int, int]]:
        """(time, space) stride of each encoder down-sampling stage."""
        n = len(self.channel_mult) - 1
        return [
            (2 if i >= n - self.temporal_stages else 1, 2 if i < self.spatial_stages else 1) for i in range(n)
        ]

    def lfq_config(self) -> LFQConfig:
        return LFQConfig(
            bits=self.bits,
            group_bits=min(self.group_bits, self.bits),
            entropy_temperature=self.entropy_temperature,
            commitment_weight=self.commitment_weight,
            entropy_weight=self.entropy_weight,
            codebook_entropy_weight=self.codebook_entropy_weight,
        )



# The latent grid each preset is named after comes from its (frames, height, width):
#   tiny      17x64x64   -> 5x8x8    =  320 tokens, 2^10 codes (CPU demo)
#   videopoet 17x128x128 -> 5x16x16  = 1280 tokens, 2^18 codes (VideoPoet / MAGVIT-v2)
#   8x16x16   57x128x128 -> 8x16x16  = 2048 tokens, time factor 8 (about 2x fewer tokens per frame)
#   4x16x16   25x128x128 -> 4x16x16  = 1024 tokens, time factor 8
PRESETS: dict[str, VideoTokenizerConfig] = {
    "tiny": VideoTokenizerConfig(
        channels=16,
        channel_mult=(1, 2, 4, 4),
        num_res_blocks=1,
        norm_groups=8,
        bits=10,
        group_bits=5,
        frames=17,
        height=64,
        width=64,
    ),
    "videopoet": VideoTokenizerConfig(),
    "8x16x16": VideoTokenizerConfig(temporal_factor=8, frames=57),
    "4x16x16": VideoTokenizerConfig(temporal_factor=8, frames=25),
}


def preset(name: str, **overrides: Any) -> VideoTokenizerConfig:
    """A copy of preset `name` (`tiny`, `videopoet`, ...) with `overrides` applied."""
    if name not in PRESETS:
        raise UserError(f"unknown video tokenizer preset {name!r}; choose one of {', '.join(PRESETS)}")
    return dataclasses.replace(PRESETS[name], **overrides)


def _frame_bounds(total: int, first: int, step: int) -> Iterator[tuple[int, int]]:
    start, stop = 0, min(first, total)
    while start < total:
        yield start, stop
        start, stop = stop, min(stop + step, total)


class VideoTokenizer(nn.Module):
    """Causal 3D CNN encoder, LFQ, and decoder. `forward` is for training; the rest is the Python API."""

    def __init__(self, config: VideoTokenizerConfig) -> None:
        super().__init__()
        self.config = config
        self.encoder = Encoder(config)
        self.quantizer = LFQ(config.lfq_config())
        self.decoder = Decoder(config)

    # --- shapes ---------------------------------------------------------------------------------

    def check_input(self, frames: int, height: int, width: int) -> None:
        """Raise VideoShapeError, saying what fits, unless a `frames x height x width` clip encodes."""
        tf, sf = self.config.temporal_factor, self.config.spatial_factor
        if frames < 1:
            raise VideoShapeError(f"a clip needs at least 1 frame, got {frames}")
        if (frames - 1) % tf:
            lo = 1 + (frames - 1) // tf * tf
            raise VideoShapeError(
                f"{frames} frames do not fit 1 + k*{tf} (the first frame alone, then groups of {tf}); "
                f"use {lo} or {lo + tf}"
            )
        for name, side in (("height", height), ("width", width)):
            if side < sf or side % sf:
                lo = max(side // sf * sf, sf)
                fits = f"{lo}" if lo >= side else f"{lo} or {lo + sf}"
                raise VideoShapeError(
                    f"{name} {side} is not a multiple of the spatial factor {sf}; use {fits}"
                )

    def latent_shape(self, frames: int, height: int, width: int) -> tuple[int, int, int]:
        """(t, h, w) of the ids of a `frames x height x width` clip."""
        self.check_input(frames, height, width)
        tf, sf = self.config.temporal_factor, self.config.spatial_factor
        return 1 + (frames - 1) // tf, height // sf, width // sf

    def _check_video(self, x: torch.Tensor) -> None:
        if x.ndim != 5 or x.shape[1] != 3:
            raise VideoShapeError(f"expected a [B, 3, T, H, W] clip, got shape {tuple(x.shape)}")
        self.check_input(*x.shape[2:])

    def _check_ids(self, ids: torch.Tensor) -> None:
        if ids.ndim != 4:
            raise VideoShapeError(f"expected ids of shape [B, t, h, w], got {tuple(ids.shape)}")
        if ids.dtype.is_floating_point or ids.dtype == torch.bool:
            raise VideoShapeError(f"ids must be integers, got {ids.dtype}")
        if ids.numel() and (int(ids.min()) < 0 or int(ids.max()) >= self.config.codebook_size):
            raise VideoShapeError(
                f"video ids must be in [0, {self.config.codebook_size}) for {self.config.bits} bits, "
                f"got [{int(ids.min())}, {int(ids.max())}]"
            )

    @property
    def last_layer(self) -> torch.Tensor:
        """The decoder's last weight, where the adversarial loss's adaptive weight is measured."""
        return self.decoder.conv_out.conv.weight

    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters())

    # --- training -------------------------------------------------------------------------------

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, LFQOutput]:
        """Reconstruct `[B, 3, T, H, W]` clips in [-1, 1]; the reconstruction is unclamped (for the
        losses) and the quantizer output carries ids, LFQ losses and usage."""
        self._check_video(x)
        quant = self.quantizer(self.encoder(x))
        return self.decoder(quant.quantized), quant

    # --- encode / decode ------------------------------------------------------------------------

    def _encode_stream(self, chunks: Iterable[torch.Tensor]) -> torch.Tensor:
        cache: Cache = {}
        ids = [self.quantizer.codes_to_ids(self.encoder(chunk, cache)) for chunk in chunks]
        return torch.cat(ids, dim=1)

    def _chunking(self, chunk_frames: int | None, total: int) -> tuple[int, int]:
        """(first, step) frame counts of chunks: the first frame plus `step`, then `step` each."""
        tf = self.config.temporal_factor
        if chunk_frames is None:
            return total, total
        if chunk_frames < tf:
            raise VideoShapeError(
                f"chunk_frames must be at least the temporal factor {tf}, got {chunk_frames}"
            )
        step = chunk_frames // tf * tf
        return 1 + step, step

    @torch.no_grad()
    def encode(self, x: torch.Tensor, chunk_frames: int | None = None) -> torch.Tensor:
        """Ids `[B, t, h, w]` (int64) of `[B, 3, T, H, W]` clips in [-1, 1].

        `chunk_frames` bounds memory: the clip goes through the encoder the first frame plus
        `chunk_frames` (rounded down to a multiple of the temporal factor) at a time, carrying the causal
        convolutions' past, and the ids equal those of the whole clip."""
        self._check_video(x)
        first, step = self._chunking(chunk_frames, x.shape[2])
        return self._encode_stream(x[:, :, a:b] for a, b in _frame_bounds(x.shape[2], first, step))

    @torch.no_grad()
    def decode_codes(self, codes: torch.Tensor, chunk_frames: int | None = None) -> torch.Tensor:
        """`[B, K, t, h, w]` codes -> clips `[B, 3, T, H, W]` clamped to [-1, 1], in chunks of about
        `chunk_frames` output frames when given (same result as one pass)."""
        t = codes.shape[2]
        first, step = self._chunking(chunk_frames, t)
        if chunk_frames is not None:  # the same chunks in latent frames
            step //= self.config.temporal_factor
            first = 1 + step
        cache: Cache = {}
        out = [self.decoder(codes[:, :, a:b], cache) for a, b in _frame_bounds(t, first, step)]
        return torch.cat(out, dim=2).clamp_(-1, 1)

    @torch.no_grad()
    def decode_ids(self, ids: torch.Tensor, chunk_frames: int | None = None) -> torch.Tensor:
        """Ids `[B, t, h, w]` -> clips `[B, 3, 1 + (t-1)*tf, h*sf, w*sf]` in [-1, 1]."""
        self._check_ids(ids)
        dtype = next(self.decoder.parameters()).dtype
        return self.decode_codes(self.quantizer.ids_to_codes(ids.to(self.device), dtype=dtype), chunk_frames)

    @property
    def device(self) -> torch.device:
        return next(self.parameters()).device

    # ---- the MediaTokenizer interface (tokenizers/base.py) ----

    modality = "video"

    def encode_media(self, batch: np.ndarray) -> np.ndarray:
        """uint8 clips `[B, T, H, W, 3]` -> int64 ids `[B, t, h, w]`."""
        return self.encode_frames(batch).numpy()

    def decode_media(self, ids: np.ndarray, length: int | None = None) -> np.ndarray:
        """ids `[B, t, h, w]` -> uint8 clips `[B, T, H, W, 3]` (`length` is for sound; clips have one)."""
        return self.decode_to_frames(ids).numpy()

    def ids_shape(self, media_shape: tuple[int, ...]) -> tuple[int, ...]:
        """`(T, H, W, 3)` frames -> `(t, h, w)` ids."""
        return self.latent_shape(*media_shape[:3])

    def vocab_share(self) -> dict[str, int]:
        return {"video_bits": self.config.bits}

    def geometry(self) -> dict[str, float]:
        return {"frames": self.config.frames, "height": self.config.height, "width": self.config.width}

    @torch.no_grad()
    def encode_frames(
        self, frames: torch.Tensor | np.ndarray, chunk_frames: int | None = None
    ) -> torch.Tensor:
        """uint8 RGB frames `[B, T, H, W, 3]` or `[T, H, W, 3]` -> int64 ids `[B, t, h, w]` or `[t, h, w]`
        (on the CPU). Frames are converted to [-1, 1] one chunk at a time, so long videos stay bounded."""
        frames = torch.from_numpy(np.ascontiguousarray(frames)) if isinstance(frames, np.ndarray) else frames
        single = frames.ndim == 4
        if single:
            frames = frames[None]
        if frames.ndim != 5 or frames.shape[-1] != 3 or frames.dtype != torch.uint8:
            raise VideoShapeError(
                f"expected uint8 RGB frames [B, T, H, W, 3] or [T, H, W, 3], got {frames.dtype} {tuple(frames.shape)}"
            )
        total = frames.shape[1]
        self.check_input(total, frames.shape[2], frames.shape[3])
        first, step = self._chunking(chunk_frames, total)
        dtype = next(self.encoder.parameters()).dtype
        chunks = (
            (frames[:, a:b].to(self.device).permute(0, 4, 1, 2, 3).to(dtype) / 127.5 - 1)
            for a, b in _frame_bounds(total, first, step)
        )
        ids = self._encode_stream(chunks).cpu()
        return ids[0] if single else ids

    @torch.no_grad()
    def decode_to_frames(
        self, ids: torch.Tensor | np.ndarray, chunk_frames: int | None = None
    ) -> torch.Tensor:
        """Ids `[B, t, h, w]` or `[t, h, w]` -> uint8 RGB frames `[B, T, H, W, 3]` or `[T, H, W, 3]` (CPU)."""
        ids = torch.from_numpy(np.ascontiguousarray(ids)) if isinstance(ids, np.ndarray) else ids
        single = ids.ndim == 3
        video = self.decode_ids(ids[None] if single else ids, chunk_frames)
        frames = ((video.float() + 1) * 127.5).round_().clamp_(0, 255).to(torch.uint8)
        frames = frames.permute(0, 2, 3, 4, 1).cpu()
        return frames[0] if single else frames
