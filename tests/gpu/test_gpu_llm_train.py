"""LLM training on one GPU rank with NCCL under ZeRO-2 and ZeRO-3: learns, saves, and resumes exactly.

Mirrors tests/llm/test_train.py (which runs the same on CPU ranks with gloo): `torchrun` with one process,
a tiny model, random token records, fp32. For each stage a whole 8-step run, and a run stopped after its
step-4 checkpoint then resumed to step 8; the runs go in parallel (one GPU holds them all) to keep the
GPU check short. The resumed losses must equal the whole run's to 1e-4: on a GPU some backward kernels
(embedding gradients, attention) add with atomics in a varying order, which moves the last digits
between two runs of the same steps, while a resume that lost state (RNG, loader, optimizer) is off by 1e-2 or more.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml

pytestmark = pytest.mark.gpu

ROOT = Path(__file__).resolve().parents[2]
TORCHRUN = Path(sys.executable).with_name("torchrun")
STAGES = (2, 3)
STEPS, STOP = 8, 4
RESUME_TOL = 1e-4


def write_config(path: Path, data: Path, stage: int) -> Path:
    """A project config at `path`: tiny model, fp32, checkpoints every 4 steps, ZeRO `stage`."""
    config = {
        "llm": {"hidden_size": 64, "num_layers": 2, "num_heads": 4, "intermediate_size": 128, "max_position_embeddings": 256},
        "tasks": {"caption_dropout": 0.1},
        "llm_train": {
            "steps": STEPS, "micro_batch_size": 2, "log_every": 1, "val_every": 4, "save_every": STOP,
            "val_batches": 2, "precision": "fp32", "deepspeed": str(ROOT / f"deploy/deepspeed/zero{stage}.json"),
            "optim": {"lr": 3e-3, "warmup_steps": 2},
        },
    }  # fmt: skip
    path.write_text(yaml.safe_dump(config))
    return path


def start(device: torch.device, config: Path, data: Path, out: Path, *overrides: str) -> subprocess.Popen:
    """`torchrun --nproc_per_node 1 -m videopoet.llm.train ...` in the background (NCCL on a GPU; the
    CPU stand-in uses gloo), its output to `out`.log (a file, not a pipe: runs going at once never block
    on a full pipe)."""
    from videopoet.llm.parallelize import free_port

    env = {**os.environ, "OMP_NUM_THREADS": "1", "NCCL_DEBUG": "INFO"}
    if device.type == "cpu":
        env["DS_ACCELERATOR"] = "cpu"
    else:
        env.pop("DS_ACCELERATOR", None)
    cmd = [str(TORCHRUN), "--nproc_per_node", "1", "--master_port", str(free_port()), "-m", "videopoet.llm.train",
           "--config", str(config), "--data", str(data), "--out", str(out), *overrides]
    log = open(out.with_name(out.name + f".{len(list(out.parent.glob(out.name + '.*.log')))}.log"), "w")  # noqa: SIM115
    proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, text=True, env=env, cwd=ROOT)
    proc.log = Path(log.name)  # type: ignore[attr-defined]
    log.close()
    return proc


def finish(procs: dict[str, subprocess.Popen]) -> dict[str, str]:
    """Wait for every run; their output by name; fails naming the run that failed."""
    outs = {}
    for name, proc in procs.items():
        try:
            proc.wait(timeout=300)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
            pytest.fail(f"{name} ran past 300 s:\n{proc.log.read_text()[-3000:]}")
        outs[name] = proc.log.read_text()
        assert proc.returncode == 0, f"{name} failed:\n{outs[name][-3000:]}"
    return outs


def history(run: Path, key: str) -> dict[int, float]:
    rows = [json.loads(r) for r in (run / "history.jsonl").read_text().splitlines()]
    return {r["step"]: r[key] for r in rows if key in r}


@pytest.fixture(scope="module")
def runs(gpu: torch.device, token_records: Path, tmp_path_factory: pytest.TempPathFactory) -> dict:
    """Per stage: a whole run and a stopped-then-resumed one; their folders and outputs."""
    base = tmp_path_factory.mktemp("gpu_train")
    configs = {s: write_config(base / f"zero{s}.yaml", token_records, s) for s in STAGES}
    first = {}
    for s in STAGES:
        first[f"whole{s}"] = start(gpu, configs[s], token_records, base / f"whole{s}")
        first[f"part{s}"] = start(gpu, configs[s], token_records, base / f"part{s}", f"llm_train.stop_at={STOP}")
    outs = finish(first)
    outs.update({f"resume{s}": o for s, o in finish({s: start(gpu, configs[s], token_records, base / f"part{s}") for s in STAGES}).items()})
    return {"base": base, "outs": outs, "device": gpu}


@pytest.mark.parametrize("stage", STAGES)
def test_trains_on_the_gpu_with_nccl(runs: dict, stage: int) -> None:
    whole = runs["base"] / f"whole{stage}"
    curve = history(whole, "loss")
    assert sorted(curve) == list(range(1, STEPS + 1))
    assert all(v == v and abs(v) != float("inf") for v in curve.values())
    assert curve[STEPS] < curve[1] - 0.5  # learns (random records: at least which modality comes next)
    assert (whole / "checkpoints" / "latest").read_text().strip() == f"step_{STEPS:07d}"
    if runs["device"].type == "cuda":
        assert "NCCL INFO" in runs["outs"][f"whole{stage}"], "the run did not use NCCL"


@pytest.mark.parametrize("stage", STAGES)
def test_save_and_exact_resume(runs: dict, stage: int) -> None:
    whole, part = runs["base"] / f"whole{stage}", runs["base"] / f"part{stage}"
    assert f"resumed {part} at step {STOP}" in runs["outs"][f"resume{stage}"]
    w, r = history(whole, "loss"), history(part, "loss")
    assert sorted(r) == sorted(w)
    worst = max(abs(w[s] - r[s]) for s in w)
    assert worst < RESUME_TOL, f"resumed losses differ from the whole run's by up to {worst:.2e}"
    assert history(part, "val_loss")[STEPS] == pytest.approx(history(whole, "val_loss")[STEPS], abs=RESUME_TOL)


@pytest.mark.parametrize("stage", STAGES)
def test_checkpoint_holds_the_cuda_rng(runs: dict, stage: int) -> None:
    """The client state of a GPU run's checkpoint carries every CUDA device's generator state."""
    ckpt = runs["base"] / f"whole{stage}" / "checkpoints" / f"step_{STOP:07d}"
    files = sorted(ckpt.rglob("*model_states.pt"))
    assert files, f"no model states in {ckpt}"
    state = torch.load(files[0], map_location="cpu", weights_only=False)
    assert state["step"] == STOP and {"torch", "numpy", "python"} <= set(state["rng"])
    if runs["device"].type == "cuda":
        assert len(state["rng"]["cuda"]) == torch.cuda.device_count()


def test_cuda_rng_capture_and_restore(gpu: torch.device) -> None:
    from videopoet.runs import capture_rng, restore_rng

    saved = capture_rng()
    a = torch.rand(8, device=gpu), torch.rand(8)
    restore_rng(saved)
    b = torch.rand(8, device=gpu), torch.rand(8)
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
