"""The shared tokenizer training loop on a toy autoencoder: learning, checkpoints, exact resume, NaN stop."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest
import torch
from torch import nn

from videopoet.optim import OptimConfig
from videopoet.tokenizers.checkpoint import latest_checkpoint, load_weights
from videopoet.tokenizers.trainer import SolverBase, TrainConfig, TrainingError, _StepBatches, train_tokenizer


class ToySolver:
    """A linear autoencoder with a toy discriminator, recording the loss of every step it runs."""

    def __init__(self, stop_at: int | None = None, nan_at: int | None = None, disc_from: int = 2) -> None:
        torch.manual_seed(0)
        self.model = nn.Sequential(nn.Linear(8, 3), nn.Linear(3, 8))
        self.discriminator = nn.Linear(8, 1)
        self.losses: dict[int, float] = {}
        self.stop_at, self.nan_at, self.disc_from = stop_at, nan_at, disc_from
        self.evaluated = 0

    def folder_config(self) -> dict[str, Any]:
        return {"kind": "toy"}

    def sample_batch(self, rng: np.random.Generator, kind_rng: np.random.Generator | None = None) -> torch.Tensor:
        return torch.from_numpy(rng.standard_normal((4, 8)).astype(np.float32))

    def generator_loss(self, batch: torch.Tensor, step: int):
        if step == self.stop_at:
            raise KeyboardInterrupt
        recon = self.model(batch)
        loss = (recon - batch).pow(2).mean() + 0.01 * torch.randn(()).abs()  # uses the global RNG too
        if step == self.nan_at:
            loss = loss * float("nan")
        self.losses[step] = loss.item()
        return loss, {"loss": loss.item()}, recon.detach()

    def discriminator_loss(self, batch: torch.Tensor, recon: torch.Tensor, step: int):
        if step < self.disc_from:
            return None
        d = torch.relu(1 - self.discriminator(batch)).mean() + torch.relu(1 + self.discriminator(recon)).mean()
        return d, {"d_loss": d.item()}

    def evaluate(self, model: nn.Module) -> dict[str, float]:
        self.evaluated += 1
        x = torch.ones(2, 8)
        return {"val_mse": (model(x) - x).pow(2).mean().item()}

    def write_samples(self, writer: Any, model: nn.Module, step: int) -> None:
        writer.add_scalar("samples/dummy", 1.0, step)


def config(**kw: Any) -> TrainConfig:
    base = dict(steps=8, batch_size=4, optim=OptimConfig(lr=1e-2, warmup_steps=2), ema_decay=0.9, precision="fp32",
                log_every=2, val_every=4, sample_every=4, save_every=3, keep_last=2, num_workers=0, device="cpu")
    base.update(kw)
    return TrainConfig(**base)


def test_learns_saves_and_keeps_last(tmp_path: Path) -> None:
    solver = ToySolver()
    result = train_tokenizer(solver, config(steps=30, save_every=10), tmp_path)
    assert solver.losses[29] < solver.losses[0]
    assert result["val"]["val_mse"] >= 0 and solver.evaluated == 8  # every 4 steps and at the end
    # gradient norms stay on the device between log steps; the logged values are numbers
    assert isinstance(result["train"]["grad_norm"], float) and isinstance(result["train"]["disc_grad_norm"], float)
    ckpts = sorted(p.name for p in (tmp_path / "checkpoints").glob("step_*"))
    assert ckpts == ["step_0000020", "step_0000030"]
    assert latest_checkpoint(tmp_path).name == "step_0000030"
    assert (tmp_path / "config.json").is_file() and (tmp_path / "tensorboard").is_dir()
    loaded = nn.Sequential(nn.Linear(8, 3), nn.Linear(3, 8))
    load_weights(loaded, tmp_path / "model.safetensors")  # the EMA weights, ready for encode/decode


@pytest.mark.parametrize("workers", [0, 2])
def test_resume_continues_exactly(tmp_path: Path, workers: int) -> None:
    whole = ToySolver()
    train_tokenizer(whole, config(num_workers=workers), tmp_path / "whole")

    interrupted = ToySolver(stop_at=5)
    with pytest.raises(KeyboardInterrupt):
        train_tokenizer(interrupted, config(num_workers=workers), tmp_path / "split")
    assert latest_checkpoint(tmp_path / "split").name == "step_0000003"
    with pytest.raises(TrainingError, match="already holds a training run"):
        train_tokenizer(ToySolver(), config(), tmp_path / "split")

    resumed = ToySolver()
    train_tokenizer(resumed, config(num_workers=workers), tmp_path / "split", resume=True)
    assert sorted(resumed.losses) == list(range(3, 8))
    for step in range(3, 8):
        assert resumed.losses[step] == pytest.approx(whole.losses[step], abs=1e-6)


def test_time_limit_stops_saves_and_resume_goes_on(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    whole = ToySolver()
    train_tokenizer(whole, config(), tmp_path / "whole")
    assert train_tokenizer(ToySolver(), config(steps=2, max_minutes=1e-9), tmp_path / "short")["step"] == 2
    assert "stopped at step" not in capsys.readouterr().out  # out of time at the last step: not a stop
    limited = ToySolver()
    result = train_tokenizer(limited, config(max_minutes=1e-9), tmp_path / "limited")  # over at once
    assert "stopped at step 2 of 8" in capsys.readouterr().out
    # the limit is checked on log steps (every 2): stops at step 2, validated and saved as a last step is
    assert result["step"] == 2 and result["steps"] == 8 and sorted(limited.losses) == [0, 1]
    assert limited.evaluated == 1 and result["val"]["val_mse"] >= 0
    assert latest_checkpoint(tmp_path / "limited").name == "step_0000002"
    resumed = ToySolver()
    result = train_tokenizer(resumed, config(), tmp_path / "limited", resume=True)
    assert result["step"] == 8 and sorted(resumed.losses) == list(range(2, 8))
    for step in range(2, 8):
        assert resumed.losses[step] == pytest.approx(whole.losses[step], abs=1e-6)
    with pytest.raises(ValueError, match="max_minutes must be positive"):
        config(max_minutes=0)


class KindSource:
    """A mixture of two kinds of batch, 30% kind 0 and 70% kind 1: a batch is [kind, a draw of its own]."""

    def __init__(self, kind: int | None = None) -> None:
        self.kind = kind

    def sample(self, rng: np.random.Generator, batch_size: int) -> torch.Tensor:
        kind = self.kind if self.kind is not None else int(rng.random() < 0.7)
        return torch.tensor([float(kind), rng.random()])

    def validation(self, n: int) -> torch.Tensor:
        return torch.zeros(n, 2)

    def mixture(self) -> list[tuple[str, float, KindSource]]:
        return [("zero", 0.3, KindSource(0)), ("one", 0.7, KindSource(1))]


def test_every_rank_draws_the_kind_of_batch_the_others_do() -> None:
    """A step's batches are all of one kind on every rank, as on one rank (and a step costs one kind's
    time, not the slowest rank's), while each rank draws its own items."""
    solver = SolverBase(SimpleNamespace(train=SimpleNamespace(batch_size=2)), KindSource())
    ranks = [[b for _, b in _StepBatches(solver, 0, 0, 200, rank, 2)] for rank in (0, 1)]
    kinds = [[int(b[0]) for b in batches] for batches in ranks]
    assert kinds[0] == kinds[1] and 40 < kinds[0].count(0) < 80  # about 30% kind 0, the same steps on both
    assert all(a[1] != b[1] for a, b in zip(*ranks))  # their own draws within the kind
    one_rank = [int(b[0]) for _, b in _StepBatches(solver, 0, 0, 200)]
    assert one_rank == kinds[0]  # the kinds do not depend on the number of ranks


