"""The GPU check's summary: gathers the steps of benchmarks/gpu_check.sh into one table and gpu_check.json.

    python benchmarks/gpu_check_summary.py OUT_DIR CUDA(0|1)

Reads OUT_DIR/.steps (one `name exit_status seconds` line per step), the pytest junit XML and each
benchmark's JSON; a step that failed or ran out of time shows as such, with what it wrote before. Exits 1
when a step failed (or a test failed), else 0.
"""

from __future__ import annotations

import json
import sys
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

LLM_FOUNDRY_1B_MFU = 0.418  # llm-foundry's MPT-1B on H100 (bf16, seq 2048): the anchor for our MFU


def read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def pytest_summary(path: Path) -> dict[str, Any] | None:
    """Counts of the junit XML, and the reasons of skips and failures (first 20)."""
    try:
        root = ET.parse(path).getroot()
    except (OSError, ET.ParseError):
        return None
    suite = root if root.tag == "testsuite" else root.find("testsuite")
    if suite is None:
        return None
    counts = {k: int(suite.get(k, 0)) for k in ("tests", "failures", "errors", "skipped")}
    counts["passed"] = counts["tests"] - counts["failures"] - counts["errors"] - counts["skipped"]
    notes = []
    for case in suite.iter("testcase"):
        for kind in ("failure", "error", "skipped"):
            el = case.find(kind)
            if el is not None:
                notes.append({"test": f"{case.get('classname')}::{case.get('name')}", "outcome": kind,
                              "message": (el.get("message") or "")[:300]})
    return {**counts, "seconds": float(suite.get("time", 0.0)), "not_passed": notes[:20]}


def gpu_info() -> dict[str, Any]:
    import torch

    info: dict[str, Any] = {"torch": torch.__version__}
    if torch.cuda.is_available():
        props = torch.cuda.get_device_properties(0)
        info.update(gpu=props.name, gpu_memory_gib=round(props.total_memory / 2**30, 1), cuda_version=torch.version.cuda)
    return info


def fmt(v: Any, spec: str = ".3g") -> str:
    return "-" if v is None else format(v, spec) if isinstance(v, (int, float)) else str(v)


def main() -> int:
    out, cuda = Path(sys.argv[1]), sys.argv[2] == "1"
    steps = {}
    for line in (out / ".steps").read_text().splitlines() if (out / ".steps").is_file() else []:
        name, rc, seconds = line.split()
        steps[name] = {"exit_status": int(rc), "seconds": int(seconds), "timed_out": rc in ("124", "137")}
    tests = pytest_summary(out / "pytest_gpu.xml")
    llm = read_json(out / "llm_train.json")
    sampling = read_json(out / "sampling.json")
    video = read_json(out / "video_tokenizer.json")
    attention = read_json(out / "attention.json")
    result: dict[str, Any] = {"cuda": cuda, **gpu_info(), "steps": steps, "pytest_gpu": tests}
    if cuda:
        result["llm_train"] = llm
        if isinstance(llm, dict):
            result["llm_train_mfu_vs_llm_foundry_1b"] = {"ours": llm.get("mfu_vs_bf16_peak"), "llm_foundry": LLM_FOUNDRY_1B_MFU}
        result["sampling"] = sampling
        result["video_tokenizer"] = video
        result["attention"] = attention
    (out / "gpu_check.json").write_text(json.dumps(result, indent=2) + "\n")

    print(f"\nGPU check: {result.get('gpu', 'no CUDA GPU')} (torch {result['torch']})")
    for name, s in steps.items():
        state = "ran out of time" if s["timed_out"] else "ok" if s["exit_status"] == 0 else f"exit {s['exit_status']}"
        print(f"  step {name:<16} {state:<16} {s['seconds']:>4d} s")
    if tests:
        print(f"  pytest -m gpu: {tests['passed']} passed, {tests['failures'] + tests['errors']} failed, "
              f"{tests['skipped']} skipped ({tests['seconds']:.0f} s)")
        for n in [n for n in tests["not_passed"] if n["outcome"] != "skipped"][:5]:
            print(f"    {n['outcome']}: {n['test']}: {n['message'][:120]}")
        for reason in sorted({n["message"] for n in tests["not_passed"] if n["outcome"] == "skipped"}):
            print(f"    skipped: {reason[:150]}")
    rows: list[tuple[str, str, str]] = []
    if isinstance(llm, dict):
        rows.append((f"LLM train {Path(str(llm.get('config'))).stem} {llm.get('precision')}",
                     f"seq {llm.get('mean_seq_len')}, micro-batch {llm.get('batch_size')}",
                     f"{fmt(llm.get('trainer_tokens_per_s'), '.0f')} tok/s, MFU {fmt(llm.get('mfu_vs_bf16_peak'), '.1%')} "
                     f"(llm-foundry 1B: {LLM_FOUNDRY_1B_MFU:.1%}), peak {fmt(llm.get('peak_gpu_memory_gib'), '.1f')} GiB"))
    for r in sampling if isinstance(sampling, list) else []:
        rows.append((f"sampling {r['preset']}", f"{r['tokens']} tokens, {r['dtype']}",
                     f"AR {r['ar_s_per_clip']:.2f} s/clip ({r['ar_tokens_per_s']:.0f} tok/s; HF generate "
                     f"{r['hf_generate_tokens_per_s']:.0f}), MaskGIT {r['maskgit_s_per_clip']:.2f} s/clip, "
                     f"peak {fmt(r.get('peak_gpu_memory_gib'), '.1f')} GiB"))
    for r in video.get("rows", []) if isinstance(video, dict) else []:
        rows.append((f"video tokenizer {r['preset']}", f"{r['clip']} {r['device']} {r['precision']}",
                     f"encode {r['encode_fps']:.1f} f/s, decode {r['decode_fps']:.1f} f/s, "
                     f"peak {fmt(r.get('peak_gpu_memory_gib'), '.1f')} GiB"))
    for r in attention.get("results", []) if isinstance(attention, dict) else []:
        timing = f"fwd {r['forward_ms']:.2f} ms" + (f", fwd+bwd {r['forward_backward_ms']:.2f} ms" if "forward_backward_ms" in r else "")
        rows.append((f"attention {r['rows']} {r['case']}", f"{attention['preset']} heads, seq {attention['seq_len']}, batch {attention['batch']}",
                     f"{timing} ({r['kernel']})"))
    if rows:
        w0, w1 = max(len(r[0]) for r in rows), max(len(r[1]) for r in rows)
        print(f"\n  {'what':<{w0}}  {'setting':<{w1}}  result")
        for a, b, c in rows:
            print(f"  {a:<{w0}}  {b:<{w1}}  {c}")
    print(f"\nwrote {out / 'gpu_check.json'}")
    failed = any(s["exit_status"] != 0 for s in steps.values()) or (tests is not None and tests["failures"] + tests["errors"] > 0)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
