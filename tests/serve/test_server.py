"""`videopoet serve`: the command's checks and binding rule, and a real server process that generates,
then stops cleanly on SIGTERM."""

from __future__ import annotations

import json
import signal
import time
from pathlib import Path

import pytest

from videopoet.cli import main
from videopoet.errors import UserError
from videopoet.serve import server


def test_without_keys_binds_loopback_only(monkeypatch, tiny_model: Path, tmp_path: Path, capsys) -> None:
    calls = []
    monkeypatch.setattr("uvicorn.run", lambda app, **kw: calls.append(kw))
    server.serve(tiny_model, host="0.0.0.0", port=8123, out=tmp_path / "out", max_batch=2)
    assert calls[0]["host"] == "127.0.0.1" and calls[0]["port"] == 8123
    assert "binding to 127.0.0.1 only, not 0.0.0.0" in capsys.readouterr().out
    from videopoet.serve.keys import add_key

    add_key(tmp_path / "keys.json", "team")
    server.serve(tiny_model, host="0.0.0.0", keys=tmp_path / "keys.json", out=tmp_path / "out")
    assert calls[1]["host"] == "0.0.0.0"


def test_user_errors(tmp_path: Path, capsys) -> None:
    with pytest.raises(UserError, match="is not a folder"):
        server.serve(tmp_path / "missing")
    assert main(["serve"]) == 2
    assert main(["serve", "--model", str(tmp_path), "--max-batch", "0"]) == 2
    assert main(["serve", "--model", str(tmp_path), "--keys", str(tmp_path / "nokeys.json")]) == 2
    assert main(["serve", "--model", str(tmp_path), "--rate", "0"]) == 2
    err = capsys.readouterr().err
    assert "serve needs --model DIR" in err and "--max-batch" in err and "keys file" in err
    assert all(line.startswith("videopoet: error: ") for line in err.strip().splitlines())


def test_keys_add_prints_the_key_once(tmp_path: Path, capsys) -> None:
    assert main(["serve", "keys", "add", "alice", "--keys", str(tmp_path / "k.json")]) == 0
    key = capsys.readouterr().out.strip()
    assert key.startswith("vp_") and key not in (tmp_path / "k.json").read_text()


@pytest.mark.slow
def test_real_server_generates_and_stops_on_sigterm(live_server: dict) -> None:
    import urllib.parse

    url = live_server["url"]
    body = urllib.parse.urlencode({"task": "text_to_video", "prompt": "a red circle"}).encode()
    with urllib.request.urlopen(urllib.request.Request(url + "/v1/generations", data=body, method="POST")) as r:
        assert r.status == 202
        job = json.load(r)
    deadline = time.monotonic() + 120
    while job["state"] not in ("done", "failed"):
        assert time.monotonic() < deadline
        time.sleep(0.1)
        with urllib.request.urlopen(url + job["links"]["self"]) as r:
            job = json.load(r)
    assert job["state"] == "done", job
    proc = live_server["proc"]
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(60) in (0, -signal.SIGTERM)  # uvicorn re-raises the signal once it has shut down
    log = live_server["log"].read_text()
    assert "127.0.0.1 only" in log and "Application shutdown complete" in log
