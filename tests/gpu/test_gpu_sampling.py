"""The samplers on the GPU give the CPU's tokens: AR with its KV cache and MaskGIT, fp32, fixed seeds.

The samplers draw their noise from a CPU generator on CPU logits (`sampling._head` moves each logits
slice to the CPU), so the same seed gives the same tokens on any device as long as the model's logits
agree; fp32 without TF32 keeps them within summation-order rounding (about 1e-6), far below the gap a
small random model leaves between its top candidates. Left-padded batches (the explicit-mask path),
single prompts (MaskGIT's mask-free bidirectional path) and classifier-free guidance are each covered.
"""

from __future__ import annotations

import copy

import pytest
import torch

from videopoet.llm.model import LLMConfig, build_model
from videopoet.llm.sampling import SamplingConfig, sample_autoregressive, sample_maskgit
from videopoet.sequence import OutputBlock, OutputLayout
from videopoet.vocab import SharedVocab

pytestmark = pytest.mark.gpu

VOCAB = SharedVocab(text_size=40, video_bits=5, audio_levels=2, audio_codebook_size=8)
PAD, MASK = VOCAB.token_id("<pad>"), VOCAB.token_id("<mask>")


@pytest.fixture(scope="module")
def models(gpu: torch.device) -> tuple[torch.nn.Module, torch.nn.Module]:
    """The same random model on the CPU and on the GPU, fp32, eval mode."""
    torch.manual_seed(0)
    config = LLMConfig(hidden_size=64, num_layers=2, num_heads=4, intermediate_size=128, max_position_embeddings=256)
    cpu = build_model(config, VOCAB).eval()
    return cpu, copy.deepcopy(cpu).to(gpu)


def layout() -> OutputLayout:
    v = VOCAB.video_range
    a0, a1 = VOCAB.audio_range(0), VOCAB.audio_range(1)
    video = OutputBlock(VOCAB.token_id("<bov_o>"), VOCAB.token_id("<eov_o>"), torch.full((24,), v.start), torch.full((24,), v.stop))
    audio = OutputBlock(VOCAB.token_id("<boa_o>"), VOCAB.token_id("<eoa_o>"),
                        torch.tensor([a0.start] * 4 + [a1.start] * 4), torch.tensor([a0.stop] * 4 + [a1.stop] * 4))
    return OutputLayout([video, audio], VOCAB.token_id("<eos>"))


def prefix(n_text: int, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    text = torch.randint(VOCAB.text_range.start, VOCAB.text_range.stop, (n_text,), generator=g)
    return torch.cat([torch.tensor([VOCAB.token_id("<bos>"), VOCAB.task_id("text_to_video_audio"), VOCAB.token_id("<bot_i>")]),
                      text, torch.tensor([VOCAB.token_id("<eot_i>")])])


CASES = {
    "batch_left_padded": dict(prefixes=[(6, 0), (2, 1)], uncond=None, cfg=1.0),
    "single_prompt": dict(prefixes=[(5, 2)], uncond=None, cfg=1.0),
    "guided": dict(prefixes=[(5, 3)], uncond=[(0, 4)], cfg=3.0),
}


@pytest.mark.parametrize("case", sorted(CASES))
@pytest.mark.parametrize("sampler", ["ar", "maskgit"])
def test_gpu_samples_the_cpus_tokens(models, sampler: str, case: str, strict_fp32: None) -> None:
    cpu, gpu = models
    spec = CASES[case]
    prefixes = [prefix(n, s) for n, s in spec["prefixes"]]
    uncond = [prefix(n, s) for n, s in spec["uncond"]] if spec["uncond"] else None
    for temperature in (1.0, 0.0):  # sampled with a fixed seed, and greedy
        cfg = SamplingConfig(temperature=temperature, top_k=20, top_p=0.95, cfg_scale=spec["cfg"], steps=6, seed=7)
        if sampler == "ar":
            ref, got = (sample_autoregressive(m, prefixes, layout(), cfg, PAD, uncond_prefixes=uncond) for m in (cpu, gpu))
        else:
            ref, got = (sample_maskgit(m, prefixes, layout(), cfg, PAD, MASK, uncond_prefixes=uncond) for m in (cpu, gpu))
        assert got.device.type == "cpu" and got.shape == ref.shape == (len(prefixes), layout().content_length)
        differ = (got != ref).sum().item()
        assert differ == 0, f"{differ} of {ref.numel()} tokens differ at temperature {temperature}"
