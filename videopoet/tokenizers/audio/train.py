"""Training of the audio tokenizer: config section `audio_tokenizer`, audio sources, and the solver that the
shared loop (`videopoet.tokenizers.trainer.train_tokenizer`) runs.

Generator loss = mel_weight * multi-scale mel L1 (from step `mel_start` on) + waveform_l1_weight * waveform
L1 + RVQ commitment (the model's `commitment_weight`) and, from step `disc_start` on, gan_weight * hinge
adversarial loss of the multi-scale STFT discriminator + feature_matching_weight * its relative feature
matching. The discriminator trains with the hinge loss from `disc_start` on (before that it is skipped).

Schedule (each a step of `loss`): until `quantizer_start` the codec trains as a plain autoencoder (the RVQ
is skipped), so the quantizer's k-means initialisation at `quantizer_start` clusters latents that already
describe the audio. From random weights the latents are tiny and nearly the same for every input; codebooks
fitted to them, with the commitment loss holding the latents at the codes, kept the tiny codec from ever
encoding the lower tones of `shapes`. Until `mel_start` only the waveform L1 teaches reconstruction: from
random weights the log-mel term has an input-independent minimum (a quiet, spectrally clean buzz; with
a low `mel_log_eps` a 20 dB-SNR reconstruction of a pure tone scores about as badly as silence) that it
reaches before the waveform loss can teach anything. Once the codec reconstructs, the mel term only refines.

Data (`make_audio_source`): `shapes` (tones rendered on the fly), a folder of audio/video files (their
audio tracks, random crops), or a clip index folder from `videopoet data ingest` (rows with audio).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch
from torch import nn

from videopoet.errors import UserError
from videopoet.tokenizers.adversarial import hinge_d_loss, hinge_g_loss
from videopoet.tokenizers.audio.discriminator import (
    MultiScaleSTFTDiscriminator,
    STFTDiscriminatorConfig,
    feature_matching_loss,
)
from videopoet.tokenizers.audio.losses import MultiScaleMelLoss, waveform_l1
from videopoet.tokenizers.audio.model import AudioTokenizer, AudioTokenizerConfig
from videopoet.tokenizers.audio.rvq import codebook_usage
from videopoet.tokenizers.checkpoint import tokenizer_folder_config
from videopoet.tokenizers.trainer import TrainConfig, train_tokenizer

VALIDATION_SEED = 1234  # fixed, so validation clips are the same in every run
PITCH_TOLERANCE = 0.02  # a reconstruction keeps the tone's pitch when within 2%


@dataclass
class AudioLossConfig:
    """Weights of the audio tokenizer's training losses (the commitment weight is the model's own,
    `model.commitment_weight`, since the model computes that loss)."""

    mel_weight: float = 1.0
    mel_windows: tuple[int, ...] = (64, 128, 256, 512, 1024, 2048)  # multi-scale mel window sizes
    waveform_l1_weight: float = 0.1
    gan_weight: float = 1.0  # 0 turns the adversarial losses and the discriminator off
    feature_matching_weight: float = 3.0
    disc_start: int = 2000  # step at which the adversarial losses switch on
    mel_start: int = 0  # step at which the mel loss switches on (before: waveform L1 alone)
    mel_log_eps: float = 1e-5  # floor added to the mel magnitudes before the log (of the log-mel term)
    quantizer_start: int = 0  # steps of plain-autoencoder warm-up before the RVQ initialises and switches on
    # (at the latest on the run's last step, so the saved codec always has initialised codebooks)

    def __post_init__(self) -> None:
        self.mel_windows = tuple(self.mel_windows)
        weights = ("mel_weight", "waveform_l1_weight", "gan_weight", "feature_matching_weight")
        bad = [w for w in weights if getattr(self, w) < 0]
        if bad:
            raise ValueError(f"loss weights must be non-negative: {', '.join(bad)}")
        if self.mel_weight == 0 and self.waveform_l1_weight == 0:
            raise ValueError("mel_weight and waveform_l1_weight are both 0: nothing would teach reconstruction")
        for name in ("disc_start", "mel_start", "quantizer_start"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)}")
        if self.mel_start > 0 and self.waveform_l1_weight == 0:
            raise ValueError("mel_start > 0 needs waveform_l1_weight > 0: nothing would teach reconstruction before it")
        if not self.mel_log_eps > 0:
            raise ValueError(f"mel_log_eps must be positive, got {self.mel_log_eps}")
        if not self.mel_windows or min(self.mel_windows) < 16:
            raise ValueError(f"mel_windows must be window sizes >= 16, got {list(self.mel_windows)}")

    @property
    def adversarial(self) -> bool:
        return self.gan_weight > 0 or self.feature_matching_weight > 0


@dataclass
class AudioTokenizerTrainingConfig:
    """Project config section `audio_tokenizer`: model, discriminator, losses, loop, data crops, validation."""

    model: AudioTokenizerConfig = field(default_factory=AudioTokenizerConfig)
    discriminator: STFTDiscriminatorConfig = field(default_factory=STFTDiscriminatorConfig)
    loss: AudioLossConfig = field(default_factory=AudioLossConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    segment_seconds: float = 1.0  # length of the random training crops
    val_clips: int = 8  # held-out clips scored at every validation
    val_seconds: float = 2.125  # length of each validation clip (one VideoPoet clip)

    def __post_init__(self) -> None:
        if self.val_clips < 1:
            raise ValueError(f"val_clips must be at least 1, got {self.val_clips}")
        hop_s = self.model.hop / self.model.sample_rate
        for name in ("segment_seconds", "val_seconds"):
            if not getattr(self, name) >= hop_s:
                raise ValueError(f"{name} must be at least one latent frame ({hop_s:g} s), got {getattr(self, name)}")

    @property
    def segment_samples(self) -> int:
        return round(self.segment_seconds * self.model.sample_rate)

    @property
    def val_samples(self) -> int:
        return round(self.val_seconds * self.model.sample_rate)


# ---- data -------------------------------------------------------------------------------------------------


class AudioSource(Protocol):
    """Where training and validation audio comes from."""

    def sample(self, rng: np.random.Generator, batch_size: int) -> torch.Tensor:
        """float32 [B, 1, segment_samples] in [-1, 1]."""

    def validation(self, n: int) -> torch.Tensor:
        """n fixed held-out clips, float32 [n, 1, val_samples]."""


def _stack(wavs: list[np.ndarray]) -> torch.Tensor:
    return torch.from_numpy(np.stack(wavs).astype(np.float32))[:, None].clamp(-1, 1)


class ShapesSource:
    """Tones of the shapes dataset rendered on the fly: the pitch of a shape of TRAIN_COMBOS, random start
    phase and amplitude (0.1-0.9), so the codec learns the tones rather than one waveform; validation is
    held-out clips of HELDOUT_COMBOS at their exact rendering (amplitude 0.5, fades), whose pitch is known."""

    def __init__(self, sample_rate: int, segment_samples: int, val_samples: int) -> None:
        from videopoet.data.synthetic import HELDOUT_COMBOS, TRAIN_COMBOS

        self.sr, self.segment, self.val_samples = sample_rate, segment_samples, val_samples
        self.train_shapes = sorted({c[1] for c in TRAIN_COMBOS})
        self.val_shapes = [c[1] for c in HELDOUT_COMBOS] or self.train_shapes

    def sample(self, rng: np.random.Generator, batch_size: int) -> torch.Tensor:
        from videopoet.data.synthetic import PITCH_HZ

        t = np.arange(self.segment) / self.sr
        wavs = []
        for _ in range(batch_size):
            shape = self.train_shapes[int(rng.integers(len(self.train_shapes)))]
            amp, phase = rng.uniform(0.1, 0.9), rng.uniform(0, 2 * math.pi)
            wavs.append(amp * np.sin(2 * math.pi * PITCH_HZ[shape] * t + phase))
        return _stack(wavs)

    def val_pitches(self, n: int) -> list[float]:
        from videopoet.data.synthetic import PITCH_HZ

        return [PITCH_HZ[self.val_shapes[i % len(self.val_shapes)]] for i in range(n)]

    def validation(self, n: int) -> torch.Tensor:
        from videopoet.data.synthetic import ShapesConfig, render_audio

        cfg = ShapesConfig(sample_rate=self.sr, frames=max(2, math.ceil(self.val_samples / self.sr * 8)))
        wavs = [render_audio(self.val_shapes[i % len(self.val_shapes)], cfg)[: self.val_samples] for i in range(n)]
        return _stack([np.pad(w, (0, self.val_samples - w.size)) for w in wavs])


@dataclass
class _Span:
    """A stretch of one file's audio crops can start in: [start_s, last_start_s]."""

    path: str
    start_s: float
    last_start_s: float


