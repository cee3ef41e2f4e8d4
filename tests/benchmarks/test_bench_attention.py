"""benchmarks/bench_attention.py at the smallest size on the CPU: every case runs, the dense-mask output is
its own reference, and the JSON names the kernel of each case."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_bench_attention_smoke(tmp_path: Path) -> None:
    out = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "bench_attention.py"), "--preset", "tiny", "--seq-len", "128",
                          "--batch", "2", "--repeats", "2", "--no-flex", "--device", "cpu", "--json", str(tmp_path / "a.json")],
                         capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-2000:]
    summary = json.loads((tmp_path / "a.json").read_text())
    assert (summary["heads"], summary["head_dim"], summary["dtype"]) == (4, 32, "float32")
    cases = [(r["rows"], r["case"]) for r in summary["results"]]
    assert cases == [("rows", "sdpa_dense_mask"), ("rows", "sdpa_causal_no_mask"), ("packed", "sdpa_dense_mask")]
    assert all(r["forward_ms"] > 0 and r["kernel"] != "none" for r in summary["results"])
    assert summary["results"][0]["max_abs_diff_vs_dense"] == 0.0
