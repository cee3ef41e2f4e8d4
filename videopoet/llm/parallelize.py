"""The LLM's distribution in one place: process group, the DeepSpeed config, and the engine around the model.

Model code never mentions ranks or ZeRO; the trainer asks this module for an engine. What is not DeepSpeed's
(free ports, threads per rank, barriers, the tokenizers' plain data parallelism) is in `videopoet.distributed`. The DeepSpeed JSON
(deploy/deepspeed/*.json) chooses the ZeRO stage, offload and precision; batch size, accumulation,
clipping and the optimizer come from our config, so there is one source of truth.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta
from pathlib import Path
from typing import Any

import torch

from videopoet.distributed import bind_rank, free_port, use_gpus
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


def init_distributed(timeout_s: float = 1800.0) -> tuple[int, int, int]:
    """Join the process group the launcher set up (or a group of one); returns (rank, world, local_rank).

    NCCL on GPUs, gloo on CPU (DS_ACCELERATOR=cpu). A collective that waits longer than `timeout_s` for
    another rank fails (on NCCL with TORCH_NCCL_ASYNC_ERROR_HANDLING=1, which the SLURM script sets)."""
    import deepspeed

    if timeout_s <= 0:
        raise LaunchError(f"llm_train.dist_timeout_s must be positive, got {timeout_s}")
    use_environment_extensions_dir()

    if "RANK" not in os.environ:  # run directly with python: a group of one
        os.environ.setdefault("RANK", "0")
        os.environ.setdefault("LOCAL_RANK", "0")
        os.environ.setdefault("WORLD_SIZE", "1")
        os.environ.setdefault("MASTER_ADDR", "127.0.0.1")
        os.environ.setdefault("MASTER_PORT", str(free_port()))
    backend = "nccl" if use_gpus() else "gloo"
    deepspeed.init_distributed(dist_backend=backend, timeout=timedelta(seconds=timeout_s))
    bind_rank(backend)
    return torch.distributed.get_rank(), torch.distributed.get_world_size(), int(os.environ.get("LOCAL_RANK", 0))


def device_for(local_rank: int) -> torch.device:
    if use_gpus():
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


# ---- a rank that dies -------------------------------------------------------------------------------
class PeerLostError(UserError):
    """Another rank stopped answering during a collective (it died or hangs); this rank stops too."""


FAULT_RANK_ENV, FAULT_STEP_ENV = "VIDEOPOET_FAULT_KILL_RANK", "VIDEOPOET_FAULT_AT_STEP"


def fault_point(rank: int, step: int) -> None:
    """Test hook (tests/llm/test_multinode.py): the rank named by VIDEOPOET_FAULT_KILL_RANK exits at once
    with status 1, without a word or any clean-up, as it begins step VIDEOPOET_FAULT_AT_STEP, the way a
    crashed or killed process disappears. Unset (always, outside tests), it does nothing."""
    kill_rank, at_step = os.environ.get(FAULT_RANK_ENV), os.environ.get(FAULT_STEP_ENV)
    if kill_rank is not None and at_step is not None and int(kill_rank) == rank and int(at_step) == step:
        os._exit(1)


def is_peer_failure(error: BaseException) -> bool:
    """A collective that failed because another rank went away: torch's distributed errors (NCCL, the
    store) or gloo's transport errors ("Connection closed by peer", a timed-out receive)."""
    if not torch.distributed.is_initialized() or torch.distributed.get_world_size() < 2:
        return False
    return isinstance(error, torch.distributed.DistError) or (isinstance(error, RuntimeError) and "gloo" in str(error))


def lost_ranks(wait_s: float = 5.0) -> list[int]:
    """The ranks that no longer answer: every rank that is still alive checks in through the rendezvous
    store (MASTER_ADDR:MASTER_PORT) and waits up to `wait_s` for the others. When the store itself is gone,
    so is rank 0: the store lives in its process (deepspeed launcher) or in node 0's agent (torchrun)."""
    rank, world = torch.distributed.get_rank(), torch.distributed.get_world_size()
    key = "videopoet/alive/{}".format
    try:
        store = torch.distributed.TCPStore(os.environ["MASTER_ADDR"], int(os.environ["MASTER_PORT"]), is_master=False,
                                           timeout=timedelta(seconds=wait_s), wait_for_workers=False)
        store.set(key(rank), "1")
        deadline = time.monotonic() + wait_s
        while True:
            missing = [r for r in range(world) if not store.check([key(r)])]
            if not missing or time.monotonic() > deadline:
                return missing
            time.sleep(0.2)
    except RuntimeError:  # the store does not answer (torch's DistError is a RuntimeError)
        return [0]


@contextmanager
def explain_lost_ranks(wait_s: float = 5.0) -> Iterator[None]:
    """Turn a collective that failed because another rank died or hangs into a PeerLostError naming that
    rank, so that every surviving rank stops with one clear line instead of a gloo/NCCL traceback."""
    try:
        yield
    except Exception as e:
        if not is_peer_failure(e):
            raise
        rank, world = torch.distributed.get_rank(), torch.distributed.get_world_size()
        lost = lost_ranks(wait_s)
        if not lost:  # every rank still answers: not a lost rank
            raise
        who = f"rank {lost[0]}" if len(lost) == 1 else f"ranks {', '.join(map(str, lost))}"
        raise PeerLostError(
            f"rank {rank} of {world}: lost {who} (it died or hangs: its own log says why); this rank stops too. "
            f"Resume with the same command: training continues from the run's last complete checkpoint "
            f"({type(e).__name__}: {' '.join(str(e).split())[:200]})"
        ) from e


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
