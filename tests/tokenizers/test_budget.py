"""Fitting a tokenizer run to a time budget (`videopoet/tokenizers/budget.py`), on the video family's
smallest config: the step count from timed calibration steps, the scaled schedule and the time limit; and
on the audio family's warm-ups (step times faked, to check the plan's arithmetic)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from videopoet.config import from_dict, to_dict
from videopoet.data.sources import training_source
from videopoet.tokenizers import budget
from videopoet.tokenizers.audio.model import preset
from videopoet.tokenizers.audio.train import AudioTokenizerTrainingConfig
from videopoet.tokenizers.budget import apply_schedule, fit_steps_to_minutes
from videopoet.tokenizers.registry import get_family
from videopoet.tokenizers.video.train import VideoTokenizerTrainingConfig

FAMILY = get_family("video")


def small(steps: int = 4, **loss: object) -> VideoTokenizerTrainingConfig:
    """A video tokenizer of 8 channels and 6 bits on 9x32x32 clips, so calibration steps take ~0.1 s."""
    return from_dict(
        VideoTokenizerTrainingConfig,
        {
            "model": dict(channels=8, channel_mult=[1, 2, 2, 2], num_res_blocks=1, norm_groups=4, bits=6,
                          group_bits=3, frames=9, height=32, width=32),
            "loss": {"disc_start": 2, "entropy_anneal_steps": 4, **loss},
            "train": dict(steps=steps, batch_size=2, precision="fp32", num_workers=0, device="cpu",
                          optim=dict(lr=1e-3, warmup_steps=1)),
        },
    )  # fmt: skip


def test_fit_steps_to_minutes_scales_the_schedule() -> None:
    config = small(steps=100, disc_start=50, entropy_anneal_steps=40)
    config.train.optim.warmup_steps = 10
    source = training_source(FAMILY, "shapes", config)
    plan = fit_steps_to_minutes(FAMILY, config, source, 0.05, ("loss.entropy_anneal_steps",), calibration_steps=2)
    assert plan["seconds_per_step"] > 0 and plan["plain_seconds_per_step"] > 0
    steps = plan["steps"]
    assert config.train.steps == steps and steps == max(10, int(3 / plan["seconds_per_step"]))
    assert plan["schedule"]["loss.entropy_anneal_steps"] == config.loss.entropy_anneal_steps == round(40 * steps / 100)
    assert config.train.optim.warmup_steps == max(1, round(10 * steps / 100))
    assert config.train.max_minutes == 0.05  # a hard stop at the budget
    fresh = small(steps=100)
    apply_schedule(fresh, plan)
    assert fresh.train.steps == steps and fresh.loss.entropy_anneal_steps == config.loss.entropy_anneal_steps
    assert fresh.train.max_minutes == 0.05


def test_fit_steps_to_minutes_times_each_kind_of_a_mixture() -> None:
    class Mixed:  # a source that mixes cheap 1-frame batches (a quarter) with clip batches
        def __init__(self, inner: object, frames: int | None) -> None:
            self.inner, self.frames = inner, frames

        def sample(self, rng: np.random.Generator, batch_size: int) -> torch.Tensor:
            clip = self.inner.sample(rng, batch_size)
            return clip[:, :, : self.frames] if self.frames else clip

        def validation(self, n: int) -> torch.Tensor:
            return self.inner.validation(n)

        def mixture(self) -> list[tuple[str, float, object]]:
            return [("stills", 0.25, Mixed(self.inner, 1)), ("clips", 0.75, Mixed(self.inner, None))]

    config = small(steps=100)
    plan = fit_steps_to_minutes(FAMILY, config, Mixed(training_source(FAMILY, "shapes", config), None), 0.05, calibration_steps=2)
    by_kind = plan["plain_seconds_per_step_by_kind"]
    assert set(by_kind) == {"stills", "clips"} and all(t > 0 for t in by_kind.values())
    assert plan["plain_seconds_per_step"] == pytest.approx(0.25 * by_kind["stills"] + 0.75 * by_kind["clips"])


def test_fit_steps_to_minutes_times_the_steps_after_the_warm_ups(monkeypatch: pytest.MonkeyPatch) -> None:
    """The audio codec's mel loss and RVQ switch on at `mel_start` and `quantizer_start`: the steps after
    them, which cost more, set the step count; the steps before the first cost what they cost then."""
    audio = get_family("audio")
    config = from_dict(AudioTokenizerTrainingConfig, {
        "model": to_dict(preset("tiny")), "loss": {"gan_weight": 0.0, "mel_start": 20, "quantizer_start": 50},
        "train": {"steps": 1000, "batch_size": 2, "precision": "fp32", "num_workers": 0, "device": "cpu"},
        "segment_seconds": 0.25, "val_clips": 2, "val_seconds": 0.5,
    })  # fmt: skip
    trials = []

    def seconds_per_step(solver: object, train: object, steps: int) -> float:
        loss = solver.config.loss
        trials.append((loss.mel_start, loss.quantizer_start))
        return 0.5 if loss.mel_start and loss.quantizer_start else 1.0  # warm-ups on: mel and RVQ skipped

    monkeypatch.setattr(budget, "loop_seconds_per_step", seconds_per_step)
    plan = fit_steps_to_minutes(audio, config, training_source(audio, "shapes", config), 1.0)
    assert sorted(trials) == [(0, 0), (20, 50)]  # timed with both switched on, and as the run starts
    assert plan["seconds_per_step"] == 1.0 and plan["early_seconds_per_step"] == 0.5
    assert plan["early_steps"] == 20 and plan["steps"] == config.train.steps == 20 + 50  # 10 s, then 50 x 1 s
    assert (config.loss.mel_start, config.loss.quantizer_start) == (20, 50)  # the run's own warm-ups stay
