"""Sequence packing: rows within the row length, every sequence once, per-document positions and labels
(the masks and losses of packed rows: tests/llm/test_attention.py; the packed loader: tests/data/test_loader.py)."""

from __future__ import annotations

import numpy as np
import pytest

from videopoet.data.packing import collate_packed, pack_rows
from videopoet.data.tasks import IGNORE_INDEX, TaskSequence
from videopoet.sequence import MASKGIT, PREFIX
from videopoet.vocab import TASKS


def test_rows_fit_the_length_and_take_every_sequence_once() -> None:
    lengths = [7, 3, 5, 2, 9, 4, 1, 12, 6]
    batches = pack_rows(lengths, row_length=10, batch_size=2, rng=np.random.default_rng(0))
    rows = [row for batch in batches for row in batch]
    assert sorted(j for row in rows for j in row) == list(range(len(lengths)))
    assert all(len(batch) <= 2 for batch in batches)
    for row in rows:
        assert sum(lengths[j] for j in row) <= 10 or row == [7]  # the 12-token sequence gets a row of its own
    assert len(rows) < len(lengths)  # packing shares rows
    with pytest.raises(ValueError):
        pack_rows(lengths, row_length=0, batch_size=2)


def sequence(n: int, prefix: int, mode: int, task: str, first: int) -> TaskSequence:
    labels = np.full(n, IGNORE_INDEX)
    labels[prefix:] = np.arange(first + prefix, first + n)
    return TaskSequence(np.arange(first, first + n), labels, prefix, [(prefix, n)], mode, task)


def test_collate_keeps_each_documents_tokens_positions_and_mode() -> None:
    a, b = sequence(4, 2, PREFIX, TASKS[0], 100), sequence(3, 1, MASKGIT, TASKS[1], 200)
    batch = collate_packed([[a, b], [b]], pad_id=0)
    assert batch["input_ids"].shape == (2, 7) and batch["lengths"].tolist() == [7, 3]
    assert batch["input_ids"][0].tolist() == [100, 101, 102, 103, 200, 201, 202]
    assert batch["position_ids"][0].tolist() == [0, 1, 2, 3, 0, 1, 2]
    assert batch["documents"][0].tolist() == [0] * 4 + [1] * 3 and batch["documents"][1].tolist() == [0] * 3 + [-1] * 4
    assert batch["modes"][0].tolist() == [PREFIX] * 4 + [MASKGIT] * 3
    assert batch["prefix_len"][0].tolist() == [2] * 4 + [1] * 3
    assert batch["labels"][1, 3:].eq(IGNORE_INDEX).all()  # padding scores nothing
    scored_first = sequence(3, 0, MASKGIT, TASKS[1], 300)
    with pytest.raises(ValueError, match="cannot be packed"):
        collate_packed([[a, scored_first]], pad_id=0)
