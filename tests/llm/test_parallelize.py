"""Local launch helpers of llm/parallelize.py."""

from __future__ import annotations

import os
import socket
from pathlib import Path

import pytest

from videopoet.llm.parallelize import (
    cpu_threads_per_rank,
    free_port,
    launch_command,
    remove_cpu_allreduce_buffer,
)


def test_free_port_can_be_bound_and_launch_command_uses_it() -> None:
    port = free_port()
    assert 1024 <= port < 65536
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", port))  # the rendezvous can take it
    cmd = launch_command(2, "c.yaml", ["llm_train.steps=1"], "tok", "run", master_port=port)
    assert cmd[cmd.index("--master_port") + 1] == str(port) and cmd[-1] == "llm_train.steps=1"
    assert cmd[cmd.index("--data") + 1] == "tok" and cmd[cmd.index("--out") + 1] == "run"  # paths are options


def test_cpu_threads_are_shared_among_local_ranks(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: set(range(8)), raising=False)
    monkeypatch.delenv("LOCAL_WORLD_SIZE", raising=False)
    monkeypatch.setenv("LOCAL_SIZE", "2")  # what the deepspeed launcher sets
    assert cpu_threads_per_rank() == 4
    monkeypatch.setenv("LOCAL_SIZE", "16")
    assert cpu_threads_per_rank() == 1
    monkeypatch.delenv("LOCAL_SIZE")
    monkeypatch.setenv("LOCAL_WORLD_SIZE", "4")  # what torchrun sets
    assert cpu_threads_per_rank() == 2
    monkeypatch.delenv("LOCAL_WORLD_SIZE")
    assert cpu_threads_per_rank() == 8


def test_cpu_allreduce_buffer_of_this_rank_is_removed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MASTER_ADDR", "127.0.0.1")
    monkeypatch.setenv("MASTER_PORT", "29999")
    mine = tmp_path / f"deepspeed_allreduce_buffer_{os.getuid()}_127.0.0.1_29999_1"
    other = tmp_path / f"deepspeed_allreduce_buffer_{os.getuid()}_127.0.0.1_29999_0"
    another_run = tmp_path / f"deepspeed_allreduce_buffer_{os.getuid()}_127.0.0.1_29998_1"
    for f in (mine, other, another_run):
        f.write_bytes(b"x")
    assert remove_cpu_allreduce_buffer(1, tmp_path)
    assert not mine.exists() and other.exists() and another_run.exists()
    assert not remove_cpu_allreduce_buffer(1, tmp_path)  # already gone: nothing to do
