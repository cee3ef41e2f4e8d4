"""The attention fast paths and sequence packing against the dense SDPA path on the CPU (fp32).

- causal-only batches pass no mask (SDPA's `is_causal`): same logits at real tokens, losses and gradients;
- FlexAttention block masks: same logits and losses for all three modes, padding and packed rows (forward
  only: torch 2.11's FlexAttention has no backward on the CPU; tests/gpu checks gradients on CUDA);
- a packed batch: the same per-token losses and gradients as its sequences run one per row.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from videopoet.data.packing import collate_packed
from videopoet.data.tasks import IGNORE_INDEX, TaskBuilder, TaskConfig, TaskSequence, collate, record_info
from videopoet.llm.masks import MaskLayout, attention_inputs
from videopoet.llm.model import LLMConfig, build_model, token_losses
from videopoet.sequence import CAUSAL, MASKGIT, PREFIX
from videopoet.vocab import SharedVocab

VOCAB = SharedVocab(text_size=300, video_bits=6, audio_levels=2, audio_codebook_size=16)


@pytest.fixture(scope="module")
def model() -> torch.nn.Module:
    # head_dim 32: the CPU FlexAttention kernel of torch 2.11 computes wrong rows at head_dim 8
    torch.manual_seed(0)
    config = LLMConfig(hidden_size=64, num_layers=2, num_heads=2, intermediate_size=128, max_position_embeddings=128)
    return build_model(config, VOCAB).eval()


def sequence(length: int, prefix: int, mode: int, rng: np.random.Generator) -> TaskSequence:
    """Random ids; labels on the output (AR) or on a random half of it (MaskGIT), never on the first token."""
    ids = rng.integers(0, VOCAB.size, length)
    labels = np.full(length, IGNORE_INDEX)
    scored = np.arange(max(prefix, 1), length)
    if mode == MASKGIT:
        scored = scored[rng.random(len(scored)) < 0.5]
    labels[scored] = ids[scored]
    return TaskSequence(ids, labels, prefix, [(prefix, length)], mode, "text_to_video")


def packed_batch(rows: list[list[tuple[int, int, int]]], seed: int = 0) -> tuple[dict, list[list[TaskSequence]]]:
    """A packed batch of (length, prefix, mode) documents per row, and its sequences."""
    rng = np.random.default_rng(seed)
    seqs = [[sequence(n, p, m, rng) for n, p, m in row] for row in rows]
    return collate_packed(seqs, pad_id=VOCAB.token_id("<pad>")), seqs


def forward(model: torch.nn.Module, batch: dict, kind: str = "dense") -> tuple[torch.Tensor, torch.Tensor]:
    """Logits and per-token losses of a batch, through `attention_inputs` as the trainer does."""
    logits = model(input_ids=batch["input_ids"], **attention_inputs(batch, kind, "cpu")).logits
    return logits, token_losses(logits, batch["labels"], batch["modes"])[0]


def real(batch: dict) -> torch.Tensor:
    return MaskLayout.of_batch(batch).documents >= 0


def test_causal_only_batch_passes_no_mask_and_matches_the_dense_path(model: torch.nn.Module) -> None:
    rng = np.random.default_rng(1)
    seqs = [sequence(20, 0, CAUSAL, rng), sequence(14, 1, PREFIX, rng), sequence(17, 0, CAUSAL, rng)]  # right padding
    batch = collate(seqs, pad_id=VOCAB.token_id("<pad>"))
    assert attention_inputs(batch, "dense", "cpu") == {}
    dense = MaskLayout.of_batch(batch).dense()
    outs, grads = [], []
    for mask in ({}, {"attention_mask": dense}):
        model.zero_grad()
        logits = model(input_ids=batch["input_ids"], **mask).logits
        losses = token_losses(logits, batch["labels"], batch["modes"])[0]
        losses.sum().backward()
        outs.append((logits[real(batch)], losses))
        grads.append([p.grad.clone() for p in model.parameters()])
    torch.testing.assert_close(outs[0][0], outs[1][0], rtol=0, atol=1e-5)
    torch.testing.assert_close(outs[0][1], outs[1][1], rtol=0, atol=1e-5)
    for a, b in zip(*grads, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)
    model.zero_grad()


def test_only_causal_only_batches_skip_the_mask() -> None:
    rng = np.random.default_rng(2)
    pad = VOCAB.token_id("<pad>")
    for seqs in ([sequence(12, 4, PREFIX, rng)], [sequence(12, 0, MASKGIT, rng)], [sequence(12, 0, CAUSAL, rng), sequence(9, 2, PREFIX, rng)]):
        assert "attention_mask" in attention_inputs(collate(seqs, pad_id=pad), "dense", "cpu")
    two_causal_documents, _ = packed_batch([[(12, 1, PREFIX), (5, 0, CAUSAL)]])
    assert "attention_mask" in attention_inputs(two_causal_documents, "dense", "cpu")


# every mode, padding, and packed rows mixing modes; one shape, so FlexAttention compiles once
FLEX_ROWS = [
    [(40, 0, CAUSAL)],
    [(33, 9, PREFIX)],
    [(27, 6, MASKGIT)],
    [(14, 5, PREFIX), (11, 4, MASKGIT), (9, 0, CAUSAL)],
    [(16, 3, MASKGIT), (20, 7, PREFIX)],
]


@pytest.mark.slow  # compiles FlexAttention for the CPU: ~20 s with a warm inductor cache, a minute cold
def test_flex_attention_equals_the_dense_sdpa_path(model: torch.nn.Module) -> None:
    batch, _ = packed_batch(FLEX_ROWS)
    with torch.no_grad():
        logits, losses = forward(model, batch, "dense")
        model.set_attn_implementation("flex_attention")
        try:
            flex_inputs = attention_inputs(batch, "flex", "cpu")
            assert type(flex_inputs["attention_mask"]).__name__ == "BlockMask"
            flex_logits, flex_losses = forward(model, batch, "flex")
        finally:
            model.set_attn_implementation("sdpa")
    torch.testing.assert_close(flex_logits[real(batch)], logits[real(batch)], rtol=0, atol=1e-5)
    torch.testing.assert_close(flex_losses, losses, rtol=0, atol=1e-5)


def test_packed_batch_has_the_unpacked_per_token_losses_and_gradients(model: torch.nn.Module) -> None:
    rows = [[(14, 5, PREFIX), (11, 4, MASKGIT), (9, 0, CAUSAL)], [(16, 3, MASKGIT), (20, 7, PREFIX)]]
    packed, seqs = packed_batch(rows, seed=3)
    flat = [s for row in seqs for s in row]
    unpacked = collate(flat, pad_id=VOCAB.token_id("<pad>"))
    results = []
    for batch in (packed, unpacked):
        model.zero_grad()
        _, losses = forward(model, batch)
        losses.sum().backward()
        results.append((losses, [p.grad.clone() for p in model.parameters()]))
    (packed_losses, packed_grads), (unpacked_losses, unpacked_grads) = results
    # document d of the packed rows is row d of the unpacked batch
    k = 0
    for r, row in enumerate(seqs):
        at = 0
        for s in row:
            torch.testing.assert_close(packed_losses[r, at : at + len(s)], unpacked_losses[k, : len(s)], rtol=0, atol=1e-5)
            at, k = at + len(s), k + 1
    for a, b in zip(packed_grads, unpacked_grads, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-6)
    model.zero_grad()


def test_packed_mask_is_block_diagonal_of_the_documents_masks() -> None:
    rows = [[(6, 2, PREFIX), (5, 2, MASKGIT), (4, 0, CAUSAL)]]
    batch, seqs = packed_batch(rows)
    mask = MaskLayout.of_batch(batch).dense()[0, 0]
    alone = MaskLayout.of_batch(collate(seqs[0], pad_id=0)).dense()[:, 0]
    at = 0
    for d, s in enumerate(seqs[0]):
        n = len(s)
        assert torch.equal(mask[at : at + n, at : at + n], alone[d, :n, :n])
        assert not mask[at : at + n, :at].any() and not mask[at : at + n, at + n :].any()  # no other document, no padding
        assert torch.equal(batch["position_ids"][0, at : at + n], torch.arange(n))
        at += n


def test_loader_packs_real_task_sequences_with_unchanged_losses(model: torch.nn.Module, make_records, records_vocab) -> None:
    from videopoet.data.loader import TaskLoader

    records = make_records(12)
    builder = TaskBuilder(records_vocab, TaskConfig())
    longest = max(builder.length(record_info(r), t, False) for r in records for t in builder.available(record_info(r)))
    loader = TaskLoader(records, builder, 2, seed=5, pack_length=2 * longest, repeat=False)
    micro = loader.plan(0)[0]
    assert max(len(row) for row in micro) >= 2  # the fullest rows come first: two documents or more
    batch = loader.build_batch(micro)
    with torch.no_grad():
        _, packed = forward(model, batch)
        for r, row in enumerate(micro):
            at = 0
            for s in row:
                one = collate([loader.sequence(s)], pad_id=records_vocab.token_id("<pad>"))
                n = int(one["lengths"][0])
                torch.testing.assert_close(packed[r, at : at + n], forward(model, one)[1][0], rtol=0, atol=1e-5)
                at += n
