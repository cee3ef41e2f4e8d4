"""Local launch helpers of llm/parallelize.py."""

from __future__ import annotations

import socket

from videopoet.llm.parallelize import free_port, launch_command


def test_free_port_can_be_bound_and_launch_command_uses_it() -> None:
    port = free_port()
    assert 1024 <= port < 65536
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", port))  # the rendezvous can take it
    cmd = launch_command(2, "c.yaml", ["llm_train.steps=1"], master_port=port)
    assert cmd[cmd.index("--master_port") + 1] == str(port) and cmd[-1] == "llm_train.steps=1"
