"""Audio codec: lengths and the frame rule, causality, long-input chunking, input checks, gradients."""

import numpy as np
import pytest
import torch

from videopoet.errors import UserError
from videopoet.tokenizers.audio.discriminator import (
    MultiScaleSTFTDiscriminator,
    STFTDiscriminatorConfig,
    feature_matching_loss,
)
from videopoet.tokenizers.audio.losses import MultiScaleMelLoss, waveform_l1
from videopoet.tokenizers.audio.model import (
    PRESETS,
    AudioInputError,
    AudioTokenizer,
    AudioTokenizerConfig,
    preset,
)
from videopoet.tokenizers.checkpoint import load_weights, save_weights

HOP = 8


def small(causal: bool = False, **kw) -> AudioTokenizerConfig:
    base = dict(
        strides=(2, 4), channels=4, latent_dim=8, levels=2, codebook_size=16, causal=causal, kmeans_iters=3
    )
    base.update(kw)
    return AudioTokenizerConfig(**base)


def noise(n: int, b: int = 1, seed: int = 0) -> torch.Tensor:
    return 0.5 * torch.randn(b, 1, n, generator=torch.Generator().manual_seed(seed)).clamp(-2, 2)


def initialised(config: AudioTokenizerConfig, n: int = 2000) -> AudioTokenizer:
    """A model whose codebooks were k-means initialised on noise (so codes are spread, not all one id)."""
    torch.manual_seed(0)
    model = AudioTokenizer(config).train()
    model(noise(n, b=2, seed=99))
    return model.eval()


