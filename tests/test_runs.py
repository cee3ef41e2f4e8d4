"""Run folders: atomic writes, the checkpoint pointer and keep-last, RNG capture, the settings guard."""

from __future__ import annotations

import json
import random
from pathlib import Path

import numpy as np
import pytest
import torch

from videopoet import runs


def test_atomic_writes_leave_no_temporary_files(tmp_path: Path) -> None:
    runs.atomic_write_json(tmp_path / "deep" / "a.json", {"x": 1})
    runs.atomic_write_text(tmp_path / "deep" / "a.json", '{"x": 2}\n')  # replaces
    assert json.loads((tmp_path / "deep" / "a.json").read_text()) == {"x": 2}
    final = tmp_path / "folder"
    (final).mkdir()
    (final / "old.txt").write_text("old")
    tmp = runs.fresh_tmp_dir(final)
    (tmp / "new.txt").write_text("new")
    runs.replace_dir(tmp, final)
    assert [p.name for p in final.iterdir()] == ["new.txt"]
    assert sorted(p.name for p in tmp_path.rglob("*.tmp")) == []


def test_latest_moves_only_to_complete_checkpoints_and_prune_keeps_the_newest(tmp_path: Path) -> None:
    run = runs.RunFolder(tmp_path)
    assert run.latest() is None
    for step in (5, 10, 15, 20):
        path = run.checkpoint(step)
        path.mkdir(parents=True)
        (path.with_name(path.name + "_universal")).mkdir()
        if step != 20:  # the last one is incomplete: no marker file
            (path / "done").write_text("")
            run.mark_latest(path)
    assert run.latest().name == "step_0000015"
    run.prune(2, complete=lambda p: (p / "done").is_file(), companions=("_universal",))
    left = sorted(p.name for p in run.checkpoints.iterdir())
    assert left == ["latest", "step_0000010", "step_0000010_universal", "step_0000015", "step_0000015_universal",
                    "step_0000020", "step_0000020_universal"]  # fmt: skip
    (run.checkpoints / "latest").write_text("step_0000099\n")
    with pytest.raises(runs.RunFolderError, match="does not exist"):
        run.latest()


def test_rng_capture_restores_every_generator() -> None:
    state = runs.capture_rng()
    first = (torch.rand(3), np.random.rand(3), random.random())
    runs.restore_rng(state)
    again = (torch.rand(3), np.random.rand(3), random.random())
    assert torch.equal(first[0], again[0]) and np.array_equal(first[1], again[1]) and first[2] == again[2]
    assert ("cuda" in state) == torch.cuda.is_available()


def test_settings_guard_refuses_other_settings_and_names_the_key(tmp_path: Path) -> None:
    path = tmp_path / "run" / "settings.json"
    runs.check_settings(path, {"fps": 8, "frames": 17}, "clips", "choose another folder")
    runs.check_settings(path, {"fps": 8, "frames": 17}, "clips", "choose another folder")  # the same: fine
    with pytest.raises(runs.RunFolderError, match=r"holds clips made with frames = 17, not 9; choose another folder"):
        runs.check_settings(path, {"fps": 8, "frames": 9}, "clips", "choose another folder")
    runs.check_settings(tmp_path / "other.json", {"a": 1}, "x", "y", write=False)
    assert not (tmp_path / "other.json").exists()


def test_step_of_reads_the_step_a_checkpoint_folder_is_named_for(tmp_path: Path) -> None:
    folder = runs.RunFolder(tmp_path).checkpoint(1234)
    assert folder.name == "step_0001234" and runs.step_of(folder) == 1234
