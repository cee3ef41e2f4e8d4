"""The backbone adapter: the only module that relies on `transformers` behaviour beyond its documented API.

The prefix LM is a `LlamaForCausalLM`. Creating it goes through the public `AutoModelForCausalLM.from_config`
(which also partitions it under an active ZeRO-3 `HfDeepSpeedConfig`). One thing has no public API:
running the backbone with full (bidirectional) attention and *no* mask tensor, so SDPA can use its fused
kernel for MaskGIT's output region. That is done by the config flag `is_causal`, which Llama's attention
reads; `tests/llm/test_backbone.py` fails loudly if an upgrade stops honouring it. The supported
transformers range is bounded in `pyproject.toml`.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch
from transformers import AutoModelForCausalLM, LlamaConfig, LlamaForCausalLM


def new_backbone(config: LlamaConfig, attn_implementation: str = "sdpa") -> LlamaForCausalLM:
    """A freshly initialised backbone (partitioned when a ZeRO-3 `HfDeepSpeedConfig` is active)."""
    return AutoModelForCausalLM.from_config(config, attn_implementation=attn_implementation)


@contextlib.contextmanager
def bidirectional_attention(model: torch.nn.Module) -> Iterator[dict]:
    """Full attention with no mask tensor at all, inside the block: transformers then builds no mask and
    `is_causal=False` reaches SDPA, which runs its fused kernel instead of the plain one an explicit mask
    needs. Yields the extra forward kwargs; the model's config is restored on exit."""
    config = model.config
    before = getattr(config, "is_causal", None)
    config.is_causal = False
    try:
        yield {"is_causal": False}
    finally:
        if before is None:
            del config.is_causal
        else:
            config.is_causal = before


def tied_parameter_names(model: LlamaForCausalLM) -> set[str]:
    """State-dict keys that are copies of other weights (the head, when tied to the embeddings)."""
    return {"lm_head.weight"} if model.config.tie_word_embeddings else set()
