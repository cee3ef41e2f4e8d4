"""The multimodal prefix LM: a `transformers` Llama model over the shared vocabulary.

The backbone is `LlamaForCausalLM` (RMSNorm, SwiGLU, RoPE) built from `LLMConfig`, with embeddings and
head sized to the shared vocabulary padded to a multiple of 128, so checkpoints load with
`from_pretrained` and work with the ecosystem's tooling. Attention masks come from `masks.py` (4D
boolean tensors SDPA takes as they are, or FlexAttention block masks); `sequence_loss` scores AR rows (next token) and MaskGIT
rows (the token at the same position) of one batch together.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch
import torch.nn.functional as F
from transformers import LlamaConfig, LlamaForCausalLM

from videopoet.llm.backbone import new_backbone
from videopoet.sequence import MASKGIT
from videopoet.vocab import SharedVocab

IGNORE_INDEX = -100


@dataclass
class LLMConfig:
    """Shape of the transformer. `intermediate_size=0` means 8/3 * hidden rounded up to a multiple of 256."""

    hidden_size: int = 1024
    num_layers: int = 24
    num_heads: int = 16
    num_kv_heads: int = 0  # 0: as many as num_heads (no grouped-query attention)
    intermediate_size: int = 0
    max_position_embeddings: int = 4096
    rope_theta: float = 10000.0
    rms_norm_eps: float = 1e-5
    initializer_range: float = 0.02
    tie_word_embeddings: bool = False
    vocab_multiple: int = 128  # embedding rows padded to a multiple of this
    attn_implementation: Literal["sdpa", "eager"] = "sdpa"

    def __post_init__(self) -> None:
        if self.hidden_size % self.num_heads:
            raise ValueError(f"hidden_size {self.hidden_size} is not a multiple of num_heads {self.num_heads}")
        kv = self.num_kv_heads or self.num_heads
        if self.num_heads % kv:
            raise ValueError(f"num_heads {self.num_heads} is not a multiple of num_kv_heads {kv}")
        if min(self.num_layers, self.max_position_embeddings, self.vocab_multiple) < 1:
            raise ValueError("num_layers, max_position_embeddings and vocab_multiple must be at least 1")

    @property
    def ffn_size(self) -> int:
        if self.intermediate_size:
            return self.intermediate_size
        return -(-(8 * self.hidden_size // 3) // 256) * 256


# VideoPoet's model sizes, named by transformer parameters (embeddings and head excluded: they grow with
# the vocabulary, about 2 x 1.2B more at paper scale), and a CPU demo size.
PRESETS: dict[str, LLMConfig] = {
    "tiny": LLMConfig(hidden_size=128, num_layers=4, num_heads=4, intermediate_size=384, max_position_embeddings=1024),
    "300m": LLMConfig(hidden_size=1024, num_layers=24, num_heads=16, intermediate_size=2816),
    "1b": LLMConfig(hidden_size=2048, num_layers=22, num_heads=16, intermediate_size=5632),
    "8b": LLMConfig(hidden_size=4096, num_layers=36, num_heads=32, num_kv_heads=8, intermediate_size=14336),
}


def llama_config(config: LLMConfig, vocab: SharedVocab) -> LlamaConfig:
    """The Hugging Face config of the backbone for this vocabulary."""
    hf = LlamaConfig(
        vocab_size=vocab.padded_size(config.vocab_multiple),
        hidden_size=config.hidden_size,
        intermediate_size=config.ffn_size,
        num_hidden_layers=config.num_layers,
        num_attention_heads=config.num_heads,
        num_key_value_heads=config.num_kv_heads or config.num_heads,
        max_position_embeddings=config.max_position_embeddings,
        rope_theta=config.rope_theta,
        rms_norm_eps=config.rms_norm_eps,
        initializer_range=config.initializer_range,
        tie_word_embeddings=config.tie_word_embeddings,
        pad_token_id=vocab.token_id("<pad>"),
        bos_token_id=vocab.token_id("<bos>"),
        eos_token_id=vocab.token_id("<eos>"),
    )
    return hf


def build_model(config: LLMConfig, vocab: SharedVocab) -> LlamaForCausalLM:
    """A freshly initialised backbone; created partitioned when a ZeRO-3 `HfDeepSpeedConfig` is active
    (see `parallelize.prepare_model_init`)."""
    return new_backbone(llama_config(config, vocab), config.attn_implementation)


def transformer_parameters(config: LLMConfig) -> int:
    """Parameters of the transformer blocks and final norm, without embeddings and head."""
    h, f = config.hidden_size, config.ffn_size
    head_dim = h // config.num_heads
    kv = (config.num_kv_heads or config.num_heads) * head_dim
    per_layer = h * h * 2 + h * kv * 2 + 3 * h * f + 2 * h
    return config.num_layers * per_layer + h


def token_losses(logits: torch.Tensor, labels: torch.Tensor, modes: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-position cross-entropy `[B, S]` and the targets it was taken against, for a batch mixing AR
    and MaskGIT rows.

    `labels` are aligned with the inputs (the Hugging Face convention, IGNORE_INDEX where not scored):
    AR rows predict label[i + 1] from position i; MaskGIT rows predict label[i] at masked position i.
    `modes` is `[B]`, or `[B, S]` per token for packed rows (each document its own mode); a document's
    first label is never scored (`<bos>`), so the shift never reaches into the next document.
    """
    shifted = torch.cat([labels[:, 1:], torch.full_like(labels[:, :1], IGNORE_INDEX)], dim=1)
    targets = torch.where((modes == MASKGIT) if modes.dim() == 2 else (modes == MASKGIT)[:, None], labels, shifted)
    losses = F.cross_entropy(logits.float().flatten(0, 1), targets.flatten(), ignore_index=IGNORE_INDEX, reduction="none")
    return losses.view_as(targets), targets


def sequence_loss(logits: torch.Tensor, labels: torch.Tensor, modes: torch.Tensor) -> torch.Tensor:
    """Mean cross-entropy over the scored positions (see `token_losses`)."""
    losses, targets = token_losses(logits, labels, modes)
    scored = targets != IGNORE_INDEX
    return losses.sum() / scored.sum().clamp(min=1)