@pytest.mark.parametrize("n", [1, 7, 8, 1001])
def test_forward_keeps_any_length(n):
    model = AudioTokenizer(small()).train()
    recon, out = model(noise(n, b=2))
    assert recon.shape == (2, 1, n)
    assert out.codes.shape == (2, 2, -(-n // HOP))
    assert out.commitment_loss.ndim == 0 and "usage/level1" in out.stats


def test_encode_decode_lengths_follow_the_frame_rule():
    model = initialised(small())
    codes = model.encode(noise(1001))
    assert codes.shape == (1, 2, 125) == (1, 2, model.frames_for(1001))
    assert model.decode(codes).shape == (1, 1, 1000)
    assert model.decode(codes, num_samples=1001).shape == (1, 1, 1001)
    assert model.decode(codes[:, :1]).shape == (1, 1, 1000)  # fewer levels: lower bitrate
    with pytest.raises(AudioInputError, match="shorter than one frame"):
        model.encode(noise(HOP - 1))


def test_videopoet_clip_gives_106_frames():
    tiny = AudioTokenizer(preset("tiny")).eval()
    assert tiny.hop == 320 and tiny.config.frame_rate == 50
    assert tiny.frames_for(34000) == 106  # 2.125 s at 16 kHz: floor(106.25)
    codes = tiny.encode(torch.zeros(1, 1, 34000))
    assert codes.shape == (1, 2, 106)
    assert tiny.decode(codes).shape[-1] == 33920
    assert PRESETS["videopoet"].hop == 320 and PRESETS["videopoet"].levels == 4


def test_presets_and_config_validation():
    vp = PRESETS["videopoet"]
    assert (vp.sample_rate, vp.levels, vp.codebook_size) == (16000, 4, 1024)
    assert vp.bitrate_kbps() == pytest.approx(2.0) and vp.tokens_per_second == 200
    assert PRESETS["tiny"].bitrate_kbps() == pytest.approx(0.8)
    assert preset("tiny", causal=True).causal
    with pytest.raises(ValueError, match="sample_rate"):
        AudioTokenizerConfig(sample_rate=22050)
    with pytest.raises(ValueError, match="strides"):
        AudioTokenizerConfig(strides=())
    with pytest.raises(ValueError, match="kernel_size"):
        AudioTokenizerConfig(kernel_size=4)
    with pytest.raises(ValueError, match="quantizer_dropout"):
        AudioTokenizerConfig(quantizer_dropout=2.0)
    with pytest.raises(UserError, match="unknown audio tokenizer preset"):
        preset("huge")
    assert AudioTokenizerConfig(sample_rate=24000).frame_rate == 75


def test_causal_future_samples_do_not_change_past_codes():
    model = initialised(small(causal=True))
    wav = noise(800, seed=1)
    cut = 40 * HOP + 3
    changed = wav.clone()
    changed[..., cut:] = noise(800 - cut, seed=2)
    a, b = model.encode(wav), model.encode(changed)
    assert torch.equal(a[..., : cut // HOP], b[..., : cut // HOP])
    assert not torch.equal(a, b)
    # and the decoder: changing future codes leaves earlier samples alone
    codes = a.clone()
    codes[..., 60:] = (codes[..., 60:] + 1) % 16
    assert torch.allclose(model.decode(a)[..., : 60 * HOP], model.decode(codes)[..., : 60 * HOP], atol=1e-6)


@pytest.mark.parametrize("causal", [True, False])
def test_long_input_chunks_equal_whole_encoding(causal):
    model = initialised(small(causal=causal))
    wav = noise(8 * 1000 + 5, seed=3)
    whole = model.encode(wav)[0].numpy()
    chunk_seconds = 100 * HOP / 16000  # 100 frames per chunk, 11 chunks
    long = model.encode_long(wav[0, 0].numpy(), chunk_seconds=chunk_seconds)
    assert long.shape == whole.shape == (2, 1000) and long.dtype == np.int64
    assert len(np.unique(whole[0])) > 4  # codes are spread, so equality means something
    assert np.array_equal(long, whole)
    wav_whole = model.decode_to_waveforms(whole)[0]
    wav_long = model.decode_long(long, chunk_seconds=chunk_seconds)
    assert wav_long.shape == (8000,) and np.allclose(wav_long, wav_whole, atol=1e-5)


def test_long_input_with_less_context_differs_only_near_chunk_edges():
    model = initialised(small(causal=False))
    wav = noise(8 * 1000, seed=4)
    whole = model.encode(wav)[0].numpy()
    chunk = 100
    long = model.encode_long(wav[0, 0].numpy(), chunk_seconds=chunk * HOP / 16000, context_samples=0)
    reach = model.encoder_context() // HOP  # frames of receptive field on each side (upper bound)
    differ = np.nonzero((long != whole).any(0))[0]
    distance_to_edge = np.minimum(differ % chunk, chunk - differ % chunk)
    assert (distance_to_edge <= reach).all(), (differ, reach)


def test_nan_and_inf_samples_are_user_errors():
    model = AudioTokenizer(small()).eval()
    for bad in (float("nan"), float("inf")):
        wav = noise(100)
        wav[0, 0, 17] = bad
        with pytest.raises(AudioInputError, match="NaN or infinite"):
            model.encode(wav)
        with pytest.raises(UserError):
            model(wav)
        with pytest.raises(AudioInputError):
            model.encode_waveforms(wav[0, 0].numpy())


def test_silence_and_clipping():
    model = initialised(small())
    silent = model.encode(torch.zeros(2, 1, 400))
    assert silent.shape == (2, 2, 50)
    assert torch.isfinite(model.decode(silent)).all()
    loud = noise(400) * 10  # far beyond +-1: clamped
    assert torch.equal(model.encode(loud), model.encode(loud.clamp(-1, 1)))
    recon, _ = model.train()(loud)
    assert torch.isfinite(recon).all()


def test_stereo_and_integer_input_rejected():
    model = AudioTokenizer(small()).eval()
    with pytest.raises(AudioInputError, match="mono"):
        model.encode(torch.zeros(1, 2, 100))
    with pytest.raises(AudioInputError, match="mono"):
        model.encode_waveforms([np.zeros((100, 2), np.float32)])
    with pytest.raises(AudioInputError, match="float"):
        model.encode_waveforms(np.zeros((1, 100), np.int16))


def test_numpy_api_round_trip():
    model = initialised(small())
    batch = np.random.default_rng(0).uniform(-0.5, 0.5, (3, 803))  # float64 is converted
    codes = model.encode_waveforms(batch)
    assert codes.shape == (3, 2, 100) and codes.dtype == np.int64
    same = model.encode_waveforms([row.astype(np.float32) for row in batch])
    assert np.array_equal(codes, same)
    assert np.array_equal(model.encode_waveforms(torch.from_numpy(batch).float(), batch_size=2), codes)
    wavs = model.decode_to_waveforms(codes, num_samples=803)
    assert wavs.shape == (3, 803) and wavs.dtype == np.float32 and np.abs(wavs).max() <= 1
    assert model.decode_to_waveforms(codes[0]).shape == (1, 800)
    with pytest.raises(AudioInputError, match="equal length"):
        model.encode_waveforms([batch[0], batch[1, :500]])
    resampled = model.encode_waveforms(batch[:1, :400], sample_rate=8000)  # 400 samples at 8 kHz = 800 here
    assert resampled.shape == (1, 2, 100)


def test_eval_encoding_is_deterministic_and_checkpoint_restores_it(tmp_path):
    model = initialised(small())
    wav = noise(640, seed=5)
    assert torch.equal(model.encode(wav), model.encode(wav))
    save_weights(model, tmp_path / "audio.safetensors")
    fresh = AudioTokenizer(small())
    load_weights(fresh, tmp_path / "audio.safetensors")
    assert bool(fresh.quantizer.initialized)
    assert torch.equal(fresh.eval().encode(wav), model.encode(wav))
    assert torch.allclose(fresh.decode(model.encode(wav)), model.decode(model.encode(wav)))


def test_gradients_reach_every_parameter():
    torch.manual_seed(0)
    model = AudioTokenizer(small()).train()
    disc = MultiScaleSTFTDiscriminator(STFTDiscriminatorConfig(n_ffts=(128, 64), filters=4))
    mel = MultiScaleMelLoss(16000, windows=(64, 128, 256))
    wav = noise(1024, b=2)
    recon, out = model(wav)
    logits_fake, feats_fake = disc(recon)
    _, feats_real = disc(wav)
    loss = (
        mel(recon, wav)
        + waveform_l1(recon, wav)
        + out.commitment_loss
        + sum((1 - lf).relu().mean() for lf in logits_fake)
        + feature_matching_loss(feats_real, feats_fake)
    )
    loss.backward()
    for name, p in [*model.named_parameters(), *(("disc." + n, p) for n, p in disc.named_parameters())]:
        assert p.grad is not None, f"{name} got no gradient"
        assert torch.isfinite(p.grad).all() and p.grad.abs().sum() > 0, name


def test_bf16_autocast_forward_is_finite():
    model = AudioTokenizer(small()).train()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        recon, out = model(noise(512, b=2))
    assert torch.isfinite(recon.float()).all() and out.commitment_loss.dtype == torch.float32


def test_unquantized_forward_skips_and_leaves_the_quantizer_alone():
    torch.manual_seed(0)
    model = AudioTokenizer(small()).train()
    before = model.quantizer.codebooks.clone()
    wav = noise(1001, b=2)
    recon, out = model(wav, quantize=False)
    assert recon.shape == wav.shape and out.codes.shape == (2, 0, 126)
    assert float(out.commitment_loss) == 0.0 and out.stats == {}
    assert not bool(model.quantizer.initialized) and torch.equal(model.quantizer.codebooks, before)
    waveform_l1(recon, wav).backward()
    for name, p in [*model.encoder.named_parameters(), *model.decoder.named_parameters()]:
        assert p.grad is not None and p.grad.abs().sum() > 0, f"{name} got no gradient"
    model(wav)  # the first quantized training pass initialises the codebooks on these latents
    assert bool(model.quantizer.initialized) and not torch.equal(model.quantizer.codebooks, before)
