"""Fixtures of the LLM tests: an in-process group of one for trainers, and a counter of host syncs."""

from __future__ import annotations

import os
import traceback
import weakref
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import torch
from torch.overrides import TorchFunctionMode
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_flatten

_ENV = ("RANK", "LOCAL_RANK", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT")


@pytest.fixture(scope="module")
def in_process():
    """Runs trainers inside the test process as one group of one (DeepSpeed keeps its process group for
    the life of a process, so the module shares it and leaves it at the end)."""
    from videopoet.llm import parallelize

    saved = {k: os.environ.pop(k) for k in _ENV if k in os.environ}
    os.environ["DS_ACCELERATOR"] = "cpu"
    yield
    parallelize.shutdown()
    for k in _ENV:
        os.environ.pop(k, None)
    os.environ.update(saved)


# aten ops that make the host wait for a CUDA device: a value read back (`item`, `bool`, `float`, `int`
# all end in _local_scalar_dense) or an output whose size depends on the data (boolean indexing, nonzero)
_SYNC_OPS = {"_local_scalar_dense", "nonzero", "masked_select", "_unique", "_unique2", "unique_dim",
             "unique_consecutive", "bincount", "equal", "repeat_interleave"}
_MASK_INDEX_OPS = {"index", "index_put", "index_put_", "_index_put_impl_"}
# Tensor methods that read device data on the host without an aten op on the CPU (where they return self)
_SYNC_METHODS = {"tolist", "cpu", "numpy"}
_HERE = Path(__file__).resolve()
_TORCH = Path(torch.__file__).resolve().parent
_ROOT = _HERE.parents[2]


@dataclass(frozen=True)
class SyncEvent:
    op: str
    where: str  # file:line (function) of the first frame outside torch and this counter


class HostSyncCounter:
    """Counts, on any device, the operations that would make the host wait for a GPU.

    Host tensors (batches the test marks with `mark_host`, and whatever is computed from them and from
    tensors made without inputs, e.g. `arange`) are exempt: reading them costs no sync. Their moves with
    `.to(device)` become device tensors (on the CPU the move returns the same tensor, so it is cloned).
    Not seen: a device tensor's `.to("cpu")` (on the CPU it looks like a move to the training device).
    `window()` starts a new window of events (e.g. one per training step)."""

    def __init__(self) -> None:
        self.windows: list[list[SyncEvent]] = [[]]
        self._host: dict[int, weakref.ref] = {}
        self._neutral: dict[int, weakref.ref] = {}
        self._paused = 0
        counter = self

        class _Functions(TorchFunctionMode):
            def __torch_function__(self, func, types, args=(), kwargs=None):
                return counter._function(func, args, kwargs or {})

        class _Dispatch(TorchDispatchMode):
            def __torch_dispatch__(self, func, types, args=(), kwargs=None):
                return counter._dispatch(func, args, kwargs or {})

        self._modes = (_Functions(), _Dispatch())

    # ---- use --------------------------------------------------------------------------------------
    @contextmanager
    def counting(self) -> Iterator[HostSyncCounter]:
        with self._modes[0], self._modes[1]:
            yield self

    @contextmanager
    def paused(self) -> Iterator[None]:
        """Code run here is neither counted nor tracked (e.g. the data loader making a batch)."""
        self._paused += 1
        try:
            yield
        finally:
            self._paused -= 1

    def mark_host(self, tree: Any) -> None:
        for t in tree_flatten(tree)[0]:
            if isinstance(t, torch.Tensor):
                self._host[id(t)] = weakref.ref(t)

    def window(self) -> None:
        self.windows.append([])

    @property
    def events(self) -> list[SyncEvent]:
        return [e for w in self.windows for e in w]

    # ---- tracking ---------------------------------------------------------------------------------
    def _is(self, table: dict[int, weakref.ref], t: torch.Tensor) -> bool:
        ref = table.get(id(t))
        return ref is not None and ref() is t

    def _kind(self, tensors: list[torch.Tensor]) -> str:
        """host: computed from host tensors (and neutral ones); neutral: made from no tensor; else device."""
        if not tensors or all(self._is(self._neutral, t) for t in tensors):
            return "neutral"
        if all(self._is(self._host, t) or self._is(self._neutral, t) for t in tensors):
            return "host"
        return "device"

    def _record(self, op: str) -> None:
        where = "?"
        for frame in reversed(traceback.extract_stack()[:-2]):
            path = Path(frame.filename).resolve()
            if path != _HERE and _TORCH not in path.parents:
                parts = path.parts
                short = (Path(*parts[parts.index("site-packages") + 1 :]) if "site-packages" in parts
                         else path.relative_to(_ROOT) if _ROOT in path.parents else path)
                where = f"{short}:{frame.lineno} ({frame.name})"
                break
        self.windows[-1].append(SyncEvent(op, where))

    def _function(self, func, args, kwargs):
        name = getattr(func, "__name__", "")
        if self._paused:
            return func(*args, **kwargs)
        source = args[0] if args and isinstance(args[0], torch.Tensor) else None
        if source is not None and name in _SYNC_METHODS and not self._is(self._host, source):
            self._record(name)
        out = func(*args, **kwargs)
        moves = name in ("to", "cuda") and (name == "cuda" or "device" in kwargs or any(
            isinstance(a, (str, torch.device)) for a in args[1:]))
        if moves and source is not None and out is source and self._is(self._host, source):
            out = source.clone()  # a move to the training device makes a device tensor, even on the CPU
            self._host.pop(id(out), None)
        return out

    def _dispatch(self, func, args, kwargs):
        out = func(*args, **kwargs)
        if self._paused:
            return out
        inputs = [t for t in tree_flatten((args, kwargs))[0] if isinstance(t, torch.Tensor)]
        kind = self._kind(inputs)
        name = func._schema.name.split("::")[-1]
        if kind != "host":
            mask_index = name in _MASK_INDEX_OPS and any(t.dtype in (torch.bool, torch.uint8) for t in inputs[1:])
            repeat_sized = name == "repeat_interleave" and kwargs.get("output_size") is not None
            if (name in _SYNC_OPS and not repeat_sized) or mask_index:
                self._record(name)
        for t in tree_flatten(out)[0]:
            if isinstance(t, torch.Tensor):  # in-place ops return their input: its kind changes with the op's
                self._host.pop(id(t), None)
                self._neutral.pop(id(t), None)
                if kind != "device":
                    (self._host if kind == "host" else self._neutral)[id(t)] = weakref.ref(t)
        return out


@pytest.fixture
def host_syncs() -> HostSyncCounter:
    """A fresh `HostSyncCounter`: `with host_syncs.counting(): ...`, then `host_syncs.events`."""
    return HostSyncCounter()


@pytest.fixture
def compile_backend() -> str:
    """The torch.compile backend of the compile tests: aot_eager by default (dynamo's capture and AOT
    autograd, no code generation: seconds), inductor with VIDEOPOET_TEST_COMPILE_BACKEND=inductor (what
    users get; minutes on a cold cache, too slow for `make test` on a fresh machine)."""
    return os.environ.get("VIDEOPOET_TEST_COMPILE_BACKEND", "aot_eager")
