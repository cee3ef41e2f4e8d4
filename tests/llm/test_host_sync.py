"""The host-sync counter (tests/llm/conftest.py) that tests/llm/test_train.py holds the training step to:
it sees every way code reads a device tensor on the host, on the CPU too, and lets host tensors be."""

from __future__ import annotations

import torch


def test_sees_each_way_of_reading_a_device_tensor(host_syncs) -> None:
    w = torch.nn.Linear(4, 1).requires_grad_(False)
    x = torch.randn(8, 4)
    with host_syncs.counting():
        y = w(x).squeeze(1)  # a device result
        total = y.sum() * 2 + 1  # device math alone: no sync
        host_syncs.window()
        total.item()
        bool(total > 0)
        float(total)
        int(total)
        y.tolist()
        y.cpu()
        y[y > 0]  # boolean indexing: its size depends on the data
        y.nonzero()
        if (y > 0).any():
            pass
    quiet, loud = host_syncs.windows
    assert quiet == []
    ops = [e.op for e in loud]
    assert ops == ["_local_scalar_dense"] * 4 + ["tolist", "cpu", "index", "nonzero", "_local_scalar_dense"]
    assert all(e.where.startswith("tests/llm/test_host_sync.py:") for e in loud)


def test_host_tensors_are_free_and_their_device_copies_are_not(host_syncs) -> None:
    batch = {"lengths": torch.tensor([3, 5]), "ids": torch.arange(8).view(2, 4)}
    host_syncs.mark_host(batch)
    with host_syncs.counting():
        n = int(batch["lengths"].sum())  # the host copy: free
        positions = torch.arange(4)[None, :] < batch["lengths"][:, None]  # with a tensor made from nothing: host too
        bool(positions.any())
        moved = batch["lengths"].to(torch.device("cpu"), non_blocking=True)  # the training device's copy
        host_syncs.window()
        moved.max().item()
    free, moved_read = host_syncs.windows
    assert n == 8 and free == []
    assert [e.op for e in moved_read] == ["_local_scalar_dense"]


def test_paused_code_is_neither_counted_nor_tracked(host_syncs) -> None:
    with host_syncs.counting():
        with host_syncs.paused():
            made = torch.ones(3) * 2
            made.sum().item()
        made.sum().item()  # made while paused: untracked, so a device tensor
    assert [e.op for e in host_syncs.events] == ["_local_scalar_dense"]
