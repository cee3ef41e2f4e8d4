"""Distribution in one place: process group, the DeepSpeed config, and the engine around the model.

Model code never mentions ranks or ZeRO; the trainer asks this module for an engine. The DeepSpeed JSON
(deploy/deepspeed/*.json) chooses the ZeRO stage, offload and precision; batch size, accumulation,
clipping and the optimizer come from our config, so there is one source of truth.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import torch

from videopoet.errors import UserError
from videopoet.optim import OptimConfig, build_scheduler


class LaunchError(UserError):
    """A DeepSpeed config or launch environment that does not fit."""


def use_environment_extensions_dir() -> None:
    """Build DeepSpeed's just-in-time ops (on the CPU, its shared-memory allreduce) into this Python
    environment (`<venv>/torch_extensions`) rather than the user-wide `~/.cache/torch_extensions`: two
    environments sharing that cache rebuild the op for each other every time (minutes on a small CPU).
    TORCH_EXTENSIONS_DIR, when set, wins; an environment that is not writable keeps torch's default."""
    import sys

    if "TORCH_EXTENSIONS_DIR" not in os.environ and os.access(sys.prefix, os.W_OK):
        os.environ["TORCH_EXTENSIONS_DIR"] = str(Path(sys.prefix) / "torch_extensions")


def init_distributed() -> tuple[int, int, int]:
    """Join the process group the launcher set up (or a group of one); returns (rank, world, local_rank).

    NCCL on GPUs, gloo on CPU (DS_ACCELERATOR=cpu)."""
    import deepspeed

    use_environment_extensions_dir()

    if "RANK" not in os.environ:  # run directly with python: a group of one
        os.environ.setdefault("RANK", "0")
        os.environ.setdefault("LOCAL_RANK", "0")
        os.environ.setdefault("WORLD_SIZE", "1")
        os.environ.setdefault("MASTER_ADDR", "127.0.0.1")
        os.environ.setdefault("MASTER_PORT", str(free_port()))
    backend = "nccl" if torch.cuda.is_available() and os.environ.get("DS_ACCELERATOR", "cuda") != "cpu" else "gloo"
    deepspeed.init_distributed(dist_backend=backend)
    local_rank = int(os.environ.get("LOCAL_RANK", 0))
    if backend == "nccl":
        torch.cuda.set_device(local_rank)
    elif "OMP_NUM_THREADS" not in os.environ:
        torch.set_num_threads(cpu_threads_per_rank())
    return torch.distributed.get_rank(), torch.distributed.get_world_size(), local_rank


def cpu_threads_per_rank() -> int:
    """This machine's cores shared among the ranks on it: torch's default of one thread per core in every
    rank oversubscribes the CPU (2 ranks on 2 cores: ~5% fewer tokens/s). OMP_NUM_THREADS overrides it."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    local = int(os.environ.get("LOCAL_SIZE") or os.environ.get("LOCAL_WORLD_SIZE") or 1)
    return max(1, cores // max(1, local))


def device_for(local_rank: int) -> torch.device:
    if torch.cuda.is_available() and os.environ.get("DS_ACCELERATOR", "cuda") != "cpu":
        return torch.device("cuda", local_rank)
    return torch.device("cpu")


def read_deepspeed_json(path: str | Path) -> dict[str, Any]:
    path = Path(path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise LaunchError(f"DeepSpeed config not found: {path}") from None
    except (OSError, ValueError) as e:
        raise LaunchError(f"cannot read DeepSpeed config {path}: {e}") from None
    if not isinstance(data, dict):
        raise LaunchError(f"DeepSpeed config {path} must hold a JSON object")
    return data


def deepspeed_config(
    base: dict[str, Any],
    micro_batch_size: int,
    grad_accum: int,
    optim: OptimConfig,
    bf16: bool,
) -> dict[str, Any]:
    """The DeepSpeed JSON with our batch, accumulation, clipping, optimizer and precision filled in.

    Keys our config owns may not be set in the JSON as well (two sources of truth would drift)."""
    owned = ("train_batch_size", "train_micro_batch_size_per_gpu", "gradient_accumulation_steps", "gradient_clipping", "optimizer", "scheduler")
    clash = [k for k in owned if k in base]
    if clash:
        raise LaunchError(f"the DeepSpeed JSON sets {', '.join(clash)}; these come from the videopoet config (llm_train.*) instead")
    config = json.loads(json.dumps(base))
    config["train_micro_batch_size_per_gpu"] = micro_batch_size
    config["gradient_accumulation_steps"] = grad_accum
    config["gradient_clipping"] = optim.grad_clip
    config["optimizer"] = {
        "type": "AdamW",
        "params": {"lr": optim.lr, "betas": list(optim.betas), "weight_decay": optim.weight_decay, "torch_adam": True},
    }
    config["bf16"] = {**config.get("bf16", {}), "enabled": bool(bf16)}
    config.pop("fp16", None)
    config.setdefault("steps_per_print", 10**9)
    return config


def zero_stage(config: dict[str, Any]) -> int:
    return int(config.get("zero_optimization", {}).get("stage", 0))


_hf_deepspeed_config: Any = None  # transformers holds only a weak reference to it


def prepare_model_init(config: dict[str, Any]) -> None:
    """Under ZeRO-3 the model must be created partitioned across ranks, never whole on one rank: tell
    transformers, whose `_from_config` then builds it inside `deepspeed.zero.Init` and initialises the
    weights one gathered module at a time."""
    global _hf_deepspeed_config
    if zero_stage(config) == 3:
        from transformers.integrations import HfDeepSpeedConfig

        _hf_deepspeed_config = HfDeepSpeedConfig(config)
    else:
        _hf_deepspeed_config = None


def build_engine(model: torch.nn.Module, config: dict[str, Any], optim: OptimConfig, total_steps: int):
    """The DeepSpeed engine (optimizer from the config, our warm-up + cosine schedule)."""
    import deepspeed

    engine, _, _, scheduler = deepspeed.initialize(
        model=model,
        model_parameters=[p for p in model.parameters() if p.requires_grad],
        config=config,
        lr_scheduler=lambda opt: build_scheduler(opt, optim, total_steps),
    )
    return engine, scheduler


def all_ranks_true(flag: bool, device: torch.device) -> bool:
    """True only when `flag` is true on every rank (so all ranks take the same branch)."""
    t = torch.tensor([0.0 if flag else 1.0], device=device)
    if torch.distributed.is_initialized():
        torch.distributed.all_reduce(t, op=torch.distributed.ReduceOp.MAX)
    return t.item() == 0.0


def barrier() -> None:
    if torch.distributed.is_initialized():
        torch.distributed.barrier()


def shutdown() -> None:
    """Leave the process group (without it the processes abort at exit) and free this rank's shared memory."""
    if torch.distributed.is_initialized():
        rank = torch.distributed.get_rank()
        torch.distributed.destroy_process_group()
        remove_cpu_allreduce_buffer(rank)


