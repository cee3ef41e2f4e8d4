"""Local launch helpers of llm/parallelize.py."""

from __future__ import annotations

import os
import socket
from pathlib import Path

import pytest

from videopoet.llm.parallelize import (
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


# two ranks of a plain gloo group; the rank named by the fault hook dies at step 3, the other must stop with
# a line naming it (the store lives with rank 0, so both directions take different paths)
_DYING_RANK_SCRIPT = """
import sys, torch, torch.distributed as dist
from videopoet.llm import parallelize
dist.init_process_group("gloo")
try:
    with parallelize.explain_lost_ranks(wait_s=2):
        for step in range(1, 100):
            parallelize.fault_point(dist.get_rank(), step)
            dist.all_reduce(torch.ones(4))
except parallelize.PeerLostError as e:
    print(e)
    sys.exit(2)
"""


@pytest.mark.slow  # two fresh Python processes
@pytest.mark.parametrize("dying", [1, 0])
def test_survivor_of_a_dying_rank_names_it(dying: int) -> None:
    import subprocess
    import sys
    import time

    port = free_port()
    env = {**os.environ, "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port), "WORLD_SIZE": "2", "OMP_NUM_THREADS": "1",
           "VIDEOPOET_FAULT_KILL_RANK": str(dying), "VIDEOPOET_FAULT_AT_STEP": "3"}
    procs = [subprocess.Popen([sys.executable, "-c", _DYING_RANK_SCRIPT], env={**env, "RANK": str(r)}, text=True,
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT) for r in (0, 1)]
    dead, survivor = procs[dying], procs[1 - dying]
    try:
        assert dead.wait(timeout=120) == 1
        died = time.monotonic()
        out, _ = survivor.communicate(timeout=60)
    finally:
        for p in procs:
            p.kill()
    assert time.monotonic() - died < 30  # stops at once, not at gloo's 30-minute timeout
    assert survivor.returncode == 2, out
    assert f"rank {1 - dying} of 2: lost rank {dying} (it died or hangs" in out
