"""The training loop both media tokenizers share.

A tokenizer describes its training as a `TokenizerSolver` (build model and data, compute the generator
and discriminator losses, evaluate, write samples); `train_tokenizer` runs it: AdamW with warm-up and
cosine decay, gradient clipping, EMA weights, bf16 autocast where the hardware has it, a progress bar,
TensorBoard scalars and samples, validation, safetensors checkpoints every N steps with resume, and a
clear stop on a NaN or infinite loss.

Data for step `s` comes from `solver.sample_batch(rng, kind_rng)` with both seeded by `(seed, s)`, so a
resumed run sees exactly the batches an uninterrupted one would; batches are made ahead in DataLoader workers.

Data parallel: started by a launcher (`videopoet tokenizer train ... --nproc N`, `torchrun`, `srun`), every
rank draws its own batches (`rng` seeded by `(seed, s, rank)`) of the kind every rank draws at that step
(`kind_rng`, seeded by `(seed, s)` alone: a step is all photographs or all clips, as on one rank), so
`train.batch_size` here is per rank and the global batch is `batch_size x ranks` (the commands divide a
config's global batch first: `videopoet.data.sources.split_among_ranks`); gradients are averaged over the
ranks before clipping, which keeps the weights, the optimizer and the EMA the same on every rank. Rank 0
alone logs, validates, writes samples and saves.
"""

from __future__ import annotations

import copy
import math
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Protocol

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader, IterableDataset, get_worker_info
from tqdm.auto import tqdm

from videopoet.distributed import (
    average_gradients,
    barrier,
    broadcast_module,
    count_ranks,
    join_from_environment,
    local_device,
)
from videopoet.errors import UserError
from videopoet.optim import OptimConfig, build_optimizer
from videopoet.precision import autocast_dtype
from videopoet.runs import capture_rng, restore_rng
from videopoet.tokenizers.checkpoint import (
    latest_checkpoint,
    load_checkpoint,
    save_checkpoint,
    save_tokenizer_folder,
    tokenizer_folder_config,
)


class TrainingError(UserError):
    """Training cannot go on: a non-finite loss, or a run folder that does not fit the request."""