class MediaAudioSource:
    """Random crops of the audio tracks of media files (read with `read_audio`: down-mixed, resampled,
    padded with silence past the end)."""

    def __init__(self, train: list[_Span], val: list[_Span], sample_rate: int, segment: int, val_samples: int) -> None:
        self.train, self.val = train, val
        self.sr, self.segment, self.val_samples = sample_rate, segment, val_samples

    def _read(self, span: _Span, start_s: float, n: int) -> np.ndarray:
        from videopoet.data.io import read_audio

        return read_audio(span.path, start_s, n / self.sr, self.sr, pad=True)

    def sample(self, rng: np.random.Generator, batch_size: int) -> torch.Tensor:
        wavs = []
        for i in rng.integers(len(self.train), size=batch_size):
            span = self.train[i]
            wavs.append(self._read(span, float(rng.uniform(span.start_s, span.last_start_s)), self.segment))
        return _stack(wavs)

    def validation(self, n: int) -> torch.Tensor:
        spans, rounds = self.val, math.ceil(n / len(self.val))
        wavs = []
        for i in range(n):  # n fixed clips: spread over the spans, then over each span's length
            span, k = spans[i % len(spans)], i // len(spans)
            frac = k / (rounds - 1) if rounds > 1 else 0.0
            wavs.append(self._read(span, span.start_s + (span.last_start_s - span.start_s) * frac, self.val_samples))
        return _stack(wavs)


