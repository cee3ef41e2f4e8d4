"""benchmarks/bench_serve.py end to end at the smallest size: two server processes (batching off and on),
two concurrent clients, and the JSON it writes."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.slow


def test_bench_serve_smoke(tmp_path: Path) -> None:
    from videopoet.serve.tiny import make_tiny_model

    model = make_tiny_model(tmp_path / "tiny")
    out = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "bench_serve.py"), "--model", str(model), "--work", str(tmp_path / "w"),
                          "--samplers", "maskgit", "--clients", "2", "--batches", "1", "2", "--requests", "4", "--threads", "1",
                          "--out", str(tmp_path / "r.json")], capture_output=True, text=True, timeout=600, cwd=ROOT)
    assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-2000:]
    rows = json.loads((tmp_path / "r.json").read_text())["rows"]
    assert [(r["max_batch"], r["clients"]) for r in rows] == [(1, 2), (2, 2)]
    assert all(r["done"] == 4 and not r["errors"] and r["clips_per_s"] > 0 and r["p95_s"] >= r["p50_s"] > 0 for r in rows)
    assert rows[0]["mean_batch"] == 1.0 and rows[0]["server_peak_mb"] > 0
    assert all(0 < r["run_p50_s"] < r["p50_s"] and r["overhead_p50_s"] > -0.05 for r in rows)
    assert "| maskgit | 2 | <= 2 |" in out.stdout
