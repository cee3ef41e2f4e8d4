"""Fixtures of the server's tests: a tiny random exported model (`serve.tiny`), its engine (loaded once
per session), and services over it in a fresh `--out` folder."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from videopoet.serve.tiny import make_tiny_model

    return make_tiny_model(tmp_path_factory.mktemp("serve-model"))


@pytest.fixture(scope="session")
def engine(tiny_model: Path):
    from videopoet.serve.engine import Engine

    return Engine.load(tiny_model)


@pytest.fixture
def make_service(engine, tmp_path: Path) -> Callable:
    """`make_service(out=None, keys=None, run_worker=True, retention=None, **limits)` -> a `Service` (not started)."""
    from videopoet.serve.limits import Limits
    from videopoet.serve.server import Service

    def make(out: Path | None = None, keys=None, run_worker: bool = True, batch_wait_s: float = 0.05, retention=None, **limits):
        return Service(engine, out or tmp_path / "out", keys, Limits(**limits), run_worker=run_worker,
                       batch_wait_s=batch_wait_s, drain_s=60, model_name="tiny", retention=retention)

    return make


def wait_for(client, job_id: str, states: tuple[str, ...] = ("done", "failed", "cancelled"), timeout_s: float = 120, **kw) -> dict:
    """Poll a job until it reaches one of `states`."""
    deadline = time.monotonic() + timeout_s
    while True:
        job = client.get(f"/v1/generations/{job_id}", **kw).json()
        if job["state"] in states:
            return job
        assert time.monotonic() < deadline, f"job {job_id} still {job['state']} after {timeout_s} s"
        time.sleep(0.05)


@pytest.fixture
def wait() -> Callable:
    """`wait(client, job_id, states=FINAL, timeout_s=120, **request_kwargs)` -> the job once in a state."""
    return wait_for


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _live_server(tiny_model: Path, folder: Path, *extra: str):
    """Start `videopoet serve` as a process on a free port of 127.0.0.1; yields its facts, then SIGTERM."""
    import os
    import signal
    import subprocess
    import sys
    import urllib.request

    port = free_port()
    out = folder / "serve-out"
    log = (folder / "serve.log").open("w")
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen([sys.executable, "-m", "videopoet.cli", "serve", "--model", str(tiny_model), "--out", str(out),
                             "--port", str(port), "--max-batch", "4", *extra], stdout=log, stderr=subprocess.STDOUT, env=env)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 180
    while True:
        try:
            with urllib.request.urlopen(url + "/v1/health", timeout=2):
                break
        except OSError:
            assert proc.poll() is None, (folder / "serve.log").read_text()[-3000:]
            assert time.monotonic() < deadline, "the server did not answer in 180 s"
            time.sleep(0.2)
    yield {"url": url, "proc": proc, "out": out, "log": folder / "serve.log"}
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(60)
        except subprocess.TimeoutExpired:
            proc.kill()
    log.close()


@pytest.fixture
def live_server(tiny_model: Path, tmp_path: Path):
    """A real `videopoet serve` process on 127.0.0.1 without keys: {url, proc, out, log}."""
    yield from _live_server(tiny_model, tmp_path)


@pytest.fixture
def keyed_server(tiny_model: Path, tmp_path: Path):
    """The same with a keys file holding one key: {url, proc, out, log, key}."""
    from videopoet.serve.keys import add_key

    key = add_key(tmp_path / "keys.json", "tester")
    for server in _live_server(tiny_model, tmp_path, "--keys", str(tmp_path / "keys.json")):
        yield {**server, "key": key}