# DeepSpeed's CPU allreduce (ops/csrc/cpu/comm/shm.cpp) gives every local rank a shared-memory buffer
# (~69 MB) named after the user, MASTER_ADDR and MASTER_PORT, and never unlinks it: each run on the CPU
# would leave its buffers in /dev/shm, which is RAM, until the machine reboots.
_SHM_BUFFER = "deepspeed_allreduce_buffer_{uid}_{addr}_{port}_{rank}"


def remove_cpu_allreduce_buffer(rank: int, shm_dir: Path = Path("/dev/shm")) -> bool:
    """Unlink this rank's DeepSpeed CPU allreduce buffer, if there is one; True when one was removed.

    Every rank has opened every other rank's buffer during initialisation, so removing the names at the
    end cannot break a rank that is still running (its mappings stay valid)."""
    addr, port = os.environ.get("MASTER_ADDR"), os.environ.get("MASTER_PORT")
    if not addr or not port or not hasattr(os, "getuid"):
        return False
    path = shm_dir / _SHM_BUFFER.format(uid=os.getuid(), addr=addr, port=port, rank=rank)
    try:
        path.unlink()
    except FileNotFoundError:
        return False
    return True


def launch_command(
    nproc: int,
    config: str | Path | None,
    overrides: list[str],
    data: str | Path,
    out: str | Path,
    resume: str = "auto",
    master_port: int | None = None,
) -> list[str]:
    """The local `deepspeed` launcher command that runs `python -m videopoet.llm.train` on `nproc` ranks."""
    import shutil
    import sys

    if nproc < 1:
        raise LaunchError(f"--nproc must be at least 1, got {nproc}")
    launcher = shutil.which("deepspeed") or str(Path(sys.executable).with_name("deepspeed"))
    cmd = [launcher, "--num_gpus", str(nproc)]
    if master_port is not None:
        cmd += ["--master_port", str(master_port)]
    cmd += ["--module", "videopoet.llm.train", "--data", str(data), "--out", str(out), "--resume", resume]
    if config is not None:
        cmd += ["--config", str(config)]
    return cmd + list(overrides)


def free_port() -> int:
    """A TCP port the OS reports free on this machine, for a local launch's rendezvous."""
    import socket

    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def launch_local(nproc: int, config: str | Path | None, overrides: list[str], data: str | Path, out: str | Path,
                 resume: str = "auto") -> int:
    """Run training on this machine with the deepspeed launcher; returns its exit status. Without a GPU
    the ranks run on the CPU (DS_ACCELERATOR=cpu, gloo)."""
    import subprocess

    env = dict(os.environ)
    if not torch.cuda.is_available():
        env.setdefault("DS_ACCELERATOR", "cpu")
    port = free_port()  # a fixed or pid-derived port collides with a run that just ended (TIME_WAIT)
    return subprocess.call(launch_command(nproc, config, overrides, data, out, resume, master_port=port), env=env)
