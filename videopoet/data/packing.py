"""Sequence packing: several task sequences (documents) per row, up to a row length, instead of one
padded sequence per row (`tasks.group_by_length`).

A packed row attends only within each document (`llm.masks.MaskLayout`), its position ids restart at 0
in every document, and each document keeps its own mode, prefix and labels, so every token's loss is
the one it has unpacked. Rows are filled first-fit-decreasing inside windows of consecutive samples
(the epoch's shuffled order still decides which samples meet); a sequence longer than the row length
gets a row of its own.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from videopoet.data.tasks import GROUP_WINDOW, IGNORE_INDEX, TaskSequence
from videopoet.sequence import CAUSAL
from videopoet.vocab import TASKS


def pack_rows(
    lengths: Sequence[int],
    row_length: int,
    batch_size: int,
    rng: np.random.Generator | None = None,
    window: int = GROUP_WINDOW,
) -> list[list[list[int]]]:
    """Micro-batches of `batch_size` rows, each row a list of indices into `lengths` whose lengths sum to
    at most `row_length` (or one longer sequence alone). Rows of similar fill share a micro-batch; with
    `rng` the micro-batches are shuffled."""
    if batch_size < 1 or window < 1 or row_length < 1:
        raise ValueError("batch_size, window and row_length must be at least 1")
    batches: list[list[list[int]]] = []
    span = batch_size * window
    for start in range(0, len(lengths), span):
        chunk = sorted(range(start, min(start + span, len(lengths))), key=lambda j: -lengths[j])
        rows: list[list[int]] = []
        free: list[int] = []
        for j in chunk:
            k = next((r for r, room in enumerate(free) if room >= lengths[j]), len(rows))
            if k == len(rows):
                rows.append([])
                free.append(row_length)
            rows[k].append(j)
            free[k] -= lengths[j]
        rows.sort(key=lambda r: -sum(lengths[j] for j in r))
        batches += [rows[b : b + batch_size] for b in range(0, len(rows), batch_size)]
    if rng is not None:
        batches = [batches[int(b)] for b in rng.permutation(len(batches))]
    return batches


def collate_packed(rows: list[list[TaskSequence]], pad_id: int) -> dict[str, Any]:
    """Packed rows as batch tensors: `input_ids`, `labels`, `position_ids` (restarting per document),
    `documents` (document index in the row, -1 on padding), and per token the `prefix_len`, `modes` and
    `tasks` of its document, all `[B, S]`; `lengths` `[B]` counts each row's real tokens."""
    import torch

    width = max(sum(len(s) for s in row) for row in rows)
    shape = (len(rows), width)
    ids = torch.full(shape, pad_id, dtype=torch.long)
    labels = torch.full(shape, IGNORE_INDEX, dtype=torch.long)
    positions, prefix, tasks = (torch.zeros(shape, dtype=torch.long) for _ in range(3))
    documents = torch.full(shape, -1, dtype=torch.long)
    modes = torch.full(shape, CAUSAL, dtype=torch.long)
    for r, row in enumerate(rows):
        at = 0
        for d, s in enumerate(row):
            if s.labels[0] != IGNORE_INDEX:  # the AR shift would read it from the previous document
                raise ValueError(f"a {s.task} sequence scores its first token; it cannot be packed")
            span = slice(at, at + len(s))
            ids[r, span] = torch.from_numpy(s.input_ids)
            labels[r, span] = torch.from_numpy(s.labels)
            positions[r, span] = torch.arange(len(s))
            documents[r, span] = d
            prefix[r, span], modes[r, span], tasks[r, span] = s.prefix_len, s.mode, TASKS.index(s.task)
            at += len(s)
    return {
        "input_ids": ids,
        "labels": labels,
        "position_ids": positions,
        "documents": documents,
        "prefix_len": prefix,
        "modes": modes,
        "tasks": tasks,
        "lengths": torch.tensor([sum(len(s) for s in row) for row in rows]),
    }
