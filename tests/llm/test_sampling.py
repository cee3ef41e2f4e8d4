"""AR (KV cache) and MaskGIT samplers on a small random model: valid ranges, determinism, cache
equivalence with full forward passes, invisible padding, CFG."""

from __future__ import annotations

import pytest
import torch

from videopoet.llm.masks import attention_mask
from videopoet.llm.model import LLMConfig, build_model
from videopoet.llm.sampling import (
    SamplingConfig,
    sample_autoregressive,
    sample_maskgit,
)
from videopoet.sequence import MASKGIT, PREFIX, OutputBlock, OutputLayout
from videopoet.vocab import SharedVocab

VOCAB = SharedVocab(text_size=40, video_bits=5, audio_levels=2, audio_codebook_size=8)
PAD, MASK = VOCAB.token_id("<pad>"), VOCAB.token_id("<mask>")


@pytest.fixture(scope="module")
def model() -> torch.nn.Module:
    torch.manual_seed(0)
    return build_model(LLMConfig(hidden_size=32, num_layers=2, num_heads=4, intermediate_size=64, max_position_embeddings=128), VOCAB).eval()


def layout() -> OutputLayout:
    v = VOCAB.video_range
    a0, a1 = VOCAB.audio_range(0), VOCAB.audio_range(1)
    video = OutputBlock(VOCAB.token_id("<bov_o>"), VOCAB.token_id("<eov_o>"), torch.full((12,), v.start), torch.full((12,), v.stop))
    audio = OutputBlock(VOCAB.token_id("<boa_o>"), VOCAB.token_id("<eoa_o>"),
                        torch.tensor([a0.start] * 3 + [a1.start] * 3), torch.tensor([a0.stop] * 3 + [a1.stop] * 3))
    return OutputLayout([video, audio], VOCAB.token_id("<eos>"))


