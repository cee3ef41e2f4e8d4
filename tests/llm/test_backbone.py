"""The backbone adapter: public creation with the asked attention, the one private behaviour it relies on
(`is_causal` read from the config), and the tied head."""

from __future__ import annotations

import pytest
import torch

from videopoet.llm.backbone import bidirectional_attention, tied_parameter_names
from videopoet.llm.model import LLMConfig, build_model
from videopoet.vocab import SharedVocab

VOCAB = SharedVocab(text_size=64, video_bits=6, audio_levels=2, audio_codebook_size=16)


@pytest.fixture(scope="module")
def model() -> torch.nn.Module:
    torch.manual_seed(0)
    return build_model(LLMConfig(hidden_size=32, num_layers=2, num_heads=4, intermediate_size=64, max_position_embeddings=128), VOCAB).eval()


def test_backbone_has_the_asked_attention_and_tied_head() -> None:
    small = dict(hidden_size=32, num_layers=1, num_heads=4, intermediate_size=64, max_position_embeddings=64)
    assert build_model(LLMConfig(**small, attn_implementation="eager"), VOCAB).config._attn_implementation == "eager"
    tied = build_model(LLMConfig(**small, tie_word_embeddings=True), VOCAB)
    assert tied_parameter_names(tied) == {"lm_head.weight"} and tied.lm_head.weight is tied.model.embed_tokens.weight
    assert tied_parameter_names(build_model(LLMConfig(**small), VOCAB)) == set()


def test_bidirectional_attention_without_a_mask_equals_an_all_true_mask(model: torch.nn.Module) -> None:
    """If transformers stops honouring `config.is_causal`, MaskGIT's cached-prefix steps silently turn causal:
    this fails first."""
    from transformers import DynamicCache

    p = torch.randint(VOCAB.video_range.start, VOCAB.video_range.stop, (1, 5))
    region = torch.randint(VOCAB.video_range.start, VOCAB.video_range.stop, (1, 7))
    pos = torch.arange(p.shape[1], p.shape[1] + 7)[None]
    outs = []
    for explicit in (True, False):
        cache = DynamicCache()
        model.model(input_ids=p, attention_mask=torch.ones(1, 1, p.shape[1], p.shape[1], dtype=torch.bool), cache=cache, use_cache=True)
        if explicit:
            mask = torch.ones(1, 1, 7, p.shape[1] + 7, dtype=torch.bool)
            outs.append(model.model(input_ids=region, attention_mask=mask, position_ids=pos, cache=cache, use_cache=True).last_hidden_state)
        else:
            with bidirectional_attention(model) as extra:
                outs.append(model.model(input_ids=region, position_ids=pos, cache=cache, use_cache=True, **extra).last_hidden_state)
    torch.testing.assert_close(outs[0], outs[1], atol=1e-5, rtol=1e-5)
    assert getattr(model.config, "is_causal", True)  # restored
