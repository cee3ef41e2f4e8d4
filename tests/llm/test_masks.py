"""Attention masks of the three modes, alone and mixed in one batch, and their effect through the model."""

from __future__ import annotations

import pytest
import torch

from videopoet.llm.masks import additive_mask, attention_mask
from videopoet.sequence import CAUSAL, MASKGIT, PREFIX, mode_id


def mask_of(mode: int, prefix: int = 3, length: int = 6, seq: int = 7) -> torch.Tensor:
    return attention_mask(seq, torch.tensor([prefix]), torch.tensor([length]), torch.tensor([mode]))[0, 0]


def test_causal() -> None:
    m = mask_of(CAUSAL)
    for i in range(6):
        for j in range(6):
            assert bool(m[i, j]) == (j <= i)


def test_prefix_bidirectional_then_causal() -> None:
    m = mask_of(PREFIX, prefix=3)
    assert m[:3, :3].all()  # the prefix sees all of itself
    assert not m[:3, 3:].any()  # but nothing after it
    assert m[4, :5].all() and not m[4, 5]  # output: causal


def test_maskgit_prefix_cached_output_bidirectional() -> None:
    m = mask_of(MASKGIT, prefix=3, length=6)
    assert m[:3, :3].all() and not m[:3, 3:6].any()  # prefix attends only to itself: reusable KV
    assert m[3:6, :6].all()  # output attends to everything, both directions


def test_padding_never_attended_rows_stay_finite() -> None:
    for mode in (CAUSAL, PREFIX, MASKGIT):
        m = mask_of(mode, prefix=2, length=5, seq=7)
        assert not m[:5, 5:].any()
        assert m[5, 5] and m[6, 6]  # padded queries see themselves only


def test_mixed_batch_rows_follow_their_mode() -> None:
    batch = attention_mask(6, torch.tensor([2, 2, 2]), torch.tensor([6, 6, 6]), torch.tensor([CAUSAL, PREFIX, MASKGIT]))
    assert torch.equal(batch[0, 0], mask_of(CAUSAL, 2, 6, 6))
    assert torch.equal(batch[1, 0], mask_of(PREFIX, 2, 6, 6))
    assert torch.equal(batch[2, 0], mask_of(MASKGIT, 2, 6, 6))


def test_mode_names_and_additive() -> None:
    assert mode_id("ar") == PREFIX and mode_id("maskgit") == MASKGIT and mode_id(0) == CAUSAL
    with pytest.raises(ValueError, match="unknown attention mode"):
        mode_id("sideways")
    add = additive_mask(mask_of(PREFIX), torch.float32)
    assert add[0, 0] == 0 and add[0, 5] == torch.finfo(torch.float32).min


def previous_mask(seq_len: int, prefix_len: torch.Tensor, lengths: torch.Tensor, modes: torch.Tensor) -> torch.Tensor:
    """The mask formula before packing (padded queries then saw every real key)."""
    i, j = torch.arange(seq_len)[:, None], torch.arange(seq_len)[None, :]
    p, n, m = prefix_len.view(-1, 1, 1), lengths.view(-1, 1, 1), modes.view(-1, 1, 1)
    causal = (j <= i).unsqueeze(0)
    prefix_key = j.unsqueeze(0) < p
    allowed = torch.where(m == MASKGIT, prefix_key | ((i.unsqueeze(0) >= p) & (j.unsqueeze(0) < n)),
                          torch.where(m == PREFIX, causal | prefix_key, causal.expand(len(p), -1, -1)))
    return ((allowed & (j.unsqueeze(0) < n)) | (i == j).unsqueeze(0)).unsqueeze(1)


def test_real_tokens_see_what_they_saw_before_packing_existed() -> None:
    g = torch.Generator().manual_seed(0)
    lengths = torch.randint(4, 17, (12,), generator=g)
    prefix = (torch.rand(12, generator=g) * lengths).long()
    modes = torch.randint(0, 3, (12,), generator=g)
    new, old = attention_mask(16, prefix, lengths, modes), previous_mask(16, prefix, lengths, modes)
    for b in range(12):
        n = int(lengths[b])
        assert torch.equal(new[b, 0, :n], old[b, 0, :n])
        assert torch.equal(new[b, 0, n:], torch.eye(16, dtype=torch.bool)[n:])  # padded queries: themselves only