def prefix(n_text: int, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    text = torch.randint(VOCAB.text_range.start, VOCAB.text_range.stop, (n_text,), generator=g)
    return torch.cat([torch.tensor([VOCAB.token_id("<bos>"), VOCAB.task_id("text_to_video_audio"), VOCAB.token_id("<bot_i>")]),
                      text, torch.tensor([VOCAB.token_id("<eot_i>")])])


def check_ranges(content: torch.Tensor) -> None:
    lo, hi = layout().ranges()
    assert ((content >= lo) & (content < hi)).all()


@pytest.mark.parametrize("sampler", ["ar", "maskgit"])
def test_valid_ranges_and_same_seed_same_output(model: torch.nn.Module, sampler: str) -> None:
    def run(seed: int) -> torch.Tensor:
        cfg = SamplingConfig(seed=seed, top_k=10, top_p=0.9, steps=6)
        if sampler == "ar":
            return sample_autoregressive(model, [prefix(5), prefix(2, 1)], layout(), cfg, PAD)
        return sample_maskgit(model, [prefix(5), prefix(2, 1)], layout(), cfg, PAD, MASK)

    a = run(0)
    assert a.shape == (2, 18) and not (a == MASK).any()
    check_ranges(a)
    assert torch.equal(a, run(0))
    assert not torch.equal(a, run(1))


def test_ar_cache_equals_full_forward(model: torch.nn.Module) -> None:
    p = prefix(4)
    content = sample_autoregressive(model, [p], layout(), SamplingConfig(temperature=0), PAD)
    seq = layout().full_ids(content)[0]
    ids = torch.cat([p, seq])[None]
    mask = attention_mask(ids.shape[1], torch.tensor([len(p)]), torch.tensor([ids.shape[1]]), torch.tensor([PREFIX]))
    logits = model(input_ids=ids, attention_mask=mask).logits[0]
    lo, hi = layout().ranges()
    for k, pos in enumerate(layout().content_positions()):
        row = logits[len(p) + pos - 1].clone()
        row[: lo[k]] = row[hi[k] :] = float("-inf")
        assert int(row.argmax()) == int(content[0, k])


@pytest.mark.parametrize("sampler", ["ar", "maskgit"])
def test_left_padding_is_invisible(model: torch.nn.Module, sampler: str) -> None:
    cfg = SamplingConfig(temperature=0, steps=4, choice_temperature=0)  # no noise: rows must not depend on the batch
    long, short = prefix(6), prefix(1, 3)
    if sampler == "ar":
        both = sample_autoregressive(model, [long, short], layout(), cfg, PAD)
        alone = sample_autoregressive(model, [short], layout(), cfg, PAD)
    else:
        both = sample_maskgit(model, [long, short], layout(), cfg, PAD, MASK)
        alone = sample_maskgit(model, [short], layout(), cfg, PAD, MASK)
    assert torch.equal(both[1], alone[0])


@pytest.mark.parametrize("sampler", ["ar", "maskgit"])
def test_classifier_free_guidance(model: torch.nn.Module, sampler: str) -> None:
    uncond = [prefix(0)]
    plain = SamplingConfig(temperature=0, steps=4)
    guided = SamplingConfig(temperature=0, steps=4, cfg_scale=3.0)
    run = (lambda c: sample_autoregressive(model, [prefix(5)], layout(), c, PAD, uncond_prefixes=uncond)) if sampler == "ar" else (
        lambda c: sample_maskgit(model, [prefix(5)], layout(), c, PAD, MASK, uncond_prefixes=uncond))
    a, b = run(plain), run(guided)
    check_ranges(b)
    assert not torch.equal(a, b)


def test_draws_follow_the_softmax() -> None:
    from videopoet.llm.sampling import _draw

    probs = torch.tensor([0.5, 0.3, 0.2, 0.0])
    logits = torch.log(probs).expand(20000, 4)
    drawn = _draw(logits, SamplingConfig(), torch.Generator().manual_seed(0))
    share = torch.bincount(drawn, minlength=4) / len(drawn)
    assert torch.allclose(share, probs, atol=0.02) and share[3] == 0


def test_masked_slots_lists_each_rows_masked_positions() -> None:
    from videopoet.llm.sampling import _masked_slots

    unknown = torch.tensor([[True, False, True, False], [False, False, False, True]])
    idx, valid = _masked_slots(unknown)
    assert idx.shape == (2, 2)
    assert idx[0].tolist() == [0, 2] and valid[0].all()
    assert idx[1, 0] == 3 and valid[1].tolist() == [True, False] and not unknown[1, idx[1, 1]]


def test_maskgit_one_greedy_step_is_the_bidirectional_argmax(model: torch.nn.Module) -> None:
    """One step samples every position from the full forward over an all-mask output."""
    p = prefix(4)
    content = sample_maskgit(model, [p], layout(), SamplingConfig(temperature=0, steps=1), PAD, MASK)
    seq = layout().full_ids(torch.full_like(content, MASK))[0]
    ids = torch.cat([p, seq])[None]
    mask = attention_mask(ids.shape[1], torch.tensor([len(p)]), torch.tensor([ids.shape[1]]), torch.tensor([MASKGIT]))
    logits = model(input_ids=ids, attention_mask=mask).logits[0]
    lo, hi = layout().ranges()
    for k, pos in enumerate(layout().content_positions()):
        row = logits[len(p) + pos].clone()
        row[: lo[k]] = row[hi[k] :] = float("-inf")
        assert int(row.argmax()) == int(content[0, k])


@pytest.mark.slow
def test_compiled_samplers_draw_the_same_tokens(compile_backend: str) -> None:
    """`SamplingConfig.compile` compiles the backbone in place; fp32, a fixed seed: the very same tokens
    from both samplers. One layer: compiling takes time in proportion to the layers. With inductor
    (VIDEOPOET_TEST_COMPILE_BACKEND=inductor): 20 s with its cache warm, about 5 minutes cold."""
    import dataclasses

    from torch._dynamo.utils import counters

    def tiny() -> torch.nn.Module:
        torch.manual_seed(0)
        config = LLMConfig(hidden_size=32, num_layers=1, num_heads=4, intermediate_size=64, max_position_embeddings=128)
        return build_model(config, VOCAB).eval()

    cfg = SamplingConfig(seed=3, top_k=10, steps=4)
    runs = {}
    frames = counters["frames"]["ok"]
    for fast in (False, True):
        model, c = tiny(), dataclasses.replace(cfg, compile=fast, compile_backend=compile_backend)
        runs[fast] = (sample_autoregressive(model, [prefix(5)], layout(), c, PAD),
                      sample_maskgit(model, [prefix(5)], layout(), c, PAD, MASK))
    assert counters["frames"]["ok"] > frames  # dynamo compiled frames: the compiled path ran
    assert all(torch.equal(a, b) for a, b in zip(runs[False], runs[True]))
