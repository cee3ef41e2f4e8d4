"""Attention masks for the three modes of the prefix LM (docs/design.md, "Sequence format"), for rows that
hold one task sequence each and for packed rows that hold several (`data.packing`).

True means "query i may attend to key j". Within one document (a task sequence):

- causal: j <= i (plain decoder, e.g. unconditional generation);
- prefix (AR mode): bidirectional inside the prefix, causal over the output: j <= i or j < prefix_len;
- maskgit: the prefix attends only to itself (so its keys and values can be computed once and reused
  while sampling), the output attends to the prefix and bidirectionally to the whole output.

No query attends to another document or to padding; every query may attend to itself, so padded
positions stay finite. `MaskLayout.mask_mod` is the one definition of these rules: `dense` evaluates it
into the boolean `[B, 1, S, S]` tensor SDPA (or eager) takes, `block_mask` hands it to FlexAttention.
`attention_inputs` picks what a training forward passes (docs/training.md, "Attention kernels"): no mask
at all for a causal-only batch (SDPA's `is_causal`, which flash attention runs), a dense mask, or a
FlexAttention `BlockMask`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

import torch

from videopoet.sequence import CAUSAL, MASKGIT, PREFIX

AttentionKind = Literal["dense", "flex"]


@dataclass
class MaskLayout:
    """Per token `[B, S]`: its document in the row (-1: padding), its position inside the document, and
    the prefix length and mode of that document."""

    documents: torch.Tensor
    positions: torch.Tensor
    prefix_len: torch.Tensor
    modes: torch.Tensor

    @classmethod
    def rows(cls, seq_len: int, prefix_len: torch.Tensor, lengths: torch.Tensor, modes: torch.Tensor) -> MaskLayout:
        """One document per row: `[B]` prefix lengths, lengths and modes, padded to `seq_len`."""
        positions = torch.arange(seq_len, device=lengths.device).expand(len(lengths), -1)
        documents = torch.where(positions < lengths[:, None], 0, -1)
        return cls(documents, positions, prefix_len[:, None].expand_as(positions), modes[:, None].expand_as(positions))

    @classmethod
    def of_batch(cls, batch: dict[str, torch.Tensor]) -> MaskLayout:
        """The layout of a collated batch: packed (`documents` and per-token `position_ids`, `prefix_len`,
        `modes`; see `data.packing.collate_packed`) or one sequence per row (`data.tasks.collate`)."""
        if "documents" in batch:
            return cls(batch["documents"], batch["position_ids"], batch["prefix_len"], batch["modes"])
        return cls.rows(batch["input_ids"].shape[1], batch["prefix_len"], batch["lengths"], batch["modes"])

    def to(self, device: torch.device | str) -> MaskLayout:
        return MaskLayout(*(t.to(device, non_blocking=True) for t in (self.documents, self.positions, self.prefix_len, self.modes)))

    @property
    def mask_mod(self) -> Callable[[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]:
        """FlexAttention's `mask_mod(b, h, q, kv)`; also evaluated on broadcast index grids by `dense`."""
        documents, positions, prefix_len, modes = self.documents, self.positions, self.prefix_len, self.modes

        def allowed(b: torch.Tensor, h: torch.Tensor, q: torch.Tensor, kv: torch.Tensor) -> torch.Tensor:
            doc_q, doc_k = documents[b, q], documents[b, kv]
            pos_q, pos_k = positions[b, q], positions[b, kv]
            p, m = prefix_len[b, q], modes[b, q]
            causal = pos_k <= pos_q
            prefix_key = pos_k < p
            rule = torch.where(m == MASKGIT, prefix_key | (pos_q >= p), torch.where(m == PREFIX, causal | prefix_key, causal))
            return (rule & (doc_q == doc_k) & (doc_k >= 0)) | (q == kv)

        return allowed

    def dense(self) -> torch.Tensor:
        """The boolean `[B, 1, S, S]` mask (transformers passes a 4D mask through to SDPA unchanged)."""
        batch, seq = self.documents.shape
        device = self.documents.device
        b = torch.arange(batch, device=device)[:, None, None]
        i = torch.arange(seq, device=device)
        return self.mask_mod(b, b, i[None, :, None], i[None, None, :]).unsqueeze(1)

    def block_mask(self) -> Any:
        """The FlexAttention `BlockMask` of the same rules (blocks no query sees are skipped)."""
        from torch.nn.attention.flex_attention import create_block_mask

        batch, seq = self.documents.shape
        return create_block_mask(self.mask_mod, batch, None, seq, seq, device=self.documents.device)

    def causal_only(self) -> bool:
        """Whether the plain causal mask gives every real token the same attention: one document per row
        starting at position 0, padding only at the end, and every document causal or AR with a prefix
        of at most one token (j < 1 adds nothing to j <= i). Padded queries then see earlier tokens
        instead of only themselves, which changes nothing a loss reads."""
        real = self.documents >= 0
        at_end = (real[:, :-1] | ~real[:, 1:]).all()  # no real token after a padded one
        one_doc = (self.documents <= 0).all()
        causal = (self.modes == CAUSAL) | ((self.modes == PREFIX) & (self.prefix_len <= 1))
        return bool(at_end & one_doc & (causal | ~real).all())


def attention_mask(seq_len: int, prefix_len: torch.Tensor, lengths: torch.Tensor, modes: torch.Tensor) -> torch.Tensor:
    """Boolean `[B, 1, S, S]` mask for a batch whose rows may use different modes.

    prefix_len, lengths and modes are `[B]` integer tensors; `modes` holds CAUSAL, PREFIX or MASKGIT.
    """
    return MaskLayout.rows(seq_len, prefix_len, lengths, modes).dense()


def attention_inputs(batch: dict[str, torch.Tensor], kind: AttentionKind, device: torch.device | str) -> dict[str, Any]:
    """What a training forward passes besides `input_ids`: `attention_mask` (absent for a causal-only
    batch, so SDPA may take its flash kernel; a boolean 4D tensor for `dense`; a `BlockMask` for `flex`)
    and, for packed rows, `position_ids` that restart at every document.

    Decided on the batch as the loader gave it (on the host, so no device sync); built on `device`."""
    layout = MaskLayout.of_batch(batch)
    inputs: dict[str, Any] = {}
    if "documents" in batch:
        inputs["position_ids"] = batch["position_ids"].to(device, non_blocking=True)
    elif layout.causal_only():
        return inputs
    layout = layout.to(device)
    inputs["attention_mask"] = layout.block_mask() if kind == "flex" else layout.dense()
    return inputs


def additive_mask(mask: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """A boolean mask as the additive float mask (0 allowed, most negative value blocked) that eager
    attention implementations expect."""
    zero = torch.zeros((), dtype=dtype, device=mask.device)
    return torch.where(mask, zero, torch.finfo(dtype).min)
