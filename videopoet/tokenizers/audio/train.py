"""Training of the audio tokenizer: config section `audio_tokenizer`, audio sources, and the solver that the
shared loop (`videopoet.tokenizers.trainer.train_tokenizer`) runs.

Generator loss = mel_weight * multi-scale mel L1 (from step `mel_start` on) + waveform_l1_weight * waveform
L1 + waveform_nmse_weight * waveform MSE over the signal's power + RVQ commitment (the model's
`commitment_weight`) and, from step `disc_start` on, gan_weight * hinge
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

Data comes from a `TrainingSource` of waveforms (`videopoet.data.sources`); a source that knows more about
its validation clips (the shapes' tones know their pitch) adds its own `validation_scores`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch
from torch import nn

from videopoet.tokenizers.adversarial import hinge_d_loss, hinge_g_loss
from videopoet.tokenizers.audio.discriminator import (
    MultiScaleSTFTDiscriminator,
    STFTDiscriminatorConfig,
    feature_matching_loss,
)
from videopoet.tokenizers.audio.losses import MultiScaleMelLoss, waveform_l1, waveform_nmse
from videopoet.tokenizers.audio.model import AudioTokenizer, AudioTokenizerConfig
from videopoet.tokenizers.audio.rvq import codebook_usage
from videopoet.tokenizers.trainer import FamilyTrainingConfig, SolverBase, TrainingSource, train_tokenizer


@dataclass
class AudioLossConfig:
    """Weights of the audio tokenizer's training losses (the commitment weight is the model's own,
    `model.commitment_weight`, since the model computes that loss)."""

    # steps before which part of a step is skipped (the mel loss, the RVQ): time budgets
    # (`videopoet.tokenizers.budget`) time the steps after them, which cost more
    warmup_starts: ClassVar[tuple[str, ...]] = ("mel_start", "quantizer_start")

    mel_weight: float = 1.0
    mel_windows: tuple[int, ...] = (64, 128, 256, 512, 1024, 2048)  # multi-scale mel window sizes
    waveform_l1_weight: float = 0.1
    waveform_nmse_weight: float = 0.0  # waveform MSE over the signal's power (losses.waveform_nmse)
    gan_weight: float = 1.0  # 0 turns the adversarial losses and the discriminator off
    feature_matching_weight: float = 3.0
    disc_start: int = 2000  # step at which the adversarial losses switch on
    mel_start: int = 0  # step at which the mel loss switches on (before: waveform L1 alone)
    mel_log_eps: float = 1e-5  # floor added to the mel magnitudes before the log (of the log-mel term)
    quantizer_start: int = 0  # steps of plain-autoencoder warm-up before the RVQ initialises and switches on
    # (at the latest on the run's last step, so the saved codec always has initialised codebooks)
    quantizer_init_vectors: int = 0  # latent vectors the RVQ's k-means starts from: 0 = the first quantized
    # batch's own; more draws extra training batches (8 crops of 0.5 s give 200, too few for 1024 codes)

    def __post_init__(self) -> None:
        self.mel_windows = tuple(self.mel_windows)
        weights = ("mel_weight", "waveform_l1_weight", "waveform_nmse_weight", "gan_weight", "feature_matching_weight")
        bad = [w for w in weights if getattr(self, w) < 0]
        if bad:
            raise ValueError(f"loss weights must be non-negative: {', '.join(bad)}")
        if self.mel_weight == 0 and self.waveform_weight == 0:
            raise ValueError("mel_weight, waveform_l1_weight and waveform_nmse_weight are all 0: nothing would teach reconstruction")
        for name in ("disc_start", "mel_start", "quantizer_start", "quantizer_init_vectors"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)}")
        if self.mel_start > 0 and self.waveform_weight == 0:
            raise ValueError("mel_start > 0 needs a waveform loss weight > 0: nothing would teach reconstruction before it")
        if not self.mel_log_eps > 0:
            raise ValueError(f"mel_log_eps must be positive, got {self.mel_log_eps}")
        if not self.mel_windows or min(self.mel_windows) < 16:
            raise ValueError(f"mel_windows must be window sizes >= 16, got {list(self.mel_windows)}")

    @property
    def waveform_weight(self) -> float:
        return self.waveform_l1_weight + self.waveform_nmse_weight

    @property
    def adversarial(self) -> bool:
        return self.gan_weight > 0 or self.feature_matching_weight > 0


@dataclass
class AudioTokenizerTrainingConfig(FamilyTrainingConfig):
    """Project config section `audio_tokenizer`: model, discriminator, losses, data crops (and the loop,
    validation)."""

    model: AudioTokenizerConfig = field(default_factory=AudioTokenizerConfig)
    discriminator: STFTDiscriminatorConfig = field(default_factory=STFTDiscriminatorConfig)
    loss: AudioLossConfig = field(default_factory=AudioLossConfig)
    segment_seconds: float = 1.0  # length of the random training crops
    val_seconds: float = 2.125  # length of each validation clip (one VideoPoet clip)

    def __post_init__(self) -> None:
        super().__post_init__()
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


# ---- solver -----------------------------------------------------------------------------------------------


class AudioSolver(SolverBase):
    """The audio tokenizer's side of the shared training loop (see the module docstring for the losses)."""

    family = "audio"

    def __init__(self, config: AudioTokenizerTrainingConfig, source: TrainingSource) -> None:
        super().__init__(config, source)
        self.model = AudioTokenizer(config.model)
        self.discriminator: nn.Module | None = (
            MultiScaleSTFTDiscriminator(config.discriminator) if config.loss.adversarial else None
        )
        self.mel_loss = MultiScaleMelLoss(config.model.sample_rate, config.loss.mel_windows, eps=config.loss.mel_log_eps)

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
        if lc.waveform_nmse_weight > 0:
            nmse = waveform_nmse(recon, wav)
            rec = rec + lc.waveform_nmse_weight * nmse
            logs["wave_nmse"] = nmse.item()
        if self.mel_on(step):
            mel = self.mel_loss.to(wav.device)(recon, wav)
            rec = rec + lc.mel_weight * mel
            logs["mel"] = mel.item()
        return rec, logs

    @torch.no_grad()
    def init_quantizer(self, batch: torch.Tensor, step: int) -> None:
        """K-means of the RVQ on `loss.quantizer_init_vectors` latent vectors: this batch's and those of
        extra training batches (drawn from a generator seeded by the step, so a resumed run draws the same)."""
        want = self.config.loss.quantizer_init_vectors
        rng = np.random.default_rng([self.config.train.seed, step])
        rows = [self.model.latent_vectors(batch)]
        while sum(len(r) for r in rows) < want:
            rows.append(self.model.latent_vectors(self.sample_batch(rng).to(batch.device)))
        self.model.quantizer.init_codebooks(torch.cat(rows)[:want])

    def generator_loss(self, batch: torch.Tensor, step: int) -> tuple[torch.Tensor, dict[str, float], Any]:
        quantize = self.quantizer_on(step)
        if quantize and self.config.loss.quantizer_init_vectors and not bool(self.model.quantizer.initialized):
            self.init_quantizer(batch, step)
        recon, out = self.model(batch, quantize=quantize)
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
        from videopoet.metrics.audio import mel_distance, si_sdr

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
        extra = getattr(self.source, "validation_scores", None)
        if extra is not None:
            metrics.update(extra(est))
        return metrics

    def write_samples(self, writer: Any, model: nn.Module, step: int, max_clips: int = 2) -> None:
        wav = self.validation_clips()[:max_clips]
        _, recon = self.reconstruct(model, wav)
        sr = self.config.model.sample_rate
        for i in range(wav.shape[0]):
            writer.add_audio(f"samples/{i}/original", wav[i].cpu(), step, sample_rate=sr)
            writer.add_audio(f"samples/{i}/reconstruction", recon[i].float().cpu(), step, sample_rate=sr)


def source_spec(config: AudioTokenizerTrainingConfig) -> dict[str, Any]:
    """The sound an audio source must give this config: sample rate, training and validation lengths."""
    return {"sample_rate": config.model.sample_rate, "segment_samples": config.segment_samples, "val_samples": config.val_samples}


def train_audio_tokenizer(
    config: AudioTokenizerTrainingConfig, source: TrainingSource, out: str | Path, resume: bool = False
) -> dict[str, Any]:
    """Train the audio tokenizer on sound from `source` into the folder `out` (checkpoints, TensorBoard,
    and the loadable tokenizer: config.json + model.safetensors)."""
    return train_tokenizer(AudioSolver(config, source), config.train, out, resume)