def test_nan_stops_with_step(tmp_path: Path) -> None:
    with pytest.raises(TrainingError, match="at step 4"):
        train_tokenizer(ToySolver(nan_at=4), config(), tmp_path)
    with pytest.raises(TrainingError, match="nothing to resume"):
        train_tokenizer(ToySolver(), config(), tmp_path / "empty", resume=True)


RANKS = """
import importlib.util, json, sys
from pathlib import Path
from videopoet import distributed
from videopoet.tokenizers.trainer import TrainingError, train_tokenizer

spec = importlib.util.spec_from_file_location("trainer_tests", sys.argv[1])
tests = importlib.util.module_from_spec(spec)
spec.loader.exec_module(tests)
rank, world = distributed.join_from_environment()
out = Path(sys.argv[2])
solver = tests.ToySolver(disc_from=2 + 2 * rank)  # at steps 2 and 3 rank 1 has no discriminator loss
result = train_tokenizer(solver, tests.config(steps=6), out / "run")
report = {"weights": [p.tolist() for p in solver.model.parameters()], "losses": solver.losses, "val": result["val"],
          "disc": [p.tolist() for p in solver.discriminator.parameters()]}
try:  # rank 1's loss goes bad at step 3
    train_tokenizer(tests.ToySolver(nan_at=3 if rank == 1 else None), tests.config(steps=6), out / "nan")
except TrainingError as e:
    report["error"] = str(e)
report["limited"] = train_tokenizer(tests.ToySolver(), tests.config(steps=6, max_minutes=1e-9), out / "limited")["step"]

# the primitives under it (videopoet/distributed.py)
import torch
from torch import nn
torch.manual_seed(rank)  # different starting weights on each rank
net = nn.Sequential(nn.Linear(3, 2), nn.Linear(2, 1))
distributed.broadcast_module(net)
params = list(net.parameters())
params[0].grad = torch.full_like(params[0], float(rank + 1))  # rank 0: 1, rank 1: 2
params[1].grad = None if rank == 0 else torch.full_like(params[1], 4.0)  # a parameter one rank did not use
report["flags"] = distributed.average_gradients(params, flag=float(rank == 1))
report["plan"] = distributed.broadcast_object({"steps": 10 + rank})
report["mean"] = distributed.mean_over_ranks(torch.tensor(1.0 + 2 * rank, requires_grad=True)).tolist()
report["net"] = [p.tolist() for p in params]
report["grads"] = [params[0].grad.unique().tolist(), params[1].grad.unique().tolist(), params[2].grad is None]
(out / f"rank{rank}.json").write_text(json.dumps(report))
distributed.leave()
"""


