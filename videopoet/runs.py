"""Run folders: what every long job that writes a folder shares (docs/design.md, "Run folders").

- Atomic writes: a file or folder is written under a temporary name and renamed into place, so a crash
  never leaves a half-written file where a reader expects a whole one.
- Checkpoints: `ROOT/checkpoints/step_NNNNNNN/` and the pointer `ROOT/checkpoints/latest`, moved only
  after a checkpoint is complete; `prune` keeps the newest few.
- RNG capture: torch (CPU and every CUDA device), numpy and Python's `random`, so a resumed run draws
  what an uninterrupted one would.
- The settings guard: a folder remembers the settings that shape its contents and refuses to be
  continued with others (the old and the new contents would not fit together).

Used by both trainers (tokenizers and LLM), ingest, pretokenize and the demo.
"""

from __future__ import annotations

import json
import os
import random
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

from videopoet.errors import UserError

CHECKPOINTS = "checkpoints"
LATEST = "latest"


class RunFolderError(UserError):
    """A run folder that does not fit the request: other settings, or a broken `latest` pointer."""


# ---- atomic writes ----------------------------------------------------------------------------------------


def atomic_write_text(path: str | Path, text: str) -> None:
    """`atomic_write_bytes` of UTF-8 text."""
    atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_bytes(path: str | Path, data: bytes) -> None:
    """Write `data` to `path` through a temporary file in the same folder (made if missing)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)


def atomic_write_json(path: str | Path, data: Any) -> None:
    atomic_write_text(path, json.dumps(data, indent=2) + "\n")


def replace_dir(tmp: str | Path, final: str | Path) -> None:
    """Move a fully written folder `tmp` to `final`, replacing what was there."""
    tmp, final = Path(tmp), Path(final)
    shutil.rmtree(final, ignore_errors=True)
    os.replace(tmp, final)


def fresh_tmp_dir(final: str | Path) -> Path:
    """An empty temporary folder beside `final` (`NAME.tmp`, whatever an earlier crash left removed)."""
    tmp = Path(final).with_name(Path(final).name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    return tmp


# ---- random number generators -------------------------------------------------------------------------------


def capture_rng() -> dict[str, Any]:
    """The state of every generator a training step draws from (CUDA too, where there is one)."""
    state: dict[str, Any] = {"torch": torch.get_rng_state(), "numpy": np.random.get_state(), "python": random.getstate()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_rng(state: dict[str, Any]) -> None:
    """Undo `capture_rng`; a CUDA state is restored where CUDA is present (a CPU resume of a GPU run skips it)."""
    torch.set_rng_state(state["torch"])
    np.random.set_state(state["numpy"])
    random.setstate(state["python"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


# ---- checkpoints ---------------------------------------------------------------------------------------------


def step_name(step: int) -> str:
    return f"step_{step:07d}"


def step_of(checkpoint: str | Path) -> int:
    """The step of a checkpoint folder named by `step_name`."""
    return int(Path(checkpoint).name.removeprefix("step_"))


class RunFolder:
    """A run's folder: its checkpoints, the `latest` pointer, and the settings it was made with."""

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)

    @property
    def checkpoints(self) -> Path:
        return self.root / CHECKPOINTS

    def checkpoint(self, step: int) -> Path:
        return self.checkpoints / step_name(step)

    def latest(self) -> Path | None:
        """The checkpoint `latest` names, or None when the run has none yet."""
        pointer = self.checkpoints / LATEST
        if not pointer.is_file():
            return None
        path = self.checkpoints / pointer.read_text(encoding="utf-8").strip()
        if not path.is_dir():
            raise RunFolderError(f"{pointer} names {path.name}, which does not exist")
        return path

    def mark_latest(self, checkpoint: Path) -> None:
        """Point `latest` at a complete checkpoint."""
        atomic_write_text(self.checkpoints / LATEST, Path(checkpoint).name + "\n")

    def prune(self, keep_last: int, complete: Callable[[Path], bool] = lambda p: True, companions: tuple[str, ...] = ()) -> None:
        """Delete all but the newest `keep_last` (at least 1) complete checkpoints, with their companion
        folders (`NAME + suffix`, e.g. DeepSpeed's `_universal` conversions)."""
        steps = sorted(p for p in self.checkpoints.glob("step_*") if p.is_dir() and p.name[5:].isdigit() and complete(p))
        for old in steps[: max(0, len(steps) - max(1, keep_last))]:
            for path in (old, *(old.with_name(old.name + s) for s in companions)):
                shutil.rmtree(path, ignore_errors=True)


def check_settings(path: str | Path, settings: dict[str, Any], what: str, fix: str, write: bool = True) -> None:
    """Refuse a folder made with other settings: `path` (a JSON file) holds the settings the folder was
    made with; when it differs from `settings`, raise naming the first key that differs; when absent, write
    it (with `write`: of several processes sharing the folder, one writes)."""
    path = Path(path)
    if path.is_file():
        before = json.loads(path.read_text(encoding="utf-8"))
        if before != settings:
            keys = sorted(set(before) | set(settings), key=str)
            key = next(k for k in keys if before.get(k) != settings.get(k))
            raise RunFolderError(f"{path.parent} holds {what} made with {key} = {before.get(key)!r}, not {settings.get(key)!r}; {fix}")
    elif write:
        atomic_write_json(path, settings)
