"""LLM training with DeepSpeed on CPU (gloo): ZeRO 0/2/3 on 2 ranks, exact resume, rank change, export,
bad steps, and a clear error without data. Tiny model, random token records, a few steps each."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml

pytestmark = pytest.mark.slow  # DeepSpeed runs on 2 ranks: minutes; `make test-fast` leaves them out

ROOT = Path(__file__).resolve().parents[2]
TORCHRUN = Path(sys.executable).with_name("torchrun")


def write_config(path: Path, data: Path, out: str = "", **train: object) -> Path:
    """A project config at `path`; the run's paths (command-line options, not config keys) beside it."""
    llm_train = {
        "steps": 12, "micro_batch_size": 2, "log_every": 1, "val_every": 6, "save_every": 4,
        "val_batches": 2, "precision": "fp32", "deepspeed": str(ROOT / "deploy/deepspeed/zero2.json"),
        "optim": {"lr": 3e-3, "warmup_steps": 2},
    }
    llm_train.update(train)
    config = {"llm": {"hidden_size": 64, "num_layers": 2, "num_heads": 4, "intermediate_size": 128, "max_position_embeddings": 256},
              "tasks": {"caption_dropout": 0.1}, "llm_train": llm_train}
    path.write_text(yaml.safe_dump(config))
    path.with_suffix(".paths.json").write_text(json.dumps({"data": str(data), "out": out}))
    return path


def paths(config: Path) -> list[str]:
    """`--data D --out O` of the run `write_config` described."""
    p = json.loads(config.with_suffix(".paths.json").read_text())
    return ["--data", p["data"], "--out", p["out"]]


def torchrun(nproc: int, config: Path, *overrides: str) -> subprocess.CompletedProcess[str]:
    from videopoet.llm.parallelize import free_port

    port = free_port()  # from the OS: a fixed port collides with a run that just ended (TIME_WAIT)
    env = {**os.environ, "DS_ACCELERATOR": "cpu", "OMP_NUM_THREADS": "1"}
    cmd = [str(TORCHRUN), "--nproc_per_node", str(nproc), "--master_port", str(port), "-m", "videopoet.llm.train",
           "--config", str(config), *paths(config), *overrides]
    out = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=ROOT, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    return out


def losses(run: Path) -> dict[int, float]:
    rows = [json.loads(r) for r in (run / "history.jsonl").read_text().splitlines()]
    return {r["step"]: r["loss"] for r in rows if "loss" in r}


def val_losses(run: Path) -> dict[int, float]:
    rows = [json.loads(r) for r in (run / "history.jsonl").read_text().splitlines()]
    return {r["step"]: r["val_loss"] for r in rows if "val_loss" in r}