@dataclass
class TrainConfig:
    """Settings of the shared tokenizer training loop."""

    steps: int = 1000
    batch_size: int = 8
    optim: OptimConfig = field(default_factory=OptimConfig)
    disc_optim: OptimConfig = field(default_factory=lambda: OptimConfig(lr=1e-4, betas=(0.5, 0.9)))
    ema_decay: float = 0.999
    precision: Literal["auto", "fp32", "bf16"] = "auto"  # auto: bf16 autocast where the hardware has it
    log_every: int = 10
    val_every: int = 200
    sample_every: int = 500
    save_every: int = 500
    keep_last: int = 2
    seed: int = 0
    num_workers: int = 1  # DataLoader workers that make batches ahead of the step
    device: str = "auto"  # auto: cuda when available (this rank's GPU under a launcher), else cpu
    # stop (validate, sample and save as at the last step) once this process has trained this long, checked
    # every log_every steps: a cluster job's time limit, or a benchmark's budget; resume goes on from there
    max_minutes: float | None = None

    def __post_init__(self) -> None:
        if self.steps < 1 or self.batch_size < 1:
            raise ValueError("steps and batch_size must be at least 1")
        if self.max_minutes is not None and self.max_minutes <= 0:
            raise ValueError(f"max_minutes must be positive (or null for no limit), got {self.max_minutes}")
        if not 0 <= self.ema_decay < 1:
            raise ValueError(f"ema_decay must be in [0, 1), got {self.ema_decay}")
        for name in ("log_every", "val_every", "sample_every", "save_every", "keep_last"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1")


@dataclass
class FamilyTrainingConfig:
    """What every family's config section (`<family>_tokenizer`) has beside its model, discriminator and
    losses: the loop's settings and how many validation clips to score."""

    train: TrainConfig = field(default_factory=TrainConfig)
    val_clips: int = 8  # held-out clips scored at every validation

    def __post_init__(self) -> None:
        if self.val_clips < 1:
            raise ValueError(f"val_clips must be at least 1, got {self.val_clips}")


class TrainingSource(Protocol):
    """Where a solver's media comes from (`videopoet.data.sources` makes them): float tensors in [-1, 1],
    clips `[B, 3, T, H, W]` or waveforms `[B, 1, N]`. A source may also offer
    `validation_scores(reconstructions) -> dict` for what it knows about its validation clips, and
    `mixture() -> [(kind, share, source)]` when it mixes kinds of batch of different cost (each `source`
    draws only its kind), so that step timing weighs each kind by its share and every rank draws the same
    kind at a step."""

    def sample(self, rng: np.random.Generator, batch_size: int) -> torch.Tensor:
        """A random training batch drawn with `rng` (the loop seeds it per step, so resuming repeats it)."""

    def validation(self, n: int) -> torch.Tensor:
        """The same `n` held-out clips every call."""


class TokenizerSolver(Protocol):
    """What the loop needs from a tokenizer. Losses are returned, the loop does backward and steps."""

    model: nn.Module
    discriminator: nn.Module | None

    def folder_config(self) -> dict[str, Any]:
        """The JSON saved as the tokenizer folder's config.json (kind, model config, training config)."""

    def sample_batch(self, rng: np.random.Generator, kind_rng: np.random.Generator | None = None) -> Any:
        """One training batch of CPU tensors, drawn with `rng`, of the kind `kind_rng` picks when the source
        is a mixture (the same on every rank); runs in DataLoader workers."""

    def generator_loss(self, batch: Any, step: int) -> tuple[torch.Tensor, dict[str, float], Any]:
        """Total loss of the tokenizer, scalars to log, and what `discriminator_loss` needs (e.g. the
        reconstruction)."""

    def discriminator_loss(self, batch: Any, aux: Any, step: int) -> tuple[torch.Tensor, dict[str, float]] | None:
        """The discriminator's loss, or None while it is switched off."""

    def evaluate(self, model: nn.Module) -> dict[str, float]:
        """Validation metrics of `model` (the EMA weights) on held-out data."""

    def write_samples(self, writer: Any, model: nn.Module, step: int) -> None:
        """Reconstruction samples to TensorBoard."""


class SolverBase:
    """What every family's solver shares: its training config (with `model`, `train`, `loss.disc_start`
    and `val_clips`), its `TrainingSource`, batches, the fixed validation clips and the adversarial switch.
    A subclass sets `family` and builds `model` and `discriminator`."""

    family: str
    model: nn.Module
    discriminator: nn.Module | None

    def __init__(self, config: Any, source: TrainingSource) -> None:
        self.config, self.source = config, source
        self._val: torch.Tensor | None = None
        self._kinds = source.mixture() if hasattr(source, "mixture") else []
        shares = np.array([share for _, share, _ in self._kinds])
        self._kind_p = shares / shares.sum() if len(shares) > 1 else None

    def folder_config(self) -> dict[str, Any]:
        """config.json of the tokenizer folder: the family, the model and training configs, and the media
        geometry it takes (`MediaTokenizer.geometry`, with the source's frame rate for video)."""
        geometry = {**self.model.geometry(), **({"fps": self.config.fps} if hasattr(self.config, "fps") else {})}
        return tokenizer_folder_config(self.family, self.config.model, training=self.config, geometry=geometry)

    def sample_batch(self, rng: np.random.Generator, kind_rng: np.random.Generator | None = None) -> torch.Tensor:
        source = self.source
        if kind_rng is not None and self._kind_p is not None:  # the kind by its share, with the ranks' shared draw
            source = self._kinds[kind_rng.choice(len(self._kinds), p=self._kind_p)][2]
        return source.sample(rng, self.config.train.batch_size)

    def gan_on(self, step: int) -> bool:
        """Whether the adversarial losses (and the discriminator's training) are on at `step`."""
        return self.discriminator is not None and step >= self.config.loss.disc_start

    def validation_clips(self) -> torch.Tensor:
        """The fixed held-out clips (made once)."""
        if self._val is None:
            self._val = self.source.validation(self.config.val_clips)
        return self._val


class EMA:
    """Exponential moving average of a model's parameters; buffers (codebooks, statistics) are copied."""

    def __init__(self, model: nn.Module, decay: float) -> None:
        self.decay = decay
        self.model = copy.deepcopy(model).eval().requires_grad_(False)

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        for ema_p, p in zip(self.model.parameters(), model.parameters()):
            ema_p.lerp_(p.detach(), 1.0 - self.decay)
        for ema_b, b in zip(self.model.buffers(), model.buffers()):
            ema_b.copy_(b)


_KIND_STREAM = 2**32  # keys the per-step draw of a batch's kind apart from every rank's own draws


class _StepBatches(IterableDataset):
    """Yields (step, batch) for steps start, start+1, ...; worker w makes the steps with s % W == w, and
    the DataLoader interleaves workers in order, so the sequence is the same for any worker count. Rank r
    of a data-parallel run seeds with (seed, step, r); a run of one rank with (seed, step)."""

    def __init__(self, solver: TokenizerSolver, seed: int, start: int, stop: int, rank: int = 0, world: int = 1) -> None:
        self.solver, self.seed, self.start, self.stop = solver, seed, start, stop
        self.key = [] if world == 1 else [rank]

    def __iter__(self) -> Iterator[tuple[int, Any]]:
        info = get_worker_info()
        workers, wid = (info.num_workers, info.id) if info else (1, 0)
        if info:
            torch.set_num_threads(1)
        for step in range(self.start + wid, self.stop, workers):
            kind_rng = np.random.default_rng([self.seed, step, _KIND_STREAM])  # the same on every rank
            yield step, self.solver.sample_batch(np.random.default_rng([self.seed, step, *self.key]), kind_rng)


def _to_device(batch: Any, device: torch.device) -> Any:
    if isinstance(batch, torch.Tensor):
        return batch.to(device, non_blocking=True)
    if isinstance(batch, dict):
        return {k: _to_device(v, device) for k, v in batch.items()}
    if isinstance(batch, (list, tuple)):
        return type(batch)(_to_device(v, device) for v in batch)
    return batch


def _check_finite(loss: torch.Tensor, what: str, step: int, logs: dict[str, float]) -> None:
    if not torch.isfinite(loss.detach()).all():
        bad = ", ".join(f"{k}={v:.4g}" for k, v in logs.items() if not math.isfinite(v)) or f"loss={loss.item()}"
        raise TrainingError(
            f"the {what} loss became {loss.item()} at step {step} ({bad}); lower the learning rate or check "
            "the data, then resume from the last checkpoint with --resume"
        )


def _backward_step(loss: torch.Tensor | None, params: list[nn.Parameter], optimizer, scheduler, clip: float,
                   what: str, step: int, logs: dict[str, float]) -> torch.Tensor:
    """Check the loss, backward, average the gradients over the ranks, clip and step; returns the gradient
    norm as a tensor (the host reads it at log steps only). Every rank stops together on a bad loss. A
    rank with no loss (None) only takes part in the average."""
    bad = loss is not None and not bool(torch.isfinite(loss.detach()).all())
    optimizer.zero_grad(set_to_none=True)
    if loss is not None and not bad:
        loss.backward()
    if average_gradients(params, float(bad)) > 0:  # one rank: the flag itself
        if bad:
            _check_finite(loss, what, step, logs)
        raise TrainingError(f"another rank's {what} loss became non-finite at step {step}; lower the learning rate or "
                            "check the data, then resume from the last checkpoint with --resume")
    norm = torch.nn.utils.clip_grad_norm_(params, clip if clip > 0 else float("inf"))
    optimizer.step()
    scheduler.step()
    return norm.detach()


def train_tokenizer(solver: TokenizerSolver, config: TrainConfig, out_dir: str | Path, resume: bool = False) -> dict[str, Any]:
    """Train `solver`'s tokenizer into `out_dir`; returns the last validation metrics and losses."""
    out_dir = Path(out_dir)
    found = latest_checkpoint(out_dir)
    if found is not None and not resume:
        raise TrainingError(f"{out_dir} already holds a training run (at {found.name}); pass --resume to continue it or choose another --out")
    if resume and found is None:
        raise TrainingError(f"nothing to resume: {out_dir} holds no checkpoint")

    torch.manual_seed(config.seed)
    device = local_device(config.device)
    rank, world = join_from_environment(device)
    amp_dtype = autocast_dtype(config.precision, device)
    model = solver.model.to(device)
    disc = solver.discriminator.to(device) if solver.discriminator is not None else None
    for module in (model, disc):
        if module is not None:
            broadcast_module(module)
    gen_params = [p for p in model.parameters() if p.requires_grad]
    gen_opt, gen_sched = build_optimizer(gen_params, config.optim, config.steps)
    disc_opt = disc_sched = None
    if disc is not None:
        disc_opt, disc_sched = build_optimizer(disc.parameters(), config.disc_optim, config.steps)
    ema = EMA(model, config.ema_decay)

    modules: dict[str, nn.Module] = {"model": model, "ema": ema.model}
    if disc is not None:
        modules["discriminator"] = disc
    start = 0
    if found is not None:
        state = load_checkpoint(found, modules)
        gen_opt.load_state_dict(state["optimizer"])
        gen_sched.load_state_dict(state["scheduler"])
        if disc_opt is not None:
            disc_opt.load_state_dict(state["disc_optimizer"])
            disc_sched.load_state_dict(state["disc_scheduler"])
        restore_rng(state["rng"])
        start = int(state["step"])
        print(f"resuming {out_dir} from step {start}")
    if world > 1:  # each rank its own random draws (e.g. quantizer dropout), from the seed, rank and start
        torch.manual_seed(int(np.random.default_rng([config.seed, rank, start]).integers(2**62)))

    from torch.utils.tensorboard import SummaryWriter

    main = rank == 0
    writer = SummaryWriter(str(out_dir / "tensorboard"), purge_step=start or None) if main else None
    loader = DataLoader(
        _StepBatches(solver, config.seed, start, config.steps, rank, world),
        batch_size=None,
        num_workers=config.num_workers,
        prefetch_factor=2 if config.num_workers else None,
        persistent_workers=False,
        pin_memory=device.type == "cuda",  # page-locked batches: `_to_device`'s non_blocking copies overlap the step
        generator=torch.Generator().manual_seed(config.seed),  # keeps the global RNG untouched for resume
    )

    def save(step: int) -> None:
        state = {
            "step": step,
            "optimizer": gen_opt.state_dict(),
            "scheduler": gen_sched.state_dict(),
            "rng": capture_rng(),
        }
        if disc_opt is not None:
            state["disc_optimizer"] = disc_opt.state_dict()
            state["disc_scheduler"] = disc_sched.state_dict()
        save_checkpoint(out_dir, step, modules, state, config.keep_last)
        save_tokenizer_folder(out_dir, ema.model, solver.folder_config())

    metrics: dict[str, float] = {}
    logs: dict[str, float] = {}
    bar = tqdm(total=config.steps, initial=start, desc="train", unit="step", dynamic_ncols=True, disable=not main)
    began = last_time = time.perf_counter()
    last_step = done = start
    limit = None if config.max_minutes is None else config.max_minutes * 60
    try:
        for step, batch in loader:
            model.train()
            batch = _to_device(batch, device)
            with torch.autocast(device.type, dtype=amp_dtype or torch.float32, enabled=amp_dtype is not None):
                loss, logs, aux = solver.generator_loss(batch, step)
            logs["grad_norm"] = _backward_step(loss, gen_params, gen_opt, gen_sched, config.optim.grad_clip, "tokenizer", step, logs)
            logs["lr"] = gen_sched.get_last_lr()[0]
            ema.update(model)
            if disc is not None:
                with torch.autocast(device.type, dtype=amp_dtype or torch.float32, enabled=amp_dtype is not None):
                    out = solver.discriminator_loss(batch, aux, step)
                # a rank may have no discriminator loss on a step others have one (a batch of photographs):
                # it joins their step with no gradient of its own
                if count_ranks(out is not None, device) > 0:
                    d_loss, d_logs = out if out is not None else (None, {})
                    logs.update(d_logs)
                    logs["disc_grad_norm"] = _backward_step(d_loss, list(disc.parameters()), disc_opt, disc_sched,
                                                            config.disc_optim.grad_clip, "discriminator", step, d_logs)
            done = step + 1
            bar.update(1)
            logged = done % config.log_every == 0 or done == config.steps
            # every rank stops at the same step: any rank over the limit stops them all
            out_of_time = (logged and done < config.steps and limit is not None
                           and count_ranks(time.perf_counter() - began >= limit, device) > 0)
            last = done == config.steps or out_of_time
            if logged:
                logs = {k: float(v) for k, v in logs.items()}  # the gradient norms: read from the device here only
                now = time.perf_counter()
                logs["steps_per_s"] = (done - last_step) / max(now - last_time, 1e-9)
                last_time, last_step = now, done
                if main:
                    for k, v in logs.items():
                        writer.add_scalar(f"train/{k}", v, done)
                    bar.set_postfix({k: f"{v:.3g}" for k, v in logs.items() if k in ("loss", "rec", "d_loss", "lr")})
            if main and (done % config.val_every == 0 or last):
                metrics = solver.evaluate(ema.model)
                for k, v in metrics.items():
                    writer.add_scalar(f"val/{k}", v, done)
                bar.write(f"step {done}: " + ", ".join(f"{k}={v:.4g}" for k, v in metrics.items()))
            if main and (done % config.sample_every == 0 or last):
                solver.write_samples(writer, ema.model, done)
            if main and (done % config.save_every == 0 or last):
                save(done)
            if out_of_time:
                if main:
                    bar.write(f"stopped at step {done} of {config.steps}: the time limit (train.max_minutes = "
                              f"{config.max_minutes:g}) is up; --resume goes on from here")
                break
    finally:
        bar.close()
        if writer is not None:
            writer.close()
    barrier()  # the other ranks return once rank 0 has saved
    return {"step": done, "steps": config.steps, "train": logs, "val": metrics}
