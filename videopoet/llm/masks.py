"""Attention masks for the three modes of the prefix LM (docs/design.md, "Sequence format").

All masks are boolean `[B, 1, S, S]` tensors where True means "query i may attend to key j"; transformers
passes a 4D mask through to SDPA unchanged.

- causal: j <= i (plain decoder, e.g. unconditional generation);
- prefix (AR mode): bidirectional inside the prefix, causal over the output: j <= i or j < prefix_len;
- maskgit: the prefix attends only to itself (so its keys and values can be computed once and reused
  while sampling), the output attends to the prefix and bidirectionally to the whole output.

Keys at or past a row's length (padding) are never attended; every query may attend to itself, so padded
rows stay finite.
"""

from __future__ import annotations

import torch

from videopoet.sequence import MASKGIT, PREFIX


def attention_mask(
    seq_len: int,
    prefix_len: torch.Tensor,
    lengths: torch.Tensor,
    modes: torch.Tensor,
) -> torch.Tensor:
    """Boolean `[B, 1, S, S]` mask for a batch whose rows may use different modes.

    prefix_len, lengths and modes are `[B]` integer tensors; `modes` holds CAUSAL, PREFIX or MASKGIT.
    """
    device = prefix_len.device
    i = torch.arange(seq_len, device=device)[:, None]  # query
    j = torch.arange(seq_len, device=device)[None, :]  # key
    p = prefix_len.view(-1, 1, 1)
    n = lengths.view(-1, 1, 1)
    m = modes.view(-1, 1, 1)
    causal = (j <= i).unsqueeze(0)
    in_prefix_key = j.unsqueeze(0) < p
    prefix_mode = causal | in_prefix_key
    maskgit_mode = in_prefix_key | ((i.unsqueeze(0) >= p) & (j.unsqueeze(0) < n))
    allowed = torch.where(m == MASKGIT, maskgit_mode, torch.where(m == PREFIX, prefix_mode, causal.expand_as(prefix_mode)))
    allowed = allowed & (j.unsqueeze(0) < n)
    allowed = allowed | (i == j).unsqueeze(0)
    return allowed.unsqueeze(1)


def additive_mask(mask: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """A boolean mask as the additive float mask (0 allowed, most negative value blocked) that eager
    attention implementations expect."""
    zero = torch.zeros((), dtype=dtype, device=mask.device)
    return torch.where(mask, zero, torch.finfo(dtype).min)
