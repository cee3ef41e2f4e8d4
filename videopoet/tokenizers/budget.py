"""Fitting a tokenizer run to a time budget: time the real loop's steps on a few calibration steps, then set
the step count (and scale the schedule's step counts with it) so training takes the minutes asked for."""

from __future__ import annotations

import copy
import tempfile
from pathlib import Path
from typing import Any

from videopoet.tokenizers.trainer import TokenizerSolver, TrainConfig, TrainingSource, train_tokenizer


def loop_seconds_per_step(solver: TokenizerSolver, config: TrainConfig, steps: int = 12) -> float:
    """Seconds per step of a short real run of `solver` as the loop measures it: optimizer steps, EMA and
    data included, start-up excluded. Runs a copy of `config` for `steps` steps in a temporary folder;
    benchmarks plan their step counts with it."""
    config = copy.deepcopy(config)
    config.steps, config.log_every = steps, max(1, steps // 2)
    config.val_every = config.save_every = config.sample_every = steps
    with tempfile.TemporaryDirectory() as tmp:
        result = train_tokenizer(solver, config, Path(tmp) / "calibrate")
    return 1.0 / result["train"]["steps_per_s"]


def _dotted(config: Any, key: str) -> tuple[Any, str]:
    *parents, leaf = key.split(".")
    for p in parents:
        config = getattr(config, p)
    return config, leaf


def fit_steps_to_minutes(family: Any, config: Any, source: TrainingSource, minutes: float, schedule_keys: tuple[str, ...] = (), calibration_steps: int = 30) -> dict[str, Any]:
    """Set `config.train.steps` so training `family` on `source` takes about `minutes`, from seconds per
    step timed on short real runs of fresh solvers (with the discriminator on, too, when the config
    trains one: its share of the run stays the config's `disc_start / steps`; each kind of batch of a
    source's `mixture` on its own, weighed by its share). Steps are timed as they are once every
    warm-up the loss config names in `warmup_starts` is over (the audio codec's mel loss and RVQ), and
    the steps before the first of them as they are then. The warm-up and every
    step count named in `schedule_keys` (dotted, e.g. `loss.disc_start`) scale with the run, so the
    schedule keeps its proportions, and `train.max_minutes` becomes `minutes`: a step time that wanders up
    later in the run (a shared machine) stops it at the budget rather than past it. Returns the plan:
    steps, seconds per step (`early_`: of the `early_steps` before the first warm-up ends), and the scaled
    keys."""
    parts = source.mixture() if hasattr(source, "mixture") else [("batches", 1.0, source)]
    loss = config.loss
    warmups = tuple(getattr(loss, "warmup_starts", ()))

    def timed(disc_start: int, warmed: bool = True) -> dict[str, float]:
        trial = copy.deepcopy(config)
        trial.loss.disc_start = disc_start
        for key in warmups if warmed else ():
            setattr(trial.loss, key, 0)
        return {kind: loop_seconds_per_step(family.build_solver(trial, part), trial.train, calibration_steps) for kind, _, part in parts}

    def mean(by_kind: dict[str, float]) -> float:
        return sum(share * by_kind[kind] for kind, share, _ in parts)

    gan = getattr(loss, "gan_weight", 0) > 0
    no_disc = calibration_steps + 1 if gan else loss.disc_start
    plain_by_kind = timed(no_disc)
    plain = mean(plain_by_kind)
    adversarial = mean(timed(0)) if gan else plain
    gan_share = max(0.0, 1 - loss.disc_start / config.train.steps) if gan else 0.0
    per_step = (1 - gan_share) * plain + gan_share * adversarial
    # the steps before the first warm-up ends cost what they cost then (cheaper: less is computed)
    early = min((getattr(loss, key) for key in warmups), default=0)
    early_step = mean(timed(no_disc, warmed=False)) if early > 0 else per_step
    seconds = minutes * 60
    head = min(early, int(seconds / early_step))
    steps = max(10, head + int((seconds - head * early_step) / per_step))
    scale = steps / config.train.steps
    config.train.steps = steps
    config.train.max_minutes = minutes  # the plan's hard stop, should the machine slow down mid-run
    config.train.optim.warmup_steps = max(1, round(config.train.optim.warmup_steps * scale))
    schedule = {"train.optim.warmup_steps": config.train.optim.warmup_steps}
    for key in schedule_keys:
        parent, leaf = _dotted(config, key)
        setattr(parent, leaf, round(getattr(parent, leaf) * scale))
        schedule[key] = getattr(parent, leaf)
    return {"minutes": minutes, "steps": steps, "seconds_per_step": per_step, "plain_seconds_per_step": plain,
            "adversarial_seconds_per_step": adversarial, "plain_seconds_per_step_by_kind": plain_by_kind,
            "early_seconds_per_step": early_step, "early_steps": head, "schedule": schedule}  # fmt: skip


def apply_schedule(config: Any, plan: dict[str, Any]) -> None:
    """Give `config` the step count, time limit and scaled schedule of a `fit_steps_to_minutes` plan (to
    resume a run with the schedule it started with)."""
    config.train.steps = plan["steps"]
    config.train.max_minutes = plan["minutes"]
    for key, value in plan["schedule"].items():
        parent, leaf = _dotted(config, key)
        setattr(parent, leaf, value)
