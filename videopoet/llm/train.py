"""Train the prefix LM with DeepSpeed: `python -m videopoet.llm.train --config C --data TOK --out RUN [key=value ...]`.

Started by the `deepspeed` launcher or `torchrun` (one process per device), or plainly with python as a
group of one. Reads like a solver: build model, build data, run steps, evaluate, save, restore.

Paths are command-line options, as for every other command: `--data` (token records of `videopoet
tokenize`) and `--out` (the run folder); settings are config keys. Run folder: `config.yaml` (every
section, as run), `run.json` (the data it trained on), `model.json` (the guard against resuming with
another model), `vocab.json`, `tensorboard/`,
`checkpoints/step_NNNNNNN/` (DeepSpeed checkpoint + `meta.json`) and `checkpoints/latest`, written only
after every rank finished its part of the checkpoint.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import torch

from videopoet import distributed
from videopoet.config import load_project_config, save_config, to_dict
from videopoet.errors import UserError
from videopoet.llm import parallelize
from videopoet.llm.flops import flops_per_token, peak_tflops
from videopoet.llm.masks import attention_inputs
from videopoet.llm.model import IGNORE_INDEX, LLMConfig, build_model, token_losses
from videopoet.optim import OptimConfig
from videopoet.precision import autocast_dtype
from videopoet.runs import RunFolder, atomic_write_json, capture_rng, check_settings, restore_rng, step_name
from videopoet.vocab import TASKS


class LLMTrainingError(UserError):
    """Training cannot go on: no data, a run folder that does not fit, too many bad steps."""


@dataclass
class LLMTrainConfig:
    """Settings of the LLM training run (project config section `llm_train`)."""

    deepspeed: str = "deploy/deepspeed/zero2.json"
    steps: int = 1000  # total optimizer steps (the schedule's length)
    stop_at: int = 0  # stop this run (after saving) at this step, e.g. before a job's time limit; 0: run to `steps`
    micro_batch_size: int = 4
    grad_accum: int = 1
    optim: OptimConfig = field(
        default_factory=lambda: OptimConfig(lr=3e-4, betas=(0.9, 0.95), weight_decay=0.1, warmup_steps=100)
    )
    maskgit_ratio: float = 0.5  # share of sequences trained with the MaskGIT objective
    precision: Literal["auto", "bf16", "fp32"] = "auto"  # auto: bf16 where the GPU or CPU does it natively (precision.py)
    activation_checkpointing: bool = False
    # dense: boolean masks through llm.attn_implementation, and none at all for a causal-only batch (SDPA may
    # then run flash); flex: FlexAttention block masks (training needs CUDA). docs/training.md "Attention kernels"
    attention: Literal["dense", "flex"] = "dense"
    pack_length: int = 0  # 0: one task sequence per row, grouped by length; N: several per row up to N tokens
    log_every: int = 10
    val_every: int = 100
    val_batches: int = 4
    val_fraction: float = 0.05  # records held out for validation (by a hash of clip_id)
    save_every: int = 100
    keep_last: int = 3
    max_bad_steps: int = 5  # NaN/inf losses in a row that stop the run
    seed: int = 0
    num_workers: int = 0
    # torch.compile the model (DeepSpeed's engine.compile, inductor): on GPUs fewer, fused kernels per step
    # after a one-time compile at the first steps (and per new sequence-length shape); docs/training.md "Device handling"
    compile: bool = False
    compile_backend: str = "inductor"  # torch.compile backend; aot_eager traces without generating code (a quick check)
    peak_tflops: float = 0.0  # per device, for MFU; 0: datasheet value of a known GPU, else measured
    dist_timeout_s: float = 1800.0  # a collective waiting longer for another rank (a hung rank) fails the run

    def __post_init__(self) -> None:
        if min(self.steps, self.micro_batch_size, self.grad_accum, self.log_every, self.val_every, self.save_every, self.keep_last, self.max_bad_steps) < 1:
            raise ValueError("steps, batch sizes, intervals, keep_last and max_bad_steps must be at least 1")
        if self.pack_length < 0:
            raise ValueError("pack_length must be 0 (no packing) or a row length in tokens")
        if not 0 <= self.maskgit_ratio <= 1 or not 0 <= self.val_fraction < 1:
            raise ValueError("maskgit_ratio must be in [0, 1] and val_fraction in [0, 1)")


@dataclass
class Checkpoint:
    path: Path
    meta: dict[str, Any]


def find_checkpoint(run_dir: Path, resume: str) -> Checkpoint | None:
    """The checkpoint to resume from: `auto` (latest, if any), `none`, or a checkpoint folder."""
    if resume == "none":
        return None
    if resume == "auto":
        path = RunFolder(run_dir).latest()
        if path is None:
            return None
    else:
        path = Path(resume)
    meta_file = path / "meta.json"
    if not meta_file.is_file():
        raise LLMTrainingError(f"{path} is not a videopoet LLM checkpoint (no meta.json)")
    return Checkpoint(path, json.loads(meta_file.read_text()))


RUN_FILE = "run.json"  # what a run trained on (its --data), for export
RANK_RNG_FILE = "rng_rank{rank}.pt"  # in each checkpoint: a rank's torch (CPU and CUDA), numpy and Python generators


class LLMTrainer:
    """One training run; every rank builds one."""

    def __init__(self, sections: dict[str, Any], data: str | Path, out: str | Path, resume: str = "auto") -> None:
        self.sections = sections
        self.model_config: LLMConfig = sections["llm"]
        self.config: LLMTrainConfig = sections["llm_train"]
        self.data, self.run_dir = Path(data), Path(out)
        self.rank, self.world, local_rank = parallelize.init_distributed(self.config.dist_timeout_s)
        self.device = parallelize.device_for(local_rank)
        self.bf16 = autocast_dtype(self.config.precision, self.device) is not None
        torch.manual_seed(self.config.seed)
        self.resume_from = find_checkpoint(self.run_dir, resume)
        if self.resume_from is None and RunFolder(self.run_dir).latest() is not None:
            raise LLMTrainingError(f"{self.run_dir} already holds a training run; resume it with --resume auto or choose another out")
        self.build_data()
        # a run continues only with the model and vocabulary it was started with
        check_settings(self.run_dir / "model.json", {"llm": to_dict(self.model_config), "vocab": self.vocab.to_dict()},
                       "an LLM run", "resume it with its own config, or choose another out", write=self.rank == 0)
        self.build_engine()
        self.step = 0
        self.bad_in_row = 0
        self.bad_total = 0
        if self.resume_from is not None:
            self.restore(self.resume_from)
        if self.rank == 0:
            self.run_dir.mkdir(parents=True, exist_ok=True)
            save_config(self.sections, self.run_dir / "config.yaml")
            atomic_write_json(self.run_dir / RUN_FILE, {"data": str(self.data.resolve())})
            self.vocab.save(self.run_dir / "vocab.json")

    # ---- build --------------------------------------------------------------------------------------
    def build_data(self) -> None:
        from videopoet.data.loader import build_train_and_val_loaders

        if not str(self.data) or not self.data.is_dir():
            raise LLMTrainingError(
                f"no training data at {self.data}: --data takes token records made by `videopoet tokenize` "
                "(for the shapes demo: videopoet data shapes, videopoet data ingest, videopoet tokenize)"
            )
        self.vocab, self.train_loader, self.val_loader = build_train_and_val_loaders(
            self.data,
            self.sections["tasks"],
            batch_size=self.config.micro_batch_size,
            rank=self.rank,
            world_size=self.world,
            seed=self.config.seed,
            val_fraction=self.config.val_fraction,
            maskgit_ratio=self.config.maskgit_ratio,
            num_workers=self.config.num_workers,
            pack_length=self.config.pack_length,
            pin_memory=self.device.type == "cuda",  # page-locked batches: the copy to the GPU runs asynchronously
        )

    def build_engine(self) -> None:
        base = parallelize.read_deepspeed_json(self.config.deepspeed)
        self.ds_config = parallelize.deepspeed_config(base, self.config.micro_batch_size, self.config.grad_accum, self.config.optim, self.bf16)
        if self.resume_from is not None and self._needs_universal(self.resume_from):
            self.ds_config["checkpoint"] = {**self.ds_config.get("checkpoint", {}), "load_universal": True}
        parallelize.prepare_model_init(self.ds_config)
        model = build_model(self.model_config, self.vocab)
        if self.config.attention == "flex":
            if self.device.type != "cuda":  # torch 2.11's FlexAttention has no backward on the CPU
                raise LLMTrainingError("llm_train.attention=flex trains on CUDA GPUs only; use attention=dense here")
            model.set_attn_implementation("flex_attention")
        if self.config.activation_checkpointing:
            model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
            model.config.use_cache = False
        self.engine, self.scheduler = parallelize.build_engine(model, self.ds_config, self.config.optim, self.config.steps)
        if self.config.compile:
            # compiles the wrapped module in place: checkpoints keep their parameter names
            self.engine.compile(backend=self.config.compile_backend)
        rows = model.config.vocab_size
        self.flops_per_token = flops_per_token(self.model_config, rows, seq_len=self.train_loader.typical_length())
        peak = self.config.peak_tflops or peak_tflops(self.device, torch.bfloat16 if self.bf16 else torch.float32)
        self.peak_flops = peak * 1e12

    def _needs_universal(self, ckpt: Checkpoint) -> bool:
        """A ZeRO checkpoint saved on another number of ranks loads through DeepSpeed's universal format."""
        return ckpt.meta["world_size"] != self.world and ckpt.meta["zero_stage"] > 0

    # ---- save / restore ----------------------------------------------------------------------------
    def save(self) -> Path:
        run = RunFolder(self.run_dir)
        tag = step_name(self.step)
        ckpt_root = run.checkpoints
        client_state = {
            "step": self.step,
            "loader": self.train_loader.state_dict(),
            "rng": capture_rng(),
            "bad_total": self.bad_total,
        }
        self.engine.save_checkpoint(str(ckpt_root), tag=tag, client_state=client_state, save_latest=False)
        # DeepSpeed keeps the client state of one rank only; every rank's own generators go beside it
        (ckpt_root / tag).mkdir(parents=True, exist_ok=True)
        torch.save(client_state["rng"], ckpt_root / tag / RANK_RNG_FILE.format(rank=self.rank))
        distributed.barrier()
        if self.rank == 0:
            meta = {"step": self.step, "world_size": self.world, "zero_stage": parallelize.zero_stage(self.ds_config), "tag": tag}
            atomic_write_json(ckpt_root / tag / "meta.json", meta)
            run.mark_latest(ckpt_root / tag)
            run.prune(self.config.keep_last, complete=lambda p: (p / "meta.json").is_file(), companions=("_universal",))
        distributed.barrier()
        return ckpt_root / tag

    def restore(self, ckpt: Checkpoint) -> None:
        load_dir, tag = ckpt.path.parent, ckpt.path.name
        if self._needs_universal(ckpt):
            tag = self._convert_to_universal(ckpt)
        _, client_state = self.engine.load_checkpoint(str(load_dir), tag=tag)
        if client_state is None:
            raise LLMTrainingError(f"DeepSpeed could not load the checkpoint {ckpt.path}")
        self.step = int(client_state["step"])
        self.bad_total = int(client_state.get("bad_total", 0))
        self.train_loader.load_state_dict(client_state["loader"], saved_world_size=ckpt.meta["world_size"])
        own_rng = ckpt.path / RANK_RNG_FILE.format(rank=self.rank)
        same_ranks = ckpt.meta["world_size"] == self.world and own_rng.is_file()
        restore_rng(torch.load(own_rng, weights_only=False) if same_ranks else client_state["rng"])
        if self.rank == 0:
            history = self.run_dir / "history.jsonl"
            if history.is_file():  # rows logged after the checkpoint belong to the lost part of the run
                rows = [r for r in history.read_text().splitlines() if r and json.loads(r)["step"] <= self.step]
                history.write_text("".join(r + "\n" for r in rows))
            print(f"resumed {self.run_dir} at step {self.step} (saved on {ckpt.meta['world_size']} ranks, running on {self.world})")

    def _convert_to_universal(self, ckpt: Checkpoint) -> str:
        out = ckpt.path.with_name(ckpt.path.name + "_universal")
        if self.rank == 0 and not out.is_dir():
            from deepspeed.checkpoint.ds_to_universal import main as ds_to_universal

            args = argparse.Namespace(
                input_folder=str(ckpt.path), output_folder=str(out), num_extract_workers=1, num_merge_workers=1,
                keep_temp_folder=False, strict=True, inject_missing_state=True,
            )
            ds_to_universal(args)
        distributed.barrier()
        return out.name

    # ---- steps -------------------------------------------------------------------------------------
    def forward(self, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Per-token losses, their targets, and the mean loss of a batch."""
        attention = attention_inputs(batch, self.config.attention, self.device)  # decided on the host copy: no sync
        batch = {k: v.to(self.device, non_blocking=True) for k, v in batch.items()}
        ids = batch["input_ids"]
        logits = self.engine(input_ids=ids, **attention, use_cache=False).logits
        losses, targets = token_losses(logits, batch["labels"], batch["modes"])
        scored = targets != IGNORE_INDEX
        mean = losses.sum() / scored.sum().clamp(min=1)
        return losses, targets, mean

    def breakdown(self, losses: torch.Tensor, targets: torch.Tensor, tasks: torch.Tensor) -> dict[str, float]:
        """Loss per task and per output modality (text, video, audio), for logging: sums and counts on the
        device, read by the host in one transfer (no boolean indexing, which waits for the GPU each time)."""
        scored = targets != IGNORE_INDEX
        tasks = tasks.to(losses.device)
        tasks = tasks if tasks.dim() == 2 else tasks[:, None]  # packed rows: a task per token
        names, selections = [], []
        for t, name in enumerate(TASKS):
            names.append(f"loss_task/{name}")
            selections.append(scored & (tasks == t))
        for name, r in (("text", self.vocab.text_range), ("video", self.vocab.video_range), ("audio", self.vocab.audio_range())):
            names.append(f"loss_modality/{name}")
            selections.append(scored & (targets >= r.start) & (targets < r.stop))
        sel = torch.stack(selections)
        sums = torch.where(sel, losses.float(), 0.0).sum(dim=(1, 2))
        totals, counts = torch.stack([sums.double(), sel.sum(dim=(1, 2)).double()]).tolist()
        return {name: total / count for name, total, count in zip(names, totals, counts) if count}

    @torch.no_grad()
    def evaluate(self) -> float:
        self.engine.eval()
        total = torch.zeros(2, device=self.device)
        for batch in self.val_loader.fixed_batches(self.config.val_batches):
            losses, targets, _ = self.forward(batch)
            scored = targets != IGNORE_INDEX
            total += torch.stack([losses[scored].sum(), scored.sum().float()])
        if torch.distributed.is_initialized():
            torch.distributed.all_reduce(total)
        self.engine.train()
        return float(total[0] / total[1].clamp(min=1))

    def fit(self) -> dict[str, Any]:
        """Run to `steps`, saving every `save_every` and at the end; returns the losses of the last logged step.

        The host waits for the device only at the non-finite check of each micro-step and at log, validation
        and save steps: running sums stay on the device in between (tests/llm/test_train.py counts them)."""
        from torch.utils.tensorboard import SummaryWriter
        from tqdm.auto import tqdm

        writer = SummaryWriter(str(self.run_dir / "tensorboard"), purge_step=self.step or None) if self.rank == 0 else None
        bar = tqdm(total=self.config.steps, initial=self.step, desc="llm", unit="step", disable=self.rank != 0, dynamic_ncols=True)
        history: list[dict[str, float]] = []
        end = min(self.config.steps, self.config.stop_at or self.config.steps)
        window_tokens, window_start = 0, time.perf_counter()
        window_loss, window_micro = torch.zeros((), device=self.device), 0
        micro = 0
        logs: dict[str, float] = {}
        self.engine.train()
        batches = iter(self.train_loader)
        try:
            while self.step < end:
                parallelize.fault_point(self.rank, self.step + 1)  # a test hook; does nothing unless set
                batch = next(batches)
                losses, targets, loss = self.forward(batch)
                if not parallelize.all_ranks_true(bool(torch.isfinite(loss)), self.device):
                    self.bad_in_row += 1
                    self.bad_total += 1
                    if self.bad_in_row >= self.config.max_bad_steps:
                        raise LLMTrainingError(
                            f"{self.bad_in_row} non-finite losses in a row at step {self.step}; lower llm_train.optim.lr "
                            "or check the data, then resume from the last checkpoint"
                        )
                    continue
                self.bad_in_row = 0
                self.engine.backward(loss)
                self.engine.step()
                micro += 1
                window_tokens += int(batch["lengths"].sum())  # the batch's host copy: no sync
                window_loss += loss.detach()
                window_micro += 1
                if micro % self.config.grad_accum:
                    continue
                self.step += 1
                bar.update(1)
                if self.step % self.config.log_every == 0 or self.step == self.config.steps:
                    # `loss` (and the breakdown): the last micro-batch; `loss_mean`: every micro-batch since the last log
                    logs = {"loss": loss.item(), "loss_mean": window_loss.item() / window_micro,
                            **self.breakdown(losses.detach(), targets, batch["tasks"])}
                    logs.update(self._throughput(window_tokens, window_start))
                    window_tokens, window_start = 0, time.perf_counter()
                    window_loss.zero_()
                    window_micro = 0
                    logs["lr"] = self.scheduler.get_last_lr()[0]
                    logs["bad_steps"] = float(self.bad_total)
                    self._record(history, {"step": self.step, **logs})
                    bar.set_postfix(loss=f"{logs['loss']:.3f}", tok_s=f"{logs['tokens_per_s']:.0f}")
                    if writer is not None:
                        for k, v in logs.items():
                            writer.add_scalar(k if "/" in k else f"train/{k}", v, self.step)
                if self.step % self.config.val_every == 0 or self.step == self.config.steps:
                    val = self.evaluate()
                    self._record(history, {"step": self.step, "val_loss": val})
                    if writer is not None:
                        writer.add_scalar("val/loss", val, self.step)
                    if self.rank == 0:
                        bar.write(f"step {self.step}: val loss {val:.4f}")
                if self.step % self.config.save_every == 0 or self.step == end:
                    self.save()
        finally:
            bar.close()
            if writer is not None:
                writer.close()
        return {"step": self.step, "history": history, "last": logs}

    def _record(self, history: list[dict[str, float]], row: dict[str, float]) -> None:
        """Keep a logged row and append it to the run's history.jsonl (rank 0)."""
        history.append(row)
        if self.rank == 0:
            with open(self.run_dir / "history.jsonl", "a", encoding="utf-8") as f:
                f.write(json.dumps(row) + "\n")

    def _throughput(self, tokens: int, start: float) -> dict[str, float]:
        t = torch.tensor([float(tokens)], device=self.device)
        if torch.distributed.is_initialized():
            torch.distributed.all_reduce(t)
        total = float(t)  # waits for the device's queued steps too, so the clock below times the work itself
        tokens_per_s = total / max(time.perf_counter() - start, 1e-9)
        mfu = tokens_per_s * self.flops_per_token / (self.peak_flops * self.world) if self.peak_flops > 0 else math.nan
        return {"tokens_per_s": tokens_per_s, "mfu": mfu}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m videopoet.llm.train", description="Train the videopoet LLM with DeepSpeed.")
    p.add_argument("--config", type=Path, help="project config YAML (e.g. configs/tiny.yaml)")
    p.add_argument("--data", required=True, type=Path, help="token records (videopoet tokenize --out)")
    p.add_argument("--out", required=True, type=Path, help="run folder (checkpoints, logs; resumed when it holds a run)")
    p.add_argument("--resume", default="auto", help="auto (latest checkpoint of the run, if any), none, or a checkpoint folder")
    p.add_argument("--local_rank", "--local-rank", type=int, default=None, help=argparse.SUPPRESS)  # set by the deepspeed launcher
    p.add_argument("overrides", nargs="*", metavar="key=value")
    return p.parse_args(argv)


def train(config: Path | None, overrides: list[str], data: str | Path, out: str | Path, resume: str = "auto") -> dict[str, Any]:
    """Build a trainer from a project config and run it; leaves the process group at the end."""
    sections = load_project_config(config, overrides)
    try:
        with parallelize.explain_lost_ranks():
            trainer = LLMTrainer(sections, data, out, resume=resume)
            return trainer.fit()
    finally:
        parallelize.shutdown()


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        train(args.config, args.overrides, args.data, args.out, args.resume)
    except UserError as e:
        print(f"videopoet train: error: {' '.join(str(e).split())}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
