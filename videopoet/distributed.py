"""The process group below the LLM: what plain data-parallel training (the tokenizers') needs from it.

A launcher (`torchrun`, `deepspeed`, `srun` through deploy/slurm_train.sbatch) starts one process per
GPU, or per CPU core group, and sets RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR and MASTER_PORT;
`join_from_environment` joins that group (NCCL on GPUs, gloo on the CPU) or, run without a launcher,
stays a group of one. Gradients are averaged in one flat all-reduce per step (`average_gradients`), so a
model needs no wrapper and its solver keeps calling it directly. The LLM's DeepSpeed engine, ZeRO and
launcher commands are in `videopoet.llm.parallelize`, which builds on this module.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterable, Sequence
from datetime import timedelta
from typing import Any

import torch
import torch.distributed as dist
from torch import nn

from videopoet.errors import UserError


def free_port() -> int:
    """A TCP port the OS reports free on this machine, for a local launch's rendezvous."""
    import socket

    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def cpu_threads_per_rank() -> int:
    """This machine's cores shared among the ranks on it: torch's default of one thread per core in every
    rank oversubscribes the CPU (2 ranks on 2 cores: ~5% fewer tokens/s). OMP_NUM_THREADS overrides it."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    local = int(os.environ.get("LOCAL_SIZE") or os.environ.get("LOCAL_WORLD_SIZE") or 1)
    return max(1, cores // max(1, local))


def use_gpus() -> bool:
    """Whether ranks run on GPUs: CUDA is there and DS_ACCELERATOR does not say cpu."""
    return torch.cuda.is_available() and os.environ.get("DS_ACCELERATOR", "cuda") != "cpu"


def bind_rank(backend: str) -> None:
    """Give this rank its share of the machine: under NCCL the GPU of its LOCAL_RANK, under gloo its share
    of the cores (`cpu_threads_per_rank`) unless OMP_NUM_THREADS says otherwise."""
    if backend == "nccl":
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", 0)))
    elif "OMP_NUM_THREADS" not in os.environ:
        torch.set_num_threads(cpu_threads_per_rank())


def launched() -> bool:
    """Whether a launcher started this process as one of several ranks."""
    return int(os.environ.get("WORLD_SIZE", "1")) > 1


def join_from_environment(device: torch.device | None = None, timeout_s: float = 1800.0) -> tuple[int, int]:
    """Join the group a launcher set up, once; returns (rank, world). Without a launcher: (0, 1), no group.

    NCCL when the ranks work on GPUs (`device`, default `local_device()`), else gloo; `bind_rank` gives
    the rank its GPU or its share of the cores."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    if not launched():
        return 0, 1
    backend = "nccl" if (device or local_device()).type == "cuda" else "gloo"
    bind_rank(backend)
    dist.init_process_group(backend, timeout=timedelta(seconds=timeout_s))
    return dist.get_rank(), dist.get_world_size()


def rank_and_world() -> tuple[int, int]:
    """(rank, world) of the joined group, (0, 1) outside one."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def local_device(name: str = "auto") -> torch.device:
    """The device `name` names; `auto`: this rank's GPU (LOCAL_RANK) when ranks run on GPUs, else the CPU."""
    if name == "auto":
        return torch.device("cuda", int(os.environ.get("LOCAL_RANK", 0))) if use_gpus() else torch.device("cpu")
    return torch.device(name)


def barrier() -> None:
    if dist.is_available() and dist.is_initialized():
        dist.barrier()


def broadcast_module(module: nn.Module, src: int = 0) -> None:
    """Give every rank `src`'s parameters and buffers (the same start, whatever each rank's seed did)."""
    if rank_and_world()[1] > 1:
        with torch.no_grad():
            for t in [*module.parameters(), *module.buffers()]:
                dist.broadcast(t.data, src)


def broadcast_object(obj: Any, src: int = 0) -> Any:
    """`src`'s `obj` on every rank (e.g. a plan one rank computed from its own timings)."""
    if rank_and_world()[1] == 1:
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src)
    return box[0]


def average_gradients(params: Sequence[nn.Parameter], flag: float = 0.0) -> float:
    """Average the gradients of `params` over the ranks in one flat all-reduce and return the sum over
    ranks of `flag`, which rides along: a rank whose loss went bad says so and every rank stops together
    instead of waiting on it. A rank without a gradient for a parameter adds zero; a parameter no rank
    has a gradient for keeps none (the optimizer skips it, as on one process). One rank: no-op."""
    if rank_and_world()[1] == 1:
        return flag
    world = dist.get_world_size()
    device = params[0].device
    has = torch.tensor([p.grad is not None for p in params], dtype=torch.float32, device=device)
    grads = [p.grad if p.grad is not None else torch.zeros_like(p) for p in params]
    flat = torch.cat([g.reshape(-1).float() for g in grads] + [has, torch.tensor([flag], device=device)])
    dist.all_reduce(flat)
    offset = 0
    for i, (p, g) in enumerate(zip(params, grads)):
        n = g.numel()
        used = bool(flat[-1 - len(params) + i] > 0)
        p.grad = (flat[offset : offset + n] / world).view_as(p).to(p.dtype) if used else None
        offset += n
    return float(flat[-1])


def mean_over_ranks(value: torch.Tensor) -> torch.Tensor:
    """The mean of the detached tensor `value` over the ranks (one small all-reduce; on one process,
    `value` itself): a batch statistic that must be the global batch's, whatever the rank count."""
    value = value.detach()
    if rank_and_world()[1] == 1:
        return value
    total = value.clone()
    dist.all_reduce(total)
    return total / dist.get_world_size()


def count_ranks(flag: bool, device: torch.device) -> int:
    """How many ranks pass `flag` (one small all-reduce; on one process, `flag` itself)."""
    if rank_and_world()[1] == 1:
        return int(flag)
    t = torch.tensor([float(flag)], device=device)
    dist.all_reduce(t)
    return int(t.item())


def leave() -> None:
    """Leave the process group (without it the processes may abort at exit)."""
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def torchrun_command(nproc: int, target: Sequence[str]) -> list[str]:
    """The command that runs `target` (`-m module args...` or `script args...`) on `nproc` local ranks."""
    if nproc < 1:
        raise UserError(f"--nproc must be at least 1, got {nproc}")
    return [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", str(nproc), *target]


def without_nproc(argv: Sequence[str]) -> list[str]:
    """`argv` less its `--nproc N` (the ranks need not see it, and torchrun would take it for its own)."""
    out, skip = [], False
    for arg in argv:
        if skip:
            skip = False
        elif arg == "--nproc":
            skip = True
        elif not arg.startswith("--nproc="):
            out.append(arg)
    return out


def relaunch(nproc: int, target: Iterable[str]) -> int:
    """Run `target` on `nproc` local ranks with torchrun and return its exit status (one rank per GPU, or
    CPU processes sharing the cores without one)."""
    return subprocess.call(torchrun_command(nproc, list(target)))
