"""Multi-node training on one machine: deploy/slurm_train.sbatch run through a fake SLURM (an `srun` that
starts one task per node and ends the others when one fails, a `scontrol` that lists the nodes), two
"nodes" of one CPU rank each meeting on 127.0.0.1; ZeRO-2 and ZeRO-3 train, save and resume on one node
(universal checkpoint); a rank that dies mid-run stops the run with a line naming it."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

pytestmark = pytest.mark.slow  # DeepSpeed launches: about a minute each on a 2-core CPU

ROOT = Path(__file__).resolve().parents[2]
NODES = ["127.0.0.1", "localhost"]  # two names of this machine: the hostfile needs one name per node

# srun as SLURM runs a step: SLURM_NNODES tasks, one per node, each with its SLURM_NODEID / SLURM_PROCID;
# with --kill-on-bad-exit, a task that exits non-zero gets every other task killed (SIGKILL, as SLURM does)
FAKE_SRUN = """#!{python}
import os, signal, subprocess, sys, time
args = sys.argv[1:]
kill_on_bad_exit = "--kill-on-bad-exit=1" in args
while args[0].startswith("--"):
    args.pop(0)
nodes = os.environ["SLURM_JOB_NODELIST"].split(",")
tasks = [subprocess.Popen(args, start_new_session=True, env={{**os.environ, "SLURM_NODEID": str(i), "SLURM_PROCID": str(i),
         "SLURM_LOCALID": "0", "SLURM_NTASKS": str(len(nodes)), "SLURMD_NODENAME": node}}) for i, node in enumerate(nodes)]
status = 0
while True:
    codes = [t.poll() for t in tasks]
    for i, code in enumerate(codes):
        if code not in (None, 0, -signal.SIGKILL) and status == 0:
            status = code
            print(f"srun: error: {{nodes[i]}}: task {{i}}: Exited with exit code {{code}}", file=sys.stderr, flush=True)
            if kill_on_bad_exit:
                for other in tasks:
                    if other.poll() is None:
                        os.killpg(other.pid, signal.SIGKILL)
    if None not in codes:
        sys.exit(status or max(codes))
    time.sleep(0.2)