def _folder_spans(root: Path, seconds: float) -> tuple[list[_Span], list[str]]:
    from videopoet.data.ingest import AUDIO_EXTENSIONS, VIDEO_EXTENSIONS
    from videopoet.data.io import MediaError, probe

    exts = set(AUDIO_EXTENSIONS) | set(VIDEO_EXTENSIONS)
    files = [root] if root.is_file() else sorted(p for p in root.rglob("*") if p.suffix.lower() in exts)
    spans, skipped = [], []
    for path in files:
        try:
            info = probe(path)
        except MediaError as e:
            skipped.append(f"{path.name}: {e}")
            continue
        if not info.audio:
            skipped.append(f"{path.name}: no audio stream")
            continue
        duration = info.audio[0].duration_s or info.duration_s
        if not duration or duration <= 0:
            skipped.append(f"{path.name}: unknown or zero duration")
            continue
        spans.append(_Span(str(path), 0.0, max(0.0, duration - seconds)))
    return spans, skipped


def _index_spans(root: Path) -> tuple[list[_Span], list[_Span]]:
    from videopoet.data.ingest import load_clip_index

    train, val = [], []
    for row in load_clip_index(root):
        if not row.get("has_audio"):
            continue
        span = _Span(row["source"], float(row["start_s"]), float(row["start_s"]))
        (train if row.get("split") in (None, "train") else val).append(span)
    return train, val


