"""Video and audio tokenizers on the GPU: forward and backward in bf16 autocast against the CPU in fp32.

Small models (the unit tests' sizes), the same weights and inputs on both devices. Tolerances: the
reconstruction within 10% (relative L2) of the fp32 one, the gradients within 15%. Quantization is
compared by agreement, not equality: a latent within bf16's error of a decision boundary (LFQ's zero, RVQ's
nearest-code tie) may go either way.

Where the tolerances come from: bf16 keeps 8 bits of mantissa (relative rounding up to 2^-8 = 0.4% per
operation), and a randomly initialised decoder's output is small with much cancellation, which magnifies
it; with the CPU standing in for the GPU (bf16 autocast on the CPU) the video tokenizer's reconstruction
is off by 4.3% and its gradients by 3.7%, the audio codec's by 0.3% and 0.26%. The bounds leave about
twice that for the GPU's other kernels.
"""

from __future__ import annotations

import copy

import pytest
import torch
import torch.nn.functional as F

pytestmark = pytest.mark.gpu

RECON_TOL = 0.10  # relative L2 error of bf16-on-GPU outputs against fp32-on-CPU
GRAD_TOL = 0.15  # relative L2 error of all parameter gradients, concatenated
AGREE = 0.97  # share of LFQ bits (signs) / RVQ first-level codes that must agree


def relative_error(a: torch.Tensor, b: torch.Tensor) -> float:
    a, b = a.detach().float().cpu(), b.detach().float().cpu()
    return float((a - b).norm() / b.norm().clamp(min=1e-12))


def gradients(model: torch.nn.Module) -> torch.Tensor:
    """Every parameter's gradient, flattened into one CPU fp32 vector (zeros where a parameter got none)."""
    return torch.cat([(p.grad if p.grad is not None else torch.zeros_like(p)).detach().float().cpu().flatten()
                      for p in model.parameters()])


def forward_backward(model: torch.nn.Module, path, x: torch.Tensor, device: torch.device, bf16: bool):
    """`path(model, x)` -> reconstruction; MSE against `x`, backward; returns (reconstruction, loss, grads)."""
    model = model.to(device)
    model.zero_grad(set_to_none=True)
    x = x.to(device)
    with torch.autocast(device_type=device.type, dtype=torch.bfloat16, enabled=bf16):
        recon = path(model, x)
        loss = F.mse_loss(recon.float(), x)
    loss.backward()
    return recon.detach().float().cpu(), float(loss.detach()), gradients(model)


def assert_paths_agree(cpu_model: torch.nn.Module, gpu_model: torch.nn.Module, path, x: torch.Tensor, gpu: torch.device) -> None:
    """`path` run forward and backward in fp32 on the CPU and in bf16 on the GPU: outputs, loss and gradients
    agree within the tolerances above."""
    ref_recon, ref_loss, ref_grads = forward_backward(cpu_model, path, x, torch.device("cpu"), bf16=False)
    recon, loss, grads = forward_backward(gpu_model, path, x, gpu, bf16=True)
    assert torch.isfinite(grads).all()
    assert relative_error(recon, ref_recon) < RECON_TOL
    assert loss == pytest.approx(ref_loss, rel=2 * RECON_TOL)
    assert relative_error(grads, ref_grads) < GRAD_TOL


def test_video_tokenizer_bf16_on_gpu_matches_cpu_fp32(gpu: torch.device, strict_fp32: None) -> None:
    from videopoet.tokenizers.video.model import VideoTokenizer, VideoTokenizerConfig

    config = VideoTokenizerConfig(channels=8, channel_mult=(1, 2, 2, 2), num_res_blocks=1, norm_groups=4, bits=6,
                                  group_bits=3, frames=9, height=64, width=64)
    torch.manual_seed(0)
    cpu_model = VideoTokenizer(config).train()
    gpu_model = copy.deepcopy(cpu_model)
    x = torch.rand(2, 3, 9, 64, 64, generator=torch.Generator().manual_seed(0)) * 2 - 1

    # the continuous path (encoder -> decoder, the quantizer's straight-through skipped): every layer's
    # forward and backward, with no discrete decision in between
    def continuous(m, v):
        return m.decoder(m.encoder(v))

    assert_paths_agree(cpu_model, gpu_model, continuous, x, gpu)

    # the whole tokenizer, quantizer included: LFQ's bits agree but for latents at zero
    with torch.no_grad():
        ref = cpu_model.to("cpu")(x)[1]
        with torch.autocast(device_type=gpu.type, dtype=torch.bfloat16):
            out = gpu_model.to(gpu)(x.to(gpu))[1]
    same_bits = (out.quantized.float().cpu().sign() == ref.quantized.sign()).float().mean()
    assert same_bits >= AGREE, f"only {same_bits:.3f} of LFQ bits agree"
    assert torch.isfinite(out.loss).all()


def test_audio_tokenizer_bf16_on_gpu_matches_cpu_fp32(gpu: torch.device, strict_fp32: None) -> None:
    from videopoet.tokenizers.audio.model import AudioTokenizer, AudioTokenizerConfig

    config = AudioTokenizerConfig(strides=(2, 4), channels=4, latent_dim=8, levels=2, codebook_size=16, causal=False,
                                  kmeans_iters=3)
    torch.manual_seed(0)
    cpu_model = AudioTokenizer(config).train()
    wav = 0.5 * torch.randn(2, 1, 4000, generator=torch.Generator().manual_seed(0)).clamp(-2, 2)
    with torch.no_grad():
        cpu_model(wav)  # k-means initialises the codebooks (on the CPU), so codes are spread
    gpu_model = copy.deepcopy(cpu_model)

    def continuous(m, v):  # the plain autoencoder path training starts with (`quantize=False`)
        return m(v, quantize=False)[0]

    assert_paths_agree(cpu_model, gpu_model, continuous, wav, gpu)

    # codes (eval mode: the codebooks stay as they are); the first level's nearest code agrees but for ties
    cpu_model.eval().to("cpu")
    gpu_model.eval().to(gpu)
    ref_codes = cpu_model.encode(wav)
    with torch.autocast(device_type=gpu.type, dtype=torch.bfloat16):
        codes = gpu_model.encode(wav.to(gpu)).cpu()
    assert codes.shape == ref_codes.shape
    same = (codes[:, 0] == ref_codes[:, 0]).float().mean()
    assert same >= AGREE, f"only {same:.3f} of first-level codes agree"