"""
FAKE_SCONTROL = """#!/usr/bin/env bash
[[ "$1 $2" == "show hostnames" ]] && tr ',' '\\n' <<< "$3"
"""


@pytest.fixture(scope="module")
def fake_slurm(tmp_path_factory: pytest.TempPathFactory) -> Path:
    bin_dir = tmp_path_factory.mktemp("slurm_bin")
    for name, text in (("srun", FAKE_SRUN.format(python=sys.executable)), ("scontrol", FAKE_SCONTROL)):
        (bin_dir / name).write_text(text)
        (bin_dir / name).chmod(0o755)
    return bin_dir


def write_config(path: Path, **train: object) -> Path:
    """The tiny model: 4 steps of 2 records per rank, a checkpoint every 2 steps, validation at the end."""
    llm_train = {"steps": 4, "micro_batch_size": 2, "log_every": 1, "val_every": 100, "save_every": 2, "val_batches": 1,
                 "precision": "fp32", "optim": {"lr": 3e-3, "warmup_steps": 1}, **train}
    config = {"llm": {"hidden_size": 64, "num_layers": 2, "num_heads": 4, "intermediate_size": 128, "max_position_embeddings": 256},
              "tasks": {"caption_dropout": 0.1}, "llm_train": llm_train}
    path.write_text(yaml.safe_dump(config))
    return path


def sbatch(fake_slurm: Path, nodes: int, config: Path, data: Path, out: Path, zero: int, **env: str) -> tuple[int, str]:
    """Run deploy/slurm_train.sbatch as SLURM would on `nodes` nodes of one CPU rank each; (status, output)."""
    from videopoet.llm.parallelize import free_port

    slurm = {"SLURM_JOB_NODELIST": ",".join(NODES[:nodes]), "SLURM_NNODES": str(nodes), "SLURM_JOB_ID": "1",
             "GPUS_PER_NODE": "1", "MASTER_PORT": str(free_port()), "DEEPSPEED_JSON": f"deploy/deepspeed/zero{zero}.json"}
    full_env = {**os.environ, **slurm, **env, "PATH": f"{fake_slurm}{os.pathsep}{os.environ['PATH']}",
                "VENV": str(Path(sys.executable).parents[1]), "DS_ACCELERATOR": "cpu", "OMP_NUM_THREADS": "1",
                "TMPDIR": str(out.parent)}  # launch_node.sh's hostfile: a killed node leaves it behind
    cmd = ["bash", "deploy/slurm_train.sbatch", str(config), str(data), str(out)]
    proc = subprocess.Popen(cmd, cwd=ROOT, env=full_env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            start_new_session=True)
    try:
        output, _ = proc.communicate(timeout=400)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)  # the launchers and ranks are in its session
        output, _ = proc.communicate()
        pytest.fail(f"the launch did not end in 400 s:\n{output[-3000:]}")
    return proc.returncode, output


def losses(run: Path) -> dict[int, float]:
    rows = [json.loads(r) for r in (run / "history.jsonl").read_text().splitlines()]
    return {r["step"]: r["loss"] for r in rows if "loss" in r}


def test_two_nodes_zero2_train_save_and_resume_on_one(fake_slurm: Path, token_records: Path, tmp_path: Path) -> None:
    run, config = tmp_path / "run", write_config(tmp_path / "c.yaml", stop_at=2)
    status, output = sbatch(fake_slurm, 2, config, token_records, run, zero=2)
    assert status == 0, output[-3000:]
    assert "dist_world_size=2" in output and "node_rank=1" in output  # one launcher per node, one world
    meta = json.loads((run / "checkpoints" / "step_0000002" / "meta.json").read_text())
    assert meta["world_size"] == 2 and meta["zero_stage"] == 2
    assert sorted(losses(run)) == [1, 2]

    status, output = sbatch(fake_slurm, 1, write_config(config), token_records, run, zero=2)  # to step 4
    assert status == 0, output[-3000:]
    assert "resumed" in output and "at step 2 (saved on 2 ranks, running on 1)" in output
    assert (run / "checkpoints" / "step_0000002_universal").is_dir()
    curve = losses(run)
    assert sorted(curve) == [1, 2, 3, 4] and curve[4] < curve[1]


def test_dying_rank_stops_the_run_and_it_resumes(fake_slurm: Path, token_records: Path, tmp_path: Path) -> None:
    """ZeRO-3 on two nodes; rank 1 dies as it begins step 3 (after the checkpoint of step 2); the launch ends
    within a bound naming rank 1, and the run resumes on one node from step 2 to the end."""
    run, config = tmp_path / "run", write_config(tmp_path / "c.yaml")
    status, output = sbatch(fake_slurm, 2, config, token_records, run, zero=3,
                            VIDEOPOET_FAULT_KILL_RANK="1", VIDEOPOET_FAULT_AT_STEP="3")
    ended = time.time()
    last_save = (run / "checkpoints" / "step_0000002" / "meta.json").stat().st_mtime  # rank 1 dies right after it
    assert status != 0
    assert "videopoet launch: node 1 (localhost; rank 1 of 2) failed with exit status 1" in output, output[-3000:]
    assert ended - last_save < 90, f"the launch ended {ended - last_save:.0f} s after rank 1 died"
    assert (run / "checkpoints" / "latest").read_text().strip() == "step_0000002"
    assert not (run / "checkpoints" / "step_0000004").exists()

    status, output = sbatch(fake_slurm, 1, config, token_records, run, zero=3)
    assert status == 0, output[-3000:]
    assert "at step 2 (saved on 2 ranks, running on 1)" in output
    assert sorted(losses(run)) == [1, 2, 3, 4]
    assert (run / "checkpoints" / "latest").read_text().strip() == "step_0000004"