@pytest.fixture(scope="module")
def stage_runs(token_records: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[int, Path]:
    base = tmp_path_factory.mktemp("stages")
    runs = {}
    for stage in (0, 2, 3):
        config = write_config(base / f"z{stage}.yaml", token_records, out=str(base / f"run{stage}"),
                              deepspeed=str(ROOT / f"deploy/deepspeed/zero{stage}.json"))
        torchrun(2, config)
        runs[stage] = base / f"run{stage}"
    return runs


def test_zero_stages_learn_and_agree(stage_runs: dict[int, Path]) -> None:
    for run in stage_runs.values():
        curve = losses(run)
        assert sorted(curve) == list(range(1, 13))
        assert curve[12] < curve[1] - 0.5  # learns (random records: at least which modality comes next)
    z0, z2, z3 = (losses(stage_runs[s]) for s in (0, 2, 3))
    assert all(abs(z0[s] - z2[s]) < 1e-4 for s in z0)  # same init, same math
    assert all(abs(z0[s] - z3[s]) < 0.1 for s in z0)  # ZeRO-3 initialises its partitions in another order
    ckpts = sorted(p.name for p in (stage_runs[2] / "checkpoints").glob("step_*"))
    assert ckpts == ["step_0000004", "step_0000008", "step_0000012"]
    assert (stage_runs[2] / "checkpoints" / "latest").read_text().strip() == "step_0000012"


def test_stop_and_resume_reproduces_losses(stage_runs: dict[int, Path], token_records: Path, tmp_path: Path) -> None:
    """Stop at step 4 and resume: the same losses as the run that went through. The first part goes through
    `videopoet train --nproc 2`, the wrapper around the deepspeed launcher. (Resuming on fewer ranks, through
    the universal checkpoint, is tests/llm/test_multinode.py's.)"""
    run = tmp_path / "run"
    config = write_config(tmp_path / "c.yaml", token_records, out=str(run))
    env = {**os.environ, "DS_ACCELERATOR": "cpu", "OMP_NUM_THREADS": "1"}
    cli = subprocess.run([str(Path(sys.executable).with_name("videopoet")), "train", "--config", str(config), "--nproc", "2",
                          *paths(config), "llm_train.stop_at=4"], capture_output=True, text=True, env=env, cwd=ROOT, timeout=300)
    assert cli.returncode == 0, cli.stderr[-3000:]
    assert max(losses(run)) == 4
    out = torchrun(2, config)
    assert "resumed" in out.stdout + out.stderr
    whole, resumed = losses(stage_runs[2]), losses(run)
    assert sorted(resumed) == list(range(1, 13))
    for step in whole:
        assert resumed[step] == pytest.approx(whole[step], abs=1e-6)
    assert val_losses(run)[12] == pytest.approx(val_losses(stage_runs[2])[12], abs=1e-6)


def test_export_round_trip(stage_runs: dict[int, Path], tmp_path: Path, records_vocab) -> None:
    from transformers import LlamaForCausalLM

    from videopoet.llm.export import consolidated_state_dict, export_run
    from videopoet.vocab import SharedVocab

    for stage, run in stage_runs.items():
        out = tmp_path / f"hf{stage}"
        meta = export_run(run, out)
        assert meta["step"] == 12 and SharedVocab.load(out / "vocab.json") == records_vocab
        model = LlamaForCausalLM.from_pretrained(out).eval()
        state = consolidated_state_dict(run / "checkpoints" / "step_0000012", stage)
        ids = torch.randint(0, records_vocab.size, (2, 16))
        trained = LlamaForCausalLM(model.config).eval()
        trained.load_state_dict(state)
        assert torch.equal(model(ids).logits, trained(ids).logits)


def make_trainer(config: Path, *overrides: str):
    from videopoet.config import load_project_config
    from videopoet.llm.train import LLMTrainer

    p = json.loads(config.with_suffix(".paths.json").read_text())
    return LLMTrainer(load_project_config(config, list(overrides)), p["data"], p["out"])


def test_exported_model_equals_training_model(in_process: None, token_records: Path, tmp_path: Path, records_vocab) -> None:
    from transformers import LlamaForCausalLM

    from videopoet.llm.export import export_run

    run = tmp_path / "run"
    trainer = make_trainer(write_config(tmp_path / "c.yaml", token_records, out=str(run), steps=3, deepspeed=str(ROOT / "deploy/deepspeed/zero0.json")))
    trainer.fit()
    export_run(run, tmp_path / "hf")
    exported = LlamaForCausalLM.from_pretrained(tmp_path / "hf").eval()
    ids = torch.randint(0, records_vocab.size, (2, 16))
    trainer.engine.module.eval()
    with torch.no_grad():
        assert torch.allclose(exported(ids).logits, trainer.engine.module(ids).logits, atol=1e-6)


def test_bad_steps_are_skipped_then_stop(in_process: None, token_records: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from videopoet.llm.train import LLMTrainer, LLMTrainingError

    real_forward = LLMTrainer.forward
    calls = {"n": 0}

    def flaky(self, batch):  # the 2nd forward is non-finite, later ones from the 5th on are too
        losses, targets, loss = real_forward(self, batch)
        calls["n"] += 1
        if calls["n"] == 2 or calls["n"] >= 5:
            loss = loss * float("nan")
        return losses, targets, loss

    monkeypatch.setattr(LLMTrainer, "forward", flaky)
    trainer = make_trainer(write_config(tmp_path / "c.yaml", token_records, out=str(tmp_path / "run"), steps=10, max_bad_steps=3, val_every=100))
    with pytest.raises(LLMTrainingError, match="3 non-finite losses in a row at step 3"):
        trainer.fit()
    assert trainer.bad_total == 4  # one skipped alone, then three in a row


def test_no_data_says_how_to_make_it(in_process: None, tmp_path: Path) -> None:
    from videopoet.llm.train import LLMTrainingError

    config = write_config(tmp_path / "c.yaml", tmp_path / "no_tokens", out=str(tmp_path / "run"))
    with pytest.raises(LLMTrainingError, match="no training data at .*no_tokens: --data takes token records made by `videopoet tokenize`"):
        make_trainer(config)


def test_crash_while_saving_keeps_latest(in_process: None, token_records: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    run = tmp_path / "run"
    trainer = make_trainer(write_config(tmp_path / "c.yaml", token_records, out=str(run), steps=8, deepspeed=str(ROOT / "deploy/deepspeed/zero0.json")))
    real_save = trainer.engine.save_checkpoint

    def dies_midway(save_dir, tag=None, **kwargs):
        if tag == "step_0000008":
            (Path(save_dir) / tag).mkdir(parents=True)
            (Path(save_dir) / tag / "mp_rank_00_model_states.pt").write_bytes(b"partial")
            raise OSError("disk full")
        return real_save(save_dir, tag=tag, **kwargs)

    monkeypatch.setattr(trainer.engine, "save_checkpoint", dies_midway)
    with pytest.raises(OSError, match="disk full"):
        trainer.fit()
    assert (run / "checkpoints" / "latest").read_text().strip() == "step_0000004"


def test_bf16_training_on_cpu(in_process: None, token_records: Path, tmp_path: Path) -> None:
    """DeepSpeed's bf16 mode on the CPU (what `precision: auto` picks on a CPU with native bf16)."""
    # 2 steps: without native bf16 (AVX2 only) every bf16 matmul is emulated and a step takes seconds
    trainer = make_trainer(write_config(tmp_path / "c.yaml", token_records, out=str(tmp_path / "run"), steps=2, val_every=2,
                                        save_every=2, val_batches=1, precision="bf16"))
    assert trainer.bf16
    assert next(trainer.engine.module.parameters()).dtype == torch.bfloat16
    result = trainer.fit()
    curve = losses(tmp_path / "run")
    assert sorted(curve) == [1, 2] and all(torch.isfinite(torch.tensor(v)) for v in curve.values())
    assert result["step"] == 2 and torch.isfinite(torch.tensor(val_losses(tmp_path / "run")[2]))


def test_a_run_continues_only_with_its_own_model(in_process: None, token_records: Path, tmp_path: Path) -> None:
    from videopoet.runs import RunFolderError

    run = tmp_path / "run"
    make_trainer(write_config(tmp_path / "c.yaml", token_records, out=str(run), steps=2, val_every=2, save_every=2)).fit()
    with pytest.raises(RunFolderError, match="holds an LLM run made with llm = .*resume it with its own config"):
        make_trainer(write_config(tmp_path / "c.yaml", token_records, out=str(run), steps=4), "llm.hidden_size=32")


def test_training_steps_wait_for_the_device_only_at_log_steps(in_process: None, token_records: Path, tmp_path: Path,
                                                                monkeypatch: pytest.MonkeyPatch, host_syncs) -> None:
    """Host syncs per micro-step, counted on the CPU (tests/llm/conftest.py `HostSyncCounter`): a step that
    logs nothing waits for the device only in the non-finite-loss guard (a flag, all-reduced and read);
    log steps read the losses once."""
    from videopoet.data.loader import TaskLoader

    trainer = make_trainer(write_config(tmp_path / "c.yaml", token_records, out=str(tmp_path / "run"), steps=6, log_every=3,
                                        val_every=100, save_every=100))
    real_iter = TaskLoader.__iter__

    def counted(loader: TaskLoader):
        batches = real_iter(loader)
        while True:
            with host_syncs.paused():  # making the batch is host work
                batch = next(batches)
            host_syncs.mark_host(batch)
            host_syncs.window()  # window k: micro-step k, from its batch to the next one
            yield batch

    monkeypatch.setattr(TaskLoader, "__iter__", counted)
    with host_syncs.counting():
        trainer.fit()
    steps = host_syncs.windows[1:]
    assert len(steps) == 6
    for k in (2, 4, 5):  # not logging (step 1 is left out: first-step set-up)
        found = "\n".join(f"{e.op} at {e.where}" for e in steps[k - 1])
        ours = sorted(e.where.split(":")[0] + " " + e.where.split(" ")[-1] for e in steps[k - 1] if e.where.startswith("videopoet/"))
        assert ours == ["videopoet/llm/parallelize.py (all_ranks_true)", "videopoet/llm/train.py (fit)"], found
        # DeepSpeed's ZeRO-2 step: two grad-norm checks, and torch AdamW reading its step count (on a GPU
        # a CPU tensor, so no sync there; the counter cannot tell on the CPU)
        assert len(steps[k - 1]) - len(ours) <= 3, found
    assert len(steps[2]) > len(steps[1])  # the log step reads its losses


def test_compiled_training_matches_eager(in_process: None, token_records: Path, tmp_path: Path, compile_backend: str) -> None:
    """`llm_train.compile` (DeepSpeed's engine.compile): three fp32 steps give the eager losses up to
    summation order (inductor fuses and reorders reductions): within 1e-5 (seen with inductor: 5e-7). With
    inductor (VIDEOPOET_TEST_COMPILE_BACKEND=inductor) about a minute with its cache warm, two or more cold
    (C++ kernels built with g++)."""
    curves = {}
    for compiled in (False, True):
        run = tmp_path / f"run_{compiled}"
        trainer = make_trainer(write_config(tmp_path / f"c_{compiled}.yaml", token_records, out=str(run), steps=3,
                                            val_every=100, save_every=100, compile=compiled,
                                            compile_backend=compile_backend))
        trainer.fit()
        assert trainer.engine.is_compiled == compiled
        curves[compiled] = losses(run)
    assert sorted(curves[True]) == [1, 2, 3]
    for step, loss in curves[False].items():
        assert curves[True][step] == pytest.approx(loss, abs=1e-5)


def test_checkpoints_hold_each_ranks_generators(in_process: None, token_records: Path, tmp_path: Path) -> None:
    """Every rank saves its own torch (CPU, and CUDA where present), numpy and Python generators beside
    DeepSpeed's checkpoint (whose client state is one rank's); a resume restores them."""
    import random

    import numpy as np

    from videopoet.llm.train import RANK_RNG_FILE
    from videopoet.runs import capture_rng

    run = tmp_path / "run"
    config = write_config(tmp_path / "c.yaml", token_records, out=str(run), steps=4, stop_at=2, val_every=100, save_every=2,
                          deepspeed=str(ROOT / "deploy/deepspeed/zero0.json"))
    make_trainer(config).fit()
    own_file = run / "checkpoints" / "step_0000002" / RANK_RNG_FILE.format(rank=0)
    saved = torch.load(own_file, weights_only=False)
    assert {"torch", "numpy", "python"} <= set(saved) and ("cuda" in saved) == torch.cuda.is_available()
    torch.manual_seed(7)  # make the rank's file differ from DeepSpeed's copy, to see which one a resume reads
    np.random.seed(7)
    random.seed(7)
    own = capture_rng()
    torch.save(own, own_file)
    torch.manual_seed(123)
    trainer = make_trainer(config)
    assert trainer.step == 2 and torch.equal(torch.get_rng_state(), own["torch"])
    assert np.array_equal(np.random.get_state()[1], own["numpy"][1]) and random.getstate() == own["python"]
