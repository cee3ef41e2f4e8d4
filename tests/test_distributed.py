"""videopoet/distributed.py: the plain data parallelism under the tokenizers, on one rank and on two (gloo)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

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


RANKS = """
import json, sys, torch
from torch import nn
from videopoet import distributed

rank, world = distributed.join_from_environment()
torch.manual_seed(rank)  # different starting weights on each rank
net = nn.Sequential(nn.Linear(3, 2), nn.Linear(2, 1))
distributed.broadcast_module(net)
params = list(net.parameters())
params[0].grad = torch.full_like(params[0], float(rank + 1))  # rank 0: 1, rank 1: 2
params[1].grad = None if rank == 0 else torch.full_like(params[1], 4.0)  # a parameter one rank did not use
flags = distributed.average_gradients(params, flag=float(rank == 1))
plan = distributed.broadcast_object({"steps": 10 + rank})
result = {"rank": rank, "world": world, "weights": [p.tolist() for p in params], "flags": flags, "plan": plan,
          "grad0": params[0].grad.unique().tolist(), "grad1": params[1].grad.unique().tolist(),
          "grad2": params[2].grad is None}
open(sys.argv[1] + f"/rank{rank}.json", "w").write(json.dumps(result))
distributed.leave()
"""


@pytest.mark.slow  # two processes under torchrun
def test_two_ranks_broadcast_and_average(tmp_path: Path) -> None:
    script = tmp_path / "ranks.py"
    script.write_text(RANKS)
    subprocess.run(distributed.torchrun_command(2, [str(script), str(tmp_path)]), check=True, timeout=300,
                   env={**os.environ, "OMP_NUM_THREADS": "1"}, capture_output=True)
    r0, r1 = (json.loads((tmp_path / f"rank{r}.json").read_text()) for r in (0, 1))
    assert r0["world"] == r1["world"] == 2 and r0["weights"] == r1["weights"]  # rank 0's weights everywhere
    assert r0["grad0"] == r1["grad0"] == [1.5]  # (1 + 2) / 2
    assert r0["grad1"] == r1["grad1"] == [2.0]  # (0 + 4) / 2: no gradient counts as zero
    assert r0["grad2"] and r1["grad2"]  # no rank has one: it stays None, which the optimizer skips
    assert r0["flags"] == r1["flags"] == 1.0  # rank 1's flag reaches rank 0
    assert r0["plan"] == r1["plan"] == {"steps": 10}
