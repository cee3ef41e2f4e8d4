"""The Llama backbone over the shared vocabulary: sizes, presets, 4D masks through SDPA, the mixed loss."""

from __future__ import annotations

import pytest
import torch

from videopoet.llm.masks import attention_mask
from videopoet.llm.model import (
    IGNORE_INDEX,
    PRESETS,
    LLMConfig,
    build_model,
    sequence_loss,
    transformer_parameters,
)
from videopoet.sequence import MASKGIT, PREFIX
from videopoet.vocab import SharedVocab

TINY_VOCAB = SharedVocab(text_size=300, video_bits=8, audio_levels=2, audio_codebook_size=64)
PAPER_VOCAB = SharedVocab(text_size=32000, video_bits=18, audio_levels=4, audio_codebook_size=1024)


def tiny_model() -> torch.nn.Module:
    torch.manual_seed(0)
    return build_model(LLMConfig(hidden_size=32, num_layers=2, num_heads=4, intermediate_size=64, max_position_embeddings=64), TINY_VOCAB).eval()


def test_vocab_padded_to_128() -> None:
    model = tiny_model()
    rows = model.get_input_embeddings().weight.shape[0]
    assert rows % 128 == 0 and rows >= TINY_VOCAB.size
    assert model.lm_head.weight.shape[0] == rows


@pytest.mark.parametrize(("name", "low", "high"), [("tiny", 0.5e6, 2e6), ("300m", 250e6, 350e6), ("1b", 0.9e9, 1.3e9), ("8b", 7.5e9, 8.5e9)])
def test_presets_build_on_meta_with_expected_size(name: str, low: float, high: float) -> None:
    with torch.device("meta"):
        model = build_model(PRESETS[name], PAPER_VOCAB)
    total = sum(p.numel() for p in model.parameters())
    embeddings = 2 * PAPER_VOCAB.padded_size() * PRESETS[name].hidden_size
    assert total == transformer_parameters(PRESETS[name]) + embeddings
    assert low <= transformer_parameters(PRESETS[name]) <= high


def test_prefix_mask_through_model() -> None:
    model = tiny_model()
    ids = torch.randint(0, TINY_VOCAB.size, (1, 10))
    mask = attention_mask(10, torch.tensor([4]), torch.tensor([10]), torch.tensor([PREFIX]))
    base = model(input_ids=ids, attention_mask=mask).logits
    in_prefix = ids.clone()
    in_prefix[0, 3] = (in_prefix[0, 3] + 1) % TINY_VOCAB.size
    changed = model(input_ids=in_prefix, attention_mask=mask).logits
    assert (changed[0, 0] - base[0, 0]).abs().max() > 0  # bidirectional prefix: position 0 sees position 3
    in_output = ids.clone()
    in_output[0, 7] = (in_output[0, 7] + 1) % TINY_VOCAB.size
    changed = model(input_ids=in_output, attention_mask=mask).logits
    assert torch.equal(changed[0, :7], base[0, :7])  # causal output: nothing before 7 sees it


def test_sequence_loss_mixes_ar_and_maskgit() -> None:
    vocab = 5
    logits = torch.full((2, 4, vocab), -10.0)
    labels = torch.full((2, 4), IGNORE_INDEX)
    # AR row: position i must predict labels[i + 1]
    labels[0, 2], labels[0, 3] = 1, 2
    logits[0, 1, 1] = logits[0, 2, 2] = 10.0
    # MaskGIT row: position i predicts labels[i]
    labels[1, 2] = 3
    logits[1, 2, 3] = 10.0
    loss = sequence_loss(logits, labels, torch.tensor([PREFIX, MASKGIT]))
    assert loss < 1e-6
    wrong = sequence_loss(logits, labels, torch.tensor([MASKGIT, PREFIX]))
    assert wrong > 5