def make_audio_source(src: str | Path, config: AudioTokenizerTrainingConfig) -> AudioSource:
    """The audio source `src` names: `shapes`, a clip index folder (from `videopoet data ingest`), or a
    folder of audio/video files (or one file). Raises UserError for a missing, empty or unusable source."""
    sr, seg, val = config.model.sample_rate, config.segment_samples, config.val_samples
    if str(src) == "shapes":
        return ShapesSource(sr, seg, val)
    root = Path(src)
    if not root.exists():
        raise UserError(f"training data not found: {src} (give `shapes`, a media folder or a clip index)")
    from videopoet.data.ingest import CLIPS

    if (root / CLIPS).is_dir():
        train, val_spans = _index_spans(root)
        if not train and not val_spans:
            raise UserError(f"clip index {root} holds no clips with audio")
        train = train or val_spans
        return MediaAudioSource(train, val_spans or train, sr, seg, val)
    spans, skipped = _folder_spans(root, config.segment_seconds)
    if not spans:
        why = f" (skipped: {'; '.join(skipped[:3])}{' ...' if len(skipped) > 3 else ''})" if skipped else ""
        raise UserError(f"no usable audio in {root}: no audio or video file with an audio stream{why}")
    return MediaAudioSource(spans, spans, sr, seg, val)


# ---- solver -----------------------------------------------------------------------------------------------


