"""videopoet/distributed.py: the plain data parallelism under the tokenizers, on one rank. Two gloo ranks
(broadcast, the averaged gradients, the stop flag, a broadcast plan) share one torchrun launch with the
training loop's two-rank test: tests/tokenizers/test_trainer.py."""

from __future__ import annotations

import os
import sys

import pytest
import torch
from torch import nn

from videopoet import distributed
from videopoet.errors import UserError


def test_cpu_threads_are_shared_among_local_ranks(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: set(range(8)), raising=False)
    monkeypatch.delenv("LOCAL_WORLD_SIZE", raising=False)
    monkeypatch.setenv("LOCAL_SIZE", "2")  # what the deepspeed launcher sets
    assert distributed.cpu_threads_per_rank() == 4
    monkeypatch.setenv("LOCAL_SIZE", "16")
    assert distributed.cpu_threads_per_rank() == 1
    monkeypatch.delenv("LOCAL_SIZE")
    monkeypatch.setenv("LOCAL_WORLD_SIZE", "4")  # what torchrun sets
    assert distributed.cpu_threads_per_rank() == 2
    monkeypatch.delenv("LOCAL_WORLD_SIZE")
    assert distributed.cpu_threads_per_rank() == 8


def test_relaunch_command_drops_nproc_and_checks_it() -> None:
    argv = ["tokenizer", "train", "video", "--nproc", "2", "--data", "d", "--nproc=3", "train.steps=4"]
    assert distributed.without_nproc(argv) == ["tokenizer", "train", "video", "--data", "d", "train.steps=4"]
    cmd = distributed.torchrun_command(2, ["-m", "videopoet.cli", "x"])
    assert cmd[:3] == [sys.executable, "-m", "torch.distributed.run"] and cmd[cmd.index("--nproc_per_node") + 1] == "2"
    assert cmd[-3:] == ["-m", "videopoet.cli", "x"]
    with pytest.raises(UserError, match="--nproc"):
        distributed.torchrun_command(0, [])


def test_one_process_is_a_group_of_one(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    assert not distributed.launched() and distributed.join_from_environment() == (0, 1)
    assert distributed.rank_and_world() == (0, 1) and distributed.broadcast_object({"a": 1}) == {"a": 1}
    layer = nn.Linear(2, 2)
    layer(torch.ones(1, 2)).sum().backward()
    grad = layer.weight.grad.clone()
    assert distributed.average_gradients(list(layer.parameters()), flag=1.0) == 1.0  # the flag comes back as is
    assert torch.equal(layer.weight.grad, grad)  # and the gradients are untouched
    assert distributed.local_device("cpu") == torch.device("cpu")
    value = torch.tensor([1.0, 3.0], requires_grad=True)
    mean = distributed.mean_over_ranks(value)
    assert torch.equal(mean, value.detach()) and not mean.requires_grad  # one rank: the value, detached
