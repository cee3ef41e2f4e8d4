"""SoundStream-style audio codec: 1D conv encoder, residual VQ, transposed-conv decoder.

Waveform `[B, 1, N]` float32 mono in [-1, 1] -> latents `[B, D, F]` at `sample_rate / hop` frames per
second (hop = product of the strides; 320 at 16 kHz = 50 frames/s) -> codes `[B, levels, F]` -> back.

Frame rule (explicit, VideoPoet's): `frames_for(N) = N // hop`. The codes cover the first `F * hop`
samples; a remainder shorter than one hop is not encoded (a 2.125 s clip at 16 kHz, 34000 samples, gives
106 frames = 33920 samples, dropping the last 5 ms). Internally the input is zero-padded to a whole
number of hops, so a non-causal encoder still sees the remainder as right context of the last frame.
`decode` gives `F * hop` samples, or exactly `num_samples` (zero-padded or trimmed) when asked.
`forward` (training) pads and trims so the reconstruction has exactly the input's length.

Causal option: every convolution pads on the left only and transposed convolutions trim on the right,
so frame f depends only on samples before `(f + 1) * hop` and the codec can stream. Long inputs are
encoded in chunks with enough context on each side (left only when causal) to cover the encoder's
receptive field, so `encode_long` gives the same codes as one whole-input pass, in bounded memory.

Input rules: NaN or infinite samples raise `AudioInputError`; samples beyond +-1 are clamped; silence is
fine; stereo is rejected here (down-mixing is the I/O layer's job: `videopoet.media.read_audio`
averages the channels), as are integer PCM samples.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from typing import Any, Literal

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils import parametrize

from videopoet.errors import UserError
from videopoet.tokenizers.audio.layers import Decoder, Encoder, context_span, fan_in_init
from videopoet.tokenizers.audio.rvq import ResidualVQ, RVQConfig

SAMPLE_RATES = (16000, 24000)


class AudioInputError(UserError):
    """Audio the codec cannot take: NaN/inf samples, stereo, integer samples, wrong shape, too short."""


@dataclass
class AudioTokenizerConfig:
    """Shape of the codec and of its quantizer. Defaults are the `videopoet` preset."""

    sample_rate: int = 16000
    strides: tuple[int, ...] = (2, 4, 5, 8)  # encoder downsampling; hop = product (320 -> 50 frames/s)
    channels: int = 32  # width of the first conv; doubled at each downsampling
    latent_dim: int = 128  # D: size of each latent frame (the RVQ vector size)
    levels: int = 4  # RVQ levels L
    codebook_size: int = 1024  # codes per level C
    causal: bool = True  # left-only padding: streams, and chunked encoding is exact
    kernel_size: int = 7  # first/last conv and residual-unit kernels
    dilations: tuple[int, ...] = (1, 3, 9)  # one residual unit per dilation in every block
    weight_norm: bool = True  # weight normalization on every conv (stabilises adversarial training)
    # conv weight init: "torch" (PyTorch's default, ~1/sqrt(3 fan_in): each conv shrinks the signal, so a fresh
    # codec outputs near silence and sits on a plateau before it learns), or "fan_in" (normal, std
    # 1/sqrt(fan_in), zero bias: the signal keeps its scale through the stack and real speech trains at once)
    init: Literal["torch", "fan_in"] = "torch"
    # RVQ
    ema_decay: float = 0.99
    dead_code_threshold: float = 1.0  # restart codes used by fewer than this many vectors per batch (EMA)
    quantizer_dropout: float = 0.5  # probability that a training sample uses a random 1..L levels
    commitment_weight: float = 1.0
    kmeans_iters: int = 10

    def __post_init__(self) -> None:
        self.strides = tuple(self.strides)
        self.dilations = tuple(self.dilations)
        if self.sample_rate not in SAMPLE_RATES:
            raise ValueError(f"sample_rate must be one of {SAMPLE_RATES}, got {self.sample_rate}")
        if not self.strides or any(int(s) != s or s < 1 for s in self.strides):
            raise ValueError(f"strides must be a non-empty list of integers >= 1, got {list(self.strides)}")
        if not self.dilations or any(int(d) != d or d < 1 for d in self.dilations):
            raise ValueError(
                f"dilations must be a non-empty list of integers >= 1, got {list(self.dilations)}"
            )
        if self.channels < 1 or self.latent_dim < 1:
            raise ValueError(
                f"channels and latent_dim must be at least 1, got {self.channels}, {self.latent_dim}"
            )
        if self.kernel_size < 1 or self.kernel_size % 2 == 0:
            raise ValueError(f"kernel_size must be odd and positive, got {self.kernel_size}")
        if self.commitment_weight < 0:
            raise ValueError(f"commitment_weight must be >= 0, got {self.commitment_weight}")
        if self.init not in ("torch", "fan_in"):
            raise ValueError(f"init must be 'torch' or 'fan_in', got {self.init!r}")
        self.rvq_config()  # validates levels, codebook_size, ema_decay, thresholds

    def rvq_config(self) -> RVQConfig:
        return RVQConfig(
            dim=self.latent_dim,
            levels=self.levels,
            codebook_size=self.codebook_size,
            ema_decay=self.ema_decay,
            dead_code_threshold=self.dead_code_threshold,
            quantizer_dropout=self.quantizer_dropout,
            kmeans_iters=self.kmeans_iters,
        )

    @property
    def hop(self) -> int:
        """Samples per latent frame (the total stride)."""
        return math.prod(self.strides)

    @property
    def frame_rate(self) -> float:
        """Latent frames per second."""
        return self.sample_rate / self.hop

    @property
    def tokens_per_second(self) -> float:
        return self.frame_rate * self.levels

    def bitrate_kbps(self, n_levels: int | None = None) -> float:
        """Bitrate of the codes with the first `n_levels` levels (all by default)."""
        return self.frame_rate * (n_levels or self.levels) * math.log2(self.codebook_size) / 1000


PRESETS: dict[str, AudioTokenizerConfig] = {
    # CPU demo: 2 x 256 codes at 50 frames/s (0.8 kbps). Downsampling by 4 first (not 2) keeps little work
    # at the full sample rate, so encode + decode runs well above 50x real time on 2 CPU cores.
    "tiny": AudioTokenizerConfig(
        strides=(4, 4, 4, 5), channels=8, latent_dim=32, levels=2, codebook_size=256, causal=False
    ),
    # VideoPoet: SoundStream-size codec at 16 kHz, 4 x 1024 codes at 50 frames/s (2 kbps).
    "videopoet": AudioTokenizerConfig(),
}


def preset(name: str, **overrides: Any) -> AudioTokenizerConfig:
    """A preset config by name (`tiny`, `videopoet`), with fields replaced by `overrides`."""
    if name not in PRESETS:
        raise UserError(f"unknown audio tokenizer preset {name!r}; choose one of {', '.join(PRESETS)}")
    return replace(PRESETS[name], **overrides)


@dataclass
class CodecOutput:
    """Losses and statistics of a training forward pass."""

    commitment_loss: torch.Tensor  # scalar, already multiplied by config.commitment_weight
    codes: torch.Tensor  # [B, L, frames] int64 (frames of the padded input: ceil(N / hop))
    n_levels: torch.Tensor  # [B] levels each sample was reconstructed with (quantizer dropout)
    stats: dict[str, torch.Tensor] = field(default_factory=dict)  # detached scalars: usage, perplexity, ...


def check_waveform(wav: torch.Tensor) -> torch.Tensor:
    """Validate a batch `[B, 1, N]` of float mono audio; returns it as float32 clamped to [-1, 1]."""
    if not isinstance(wav, torch.Tensor):
        raise AudioInputError(f"expected a torch.Tensor waveform, got {type(wav).__name__}")
    if wav.dim() != 3:
        raise AudioInputError(f"expected audio shaped [batch, 1, samples], got shape {tuple(wav.shape)}")
    if wav.shape[1] != 1:
        raise AudioInputError(
            f"expected mono audio [batch, 1, samples], got {wav.shape[1]} channels; down-mix first "
            "(videopoet.media.read_audio averages channels, or use wav.mean(1, keepdim=True))"
        )
    if not wav.dtype.is_floating_point:
        raise AudioInputError(f"expected float samples in [-1, 1], got {wav.dtype} (scale integer PCM first)")
    if wav.shape[-1] == 0 or wav.shape[0] == 0:
        raise AudioInputError(f"empty audio batch, shape {tuple(wav.shape)}")
    finite = torch.isfinite(wav)
    if not bool(finite.all()):
        bad = int((~finite).sum())
        raise AudioInputError(
            f"audio contains {bad} NaN or infinite samples (of {wav.numel()}); fix the source audio"
        )
    return wav.float().clamp(-1.0, 1.0)


def _to_tensor(x, what: str) -> torch.Tensor:
    if isinstance(x, torch.Tensor):
        return x.detach()
    arr = np.asarray(x)
    if arr.dtype == object:
        raise AudioInputError(f"{what}: cannot read an array of objects (ragged lists?)")
    return torch.from_numpy(np.ascontiguousarray(arr))


class AudioTokenizer(nn.Module):
    """Encoder + residual VQ + decoder; see the module docstring for shapes, the frame rule and input rules."""

    def __init__(self, config: AudioTokenizerConfig) -> None:
        super().__init__()
        self.config = config
        self.encoder = Encoder(config)
        self.quantizer = ResidualVQ(config.rvq_config())
        self.decoder = Decoder(config)
        if config.init == "fan_in":
            fan_in_init(self)

    @property
    def hop(self) -> int:
        return self.config.hop

    @property
    def sample_rate(self) -> int:
        return self.config.sample_rate

    @property
    def device(self) -> torch.device:
        return self.quantizer.codebooks.device

    def frames_for(self, num_samples: int) -> int:
        """Latent frames (= codes per level) for `num_samples` samples: `num_samples // hop`."""
        return int(num_samples) // self.hop

    def samples_for(self, frames: int) -> int:
        """Samples that `frames` latent frames decode to: `frames * hop`."""
        return int(frames) * self.hop

    def encoder_context(self) -> int:
        """Samples of context on each side (left only when causal) that make a chunk's codes equal to the
        whole-input codes: the encoder's receptive field, rounded up to whole hops (an upper bound)."""
        span = context_span(self.encoder.layers, 1.0)
        return (math.ceil(span / self.hop) + 1) * self.hop

    def decoder_context(self) -> int:
        """Frames of context on each side (left only when causal) that make a chunk's decoded samples equal
        to the whole-input decoding (an upper bound of the decoder's receptive field)."""
        return math.ceil(context_span(self.decoder.layers, float(self.hop)) / self.hop) + 1

    def _pad_to_hop(self, wav: torch.Tensor) -> torch.Tensor:
        extra = -wav.shape[-1] % self.hop
        return F.pad(wav, (0, extra)) if extra else wav

    # ----- training -----

    def forward(
        self, wav: torch.Tensor, n_levels: int | None = None, quantize: bool = True
    ) -> tuple[torch.Tensor, CodecOutput]:
        """Reconstruct wav [B, 1, N] (any N >= 1): returns (recon [B, 1, N], losses and stats). In training
        mode the quantizer initialises, updates its codebooks and applies quantizer dropout.

        `quantize=False` skips the quantizer (a plain autoencoder: no codes, zero commitment loss, the
        codebooks untouched). Training starts that way (`loss.quantizer_start`) so that the quantizer's
        k-means initialisation sees latents that already describe the audio, not those of random weights."""
        wav = check_waveform(wav)
        n = wav.shape[-1]
        z = self.encoder(self._pad_to_hop(wav))
        if not quantize:
            B, _, frames = z.shape
            return self.decoder(z)[..., :n], CodecOutput(
                commitment_loss=z.new_zeros((), dtype=torch.float32),
                codes=torch.zeros(B, 0, frames, dtype=torch.long, device=z.device),
                n_levels=torch.zeros(B, dtype=torch.long, device=z.device),
            )
        q = self.quantizer(z, n_levels)
        recon = self.decoder(q.quantized)[..., :n]
        out = CodecOutput(
            commitment_loss=q.commitment_loss * self.config.commitment_weight,
            codes=q.codes,
            n_levels=q.n_levels,
            stats={"commitment": q.commitment_loss.detach(), **q.stats},
        )
        return recon, out

    # ----- inference (tensors) -----

    def _encode_padded(self, wav: torch.Tensor, n_levels: int | None) -> torch.Tensor:
        """Codes of every frame of wav [B, 1, k * hop]."""
        return self.quantizer.encode(self.encoder(wav), n_levels)

    @torch.no_grad()
    def latent_vectors(self, wav: torch.Tensor) -> torch.Tensor:
        """The encoder's latent vectors [B * frames, D] of wav [B, 1, N] (what the RVQ quantizes)."""
        z = self.encoder(self._pad_to_hop(check_waveform(wav)))
        return z.float().transpose(1, 2).reshape(-1, z.shape[1])

    def encode(self, wav: torch.Tensor, n_levels: int | None = None) -> torch.Tensor:
        """Codes [B, n_levels or L, N // hop] int64 of wav [B, 1, N]; never updates the codebooks."""
        wav = check_waveform(wav)
        frames = self.frames_for(wav.shape[-1])
        if frames == 0:
            raise AudioInputError(
                f"audio of {wav.shape[-1]} samples is shorter than one frame ({self.hop} samples)"
            )
        with parametrize.cached():
            return self._encode_padded(self._pad_to_hop(wav), n_levels)[..., :frames]

    @torch.no_grad()
    def decode(self, codes: torch.Tensor, num_samples: int | None = None) -> torch.Tensor:
        """Waveform [B, 1, frames * hop] (or `num_samples`, zero-padded or trimmed) from codes [B, L', frames];
        fewer levels than L decode at a lower bitrate. Not clamped (see `decode_to_waveforms`)."""
        with parametrize.cached():
            wav = self.decoder(self.quantizer.decode(codes))
        return wav if num_samples is None else _fit(wav, num_samples)

    # ----- inference (numpy-friendly API) -----

    def _as_batch(self, wavs, sample_rate: int | None) -> torch.Tensor:
        """float32 [B, 1, N] on the model's device from [N], [B, N], [B, 1, N] or a list of equal-length [N]."""
        if isinstance(wavs, (list, tuple)):
            items = [_to_tensor(w, "waveform") for w in wavs]
            if not items:
                raise AudioInputError("no waveforms given")
            for i, w in enumerate(items):
                if w.dim() != 1:
                    raise AudioInputError(
                        f"waveform {i} must be 1-D mono [samples], got shape {tuple(w.shape)}"
                    )
            lengths = {w.shape[0] for w in items}
            if len(lengths) > 1:
                raise AudioInputError(
                    f"waveforms in one batch must have equal length, got {sorted(lengths)}; encode them separately"
                )
            x = torch.stack(items)[:, None]
        else:
            x = _to_tensor(wavs, "waveform")
            if x.dim() == 1:
                x = x[None, None]
            elif x.dim() == 2:
                x = x[:, None]
        if x.dim() == 3 and x.dtype.is_floating_point:
            x = x.float()
        x = check_waveform(x)
        if sample_rate is not None and sample_rate != self.sample_rate:
            import torchaudio.functional as AF

            x = AF.resample(x, sample_rate, self.sample_rate)
        return x.to(self.device)

    # ---- the MediaTokenizer interface (tokenizers/base.py) ----

    modality = "audio"

    def encode_media(self, batch: np.ndarray) -> np.ndarray:
        """float32 waveforms `[B, N]` at the codec's rate -> int64 codes `[B, levels, N // hop]`."""
        return self.encode_waveforms(batch)

    def decode_media(self, ids: np.ndarray, length: int | None = None) -> np.ndarray:
        """codes `[B, levels, frames]` -> float32 waveforms `[B, length or frames * hop]`."""
        return self.decode_to_waveforms(ids, num_samples=length)

    def ids_shape(self, media_shape: tuple[int, ...]) -> tuple[int, ...]:
        """`(N,)` samples -> `(levels, N // hop)` codes."""
        return (self.config.levels, self.frames_for(media_shape[0]))

    def vocab_share(self) -> dict[str, int]:
        return {"audio_levels": self.config.levels, "audio_codebook_size": self.config.codebook_size}

    def geometry(self) -> dict[str, float]:
        return {"sample_rate": self.sample_rate, "frame_rate": self.config.frame_rate}

    @torch.inference_mode()
    def encode_waveforms(
        self, wavs, sample_rate: int | None = None, n_levels: int | None = None, batch_size: int = 16
    ) -> np.ndarray:
        """Codes int64 [B, levels, N // hop] of float waveforms given as [B, N] (numpy or torch), [N], or a
        list of equal-length 1-D arrays; `sample_rate` other than the codec's is resampled."""
        x = self._as_batch(wavs, sample_rate)
        return torch.cat(
            [self.encode(x[i : i + batch_size], n_levels).cpu() for i in range(0, x.shape[0], batch_size)]
        ).numpy()

    @torch.inference_mode()
    def decode_to_waveforms(self, codes, num_samples: int | None = None, batch_size: int = 16) -> np.ndarray:
        """float32 waveforms [B, N] clamped to [-1, 1] from codes [B, levels, frames] (or [levels, frames]
        for one clip); N = frames * hop unless `num_samples` is given."""
        c = _to_tensor(codes, "codes")
        if c.dim() == 2:
            c = c[None]
        c = self.quantizer.check_codes(c)
        out = [
            self.decode(c[i : i + batch_size].to(self.device), num_samples).clamp(-1, 1)[:, 0].float().cpu()
            for i in range(0, c.shape[0], batch_size)
        ]
        return torch.cat(out).numpy()

    @torch.inference_mode()
    def encode_long(
        self,
        wav,
        chunk_seconds: float = 30.0,
        n_levels: int | None = None,
        sample_rate: int | None = None,
        context_samples: int | None = None,
    ) -> np.ndarray:
        """Codes int64 [levels, N // hop] of one waveform [N] of any length, in chunks of `chunk_seconds`.

        Each chunk is encoded with `context_samples` of real audio around it (left only when causal;
        default: `encoder_context()`, which covers the receptive field), so the codes equal one
        whole-input `encode` up to floating-point ties, while memory stays bounded by the chunk. With less
        context (non-causal), only frames within the receptive field of a chunk edge can differ."""
        x = self._as_batch(wav, sample_rate)
        if x.shape[0] != 1:
            raise AudioInputError(f"encode_long takes one waveform [samples], got a batch of {x.shape[0]}")
        hop, frames = self.hop, self.frames_for(x.shape[-1])
        if frames == 0:
            raise AudioInputError(f"audio of {x.shape[-1]} samples is shorter than one frame ({hop} samples)")
        if chunk_seconds <= 0:
            raise ValueError(f"chunk_seconds must be positive, got {chunk_seconds}")
        x = self._pad_to_hop(x)
        total = x.shape[-1] // hop
        chunk = max(1, round(chunk_seconds * self.sample_rate / hop))
        ctx = math.ceil((self.encoder_context() if context_samples is None else context_samples) / hop)
        right = 0 if self.config.causal else ctx
        pieces = []
        with parametrize.cached():
            for a in range(0, frames, chunk):
                b = min(frames, a + chunk)
                w0, w1 = max(0, a - ctx), min(total, b + right)
                codes = self._encode_padded(x[..., w0 * hop : w1 * hop], n_levels)
                pieces.append(codes[0, :, a - w0 : b - w0].cpu())
        return torch.cat(pieces, dim=-1).numpy()

    @torch.inference_mode()
    def decode_long(self, codes, chunk_seconds: float = 30.0, num_samples: int | None = None) -> np.ndarray:
        """float32 waveform [N] clamped to [-1, 1] from codes [levels, frames] of any length, decoded in chunks
        with `decoder_context()` frames of context (left only when causal): equal to one whole `decode`
        up to floating-point rounding, in bounded memory."""
        c = _to_tensor(codes, "codes")
        if c.dim() != 2:
            raise AudioInputError(f"decode_long takes codes [levels, frames], got shape {tuple(c.shape)}")
        c = self.quantizer.check_codes(c[None]).to(self.device)
        frames = c.shape[-1]
        chunk = max(1, round(chunk_seconds * self.sample_rate / self.hop))
        ctx = self.decoder_context()
        right = 0 if self.config.causal else ctx
        pieces = []
        with parametrize.cached():
            for a in range(0, frames, chunk):
                b = min(frames, a + chunk)
                w0, w1 = max(0, a - ctx), min(frames, b + right)
                wav = self.decode(c[..., w0:w1])
                pieces.append(wav[0, 0, (a - w0) * self.hop : (b - w0) * self.hop].clamp(-1, 1).float().cpu())
        out = torch.cat(pieces)
        return (out if num_samples is None else _fit(out, num_samples)).numpy()


def _fit(wav: torch.Tensor, num_samples: int) -> torch.Tensor:
    """Trim or zero-pad the last axis to `num_samples`."""
    n = wav.shape[-1]
    return wav[..., :num_samples] if n >= num_samples else F.pad(wav, (0, num_samples - n))