class AudioSolver:
    """The audio tokenizer's side of the shared training loop (see the module docstring for the losses)."""

    def __init__(self, config: AudioTokenizerTrainingConfig, source: AudioSource) -> None:
        self.config, self.source = config, source
        self.model = AudioTokenizer(config.model)
        self.discriminator: nn.Module | None = (
            MultiScaleSTFTDiscriminator(config.discriminator) if config.loss.adversarial else None
        )
        self.mel_loss = MultiScaleMelLoss(config.model.sample_rate, config.loss.mel_windows, eps=config.loss.mel_log_eps)
        self._val: torch.Tensor | None = None

    def folder_config(self) -> dict[str, Any]:
        return tokenizer_folder_config("audio", self.config.model, training=self.config)

    def sample_batch(self, rng: np.random.Generator) -> torch.Tensor:
        return self.source.sample(rng, self.config.train.batch_size)

    def gan_on(self, step: int) -> bool:
        """Whether the adversarial losses (and the discriminator's training) are on at `step`."""
        return self.discriminator is not None and step >= self.config.loss.disc_start

    def quantizer_on(self, step: int) -> bool:
        """Whether the RVQ is used at `step`: before `loss.quantizer_start` the codec is a plain autoencoder.
        The last step always quantizes, so a run shorter than the warm-up still saves initialised codebooks."""
        return step >= min(self.config.loss.quantizer_start, self.config.train.steps - 1)

    def mel_on(self, step: int) -> bool:
        """Whether the mel loss is on at `step`."""
        lc = self.config.loss
        return lc.mel_weight > 0 and step >= lc.mel_start

    def _reconstruction_loss(self, recon: torch.Tensor, wav: torch.Tensor, step: int) -> tuple[torch.Tensor, dict[str, float]]:
        lc = self.config.loss
        l1 = waveform_l1(recon, wav)
        rec, logs = lc.waveform_l1_weight * l1, {"wave_l1": l1.item()}
        if self.mel_on(step):
            mel = self.mel_loss.to(wav.device)(recon, wav)
            rec = rec + lc.mel_weight * mel
            logs["mel"] = mel.item()
        return rec, logs

    def generator_loss(self, batch: torch.Tensor, step: int) -> tuple[torch.Tensor, dict[str, float], Any]:
        recon, out = self.model(batch, quantize=self.quantizer_on(step))
        rec, logs = self._reconstruction_loss(recon, batch, step)
        loss = rec + out.commitment_loss
        logs.update(rec=rec.item(), commitment=out.commitment_loss.item())
        for k, v in out.stats.items():
            if v.numel() == 1:
                logs[f"rvq/{k}"] = float(v)
        if self.gan_on(step):
            lc = self.config.loss
            fake_logits, fake_feats = self.discriminator(recon)
            with torch.no_grad():
                _, real_feats = self.discriminator(batch)
            adv = torch.stack([hinge_g_loss(lg) for lg in fake_logits]).mean()
            fm = feature_matching_loss(real_feats, fake_feats)
            loss = loss + lc.gan_weight * adv + lc.feature_matching_weight * fm
            logs.update(g_adv=adv.item(), feat_match=fm.item())
        logs["loss"] = loss.item()
        return loss, logs, recon.detach()

    def discriminator_loss(self, batch: torch.Tensor, aux: Any, step: int) -> tuple[torch.Tensor, dict[str, float]] | None:
        if not self.gan_on(step):
            return None
        real_logits, _ = self.discriminator(batch)
        fake_logits, _ = self.discriminator(aux)
        d = torch.stack([hinge_d_loss(r, f) for r, f in zip(real_logits, fake_logits)]).mean()
        return d, {"d_loss": d.item()}

    def validation_clips(self) -> torch.Tensor:
        if self._val is None:
            self._val = self.source.validation(self.config.val_clips)
        return self._val

    @torch.no_grad()
    def reconstruct(self, model: nn.Module, wav: torch.Tensor) -> tuple[torch.Tensor | None, torch.Tensor]:
        """(codes [B, L, F], reconstruction [B, 1, N]) of wav [B, 1, N] with every RVQ level; during the
        quantizer warm-up (codebooks not initialised yet) (None, the plain autoencoder's reconstruction)."""
        model.eval()
        wav = wav.to(model.device)
        if not bool(model.quantizer.initialized):
            return None, model(wav, quantize=False)[0].clamp(-1, 1)
        codes = model.encode(wav)
        return codes, model.decode(codes, wav.shape[-1]).clamp(-1, 1)

    def evaluate(self, model: nn.Module) -> dict[str, float]:
        from videopoet.eval.audio_metrics import mel_distance, si_sdr

        wav = self.validation_clips()
        codes, recon = self.reconstruct(model, wav)
        ref, est = wav[:, 0].cpu().numpy(), recon[:, 0].float().cpu().numpy()
        sr = self.config.model.sample_rate
        metrics = {
            "si_sdr": float(np.mean([si_sdr(r, e) for r, e in zip(ref, est)])),
            "mel_distance": float(np.mean([mel_distance(r, e, sr) for r, e in zip(ref, est)])),
        }
        metrics["quantized"] = float(codes is not None)  # 0 during the quantizer warm-up (plain autoencoder)
        if codes is not None:
            for level, u in enumerate(codebook_usage(codes.cpu(), self.config.model.codebook_size)):
                metrics[f"usage_l{level}"] = u["fraction_used"]
                metrics[f"perplexity_l{level}"] = u["perplexity"]
        if isinstance(self.source, ShapesSource):
            metrics["pitch_ok"] = pitch_accuracy(est, self.source.val_pitches(len(est)), sr)
        return metrics

    def write_samples(self, writer: Any, model: nn.Module, step: int, max_clips: int = 2) -> None:
        wav = self.validation_clips()[:max_clips]
        _, recon = self.reconstruct(model, wav)
        sr = self.config.model.sample_rate
        for i in range(wav.shape[0]):
            writer.add_audio(f"samples/{i}/original", wav[i].cpu(), step, sample_rate=sr)
            writer.add_audio(f"samples/{i}/reconstruction", recon[i].float().cpu(), step, sample_rate=sr)


def pitch_error(wav: np.ndarray, pitch_hz: float, sample_rate: int) -> float:
    """Relative error of the dominant pitch of `wav` against `pitch_hz` (inf when silent)."""
    from videopoet.eval.shapes import read_audio_pitch

    found = read_audio_pitch(wav, sample_rate)
    return math.inf if found is None else abs(found - pitch_hz) / pitch_hz


def pitch_accuracy(wavs: np.ndarray, pitches: list[float], sample_rate: int) -> float:
    """Share of clips whose dominant pitch is within 2% of the expected one."""
    ok = [pitch_error(w, p, sample_rate) <= PITCH_TOLERANCE for w, p in zip(wavs, pitches)]
    return float(np.mean(ok)) if ok else 0.0


def train_audio_tokenizer(
    config: AudioTokenizerTrainingConfig, data: str | Path, out: str | Path, resume: bool = False
) -> dict[str, Any]:
    """Train the audio tokenizer on `data` (`shapes`, a media folder or a clip index) into the folder `out`
    (checkpoints, TensorBoard, and the loadable tokenizer: config.json + model.safetensors)."""
    source = make_audio_source(data, config)
    solver = AudioSolver(config, source)
    return train_tokenizer(solver, config.train, out, resume)