@pytest.mark.slow  # two processes under torchrun
def test_two_ranks_keep_the_same_weights_and_stop_together(tmp_path: Path) -> None:
    """The loop on two gloo ranks, and the primitives of videopoet/distributed.py, in one torchrun launch."""
    import os
    import subprocess

    from videopoet.distributed import torchrun_command

    script = tmp_path / "ranks.py"
    script.write_text(RANKS)
    cmd = torchrun_command(2, [str(script), __file__, str(tmp_path)])
    done = subprocess.run(cmd, timeout=300, env={**os.environ, "OMP_NUM_THREADS": "1"}, capture_output=True, text=True)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]  # the ranks' own words on a failure
    r0, r1 = (json.loads((tmp_path / f"rank{r}.json").read_text()) for r in (0, 1))
    assert r0["weights"] == r1["weights"]  # averaged gradients: the same update on every rank
    assert r0["disc"] == r1["disc"]  # the discriminator too, on steps only one rank has its loss
    assert r0["losses"] != r1["losses"]  # ... from different batches (seeded by rank)
    assert r0["val"] and not r1["val"]  # rank 0 alone validates ...
    assert latest_checkpoint(tmp_path / "run").name == "step_0000006"  # ... and saves
    # a bad loss on rank 1 stops both ranks at that step: neither waits on the other
    assert "became nan at step 3" in r1["error"] and "another rank's tokenizer loss" in r0["error"]
    # out of time: both ranks stop at the same (log) step, and rank 0 saves it
    assert r0["limited"] == r1["limited"] == 2 and latest_checkpoint(tmp_path / "limited").name == "step_0000002"
    # distributed.py: rank 0's weights everywhere; gradients (1 + 2) / 2 and (0 + 4) / 2 (no gradient counts
    # as zero), one no rank has stays None; rank 1's flag and rank 0's plan reach both
    assert r0["net"] == r1["net"] and r0["grads"] == r1["grads"] == [[1.5], [2.0], True]
    assert r0["flags"] == r1["flags"] == 1.0 and r0["plan"] == r1["plan"] == {"steps": 10}
    assert r0["mean"] == r1["mean"] == 2.0  # (1 + 3) / 2: a batch statistic of the global batch


def test_crash_while_saving_keeps_latest_valid(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    train_tokenizer(ToySolver(), config(steps=3), tmp_path)
    import videopoet.tokenizers.checkpoint as ckpt

    def broken(*args: Any, **kwargs: Any) -> None:
        raise OSError("disk full")

    monkeypatch.setattr(ckpt.torch, "save", broken)
    with pytest.raises(OSError, match="disk full"):
        train_tokenizer(ToySolver(), config(steps=6), tmp_path, resume=True)
    assert latest_checkpoint(tmp_path).name == "step_0000003"
    monkeypatch.undo()
    resumed = ToySolver()
    train_tokenizer(resumed, config(steps=6), tmp_path, resume=True)
    assert min(resumed.losses) == 3


def test_tokenizer_folder_round_trip_and_errors(tmp_path: Path) -> None:
    from videopoet.tokenizers.checkpoint import CheckpointError, load_tokenizer, save_tokenizer
    from videopoet.tokenizers.video.model import VideoTokenizer
    from videopoet.tokenizers.video.model import preset as video_preset

    model = VideoTokenizer(video_preset("tiny")).eval()
    save_tokenizer(tmp_path / "video", model, "video")
    loaded = load_tokenizer(tmp_path / "video", "video")
    frames = torch.randint(0, 256, (5, 64, 64, 3), dtype=torch.uint8)
    assert torch.equal(model.encode_frames(frames), loaded.encode_frames(frames))
    with pytest.raises(CheckpointError, match="not a 'audio' one"):
        load_tokenizer(tmp_path / "video", "audio")
    with pytest.raises(CheckpointError, match="not found"):
        load_tokenizer(tmp_path / "nothing", "video")
    other = VideoTokenizer(video_preset("tiny", channels=8)).eval()
    save_tokenizer(tmp_path / "other", other, "video")
    (tmp_path / "other" / "model.safetensors").replace(tmp_path / "video" / "model.safetensors")
    with pytest.raises(CheckpointError, match="do not fit this model's config"):
        load_tokenizer(tmp_path / "video", "video")
    (tmp_path / "video" / "model.safetensors").write_bytes(b"garbage")
    with pytest.raises(CheckpointError, match="corrupt"):
        load_tokenizer(tmp_path / "video", "video")
