"""Media folders as training data: the train / val split of `splits.json`, spans and skipped files."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from videopoet.data.corpus import MODALITY_EXTENSIONS, file_spans, split_files
from videopoet.data.sources import audio_source
from videopoet.errors import UserError
from videopoet.media import write_audio


def _tone(path: Path, seconds: float = 1.0, sr: int = 8000) -> None:
    t = np.arange(int(seconds * sr)) / sr
    write_audio(path, (0.3 * np.sin(2 * np.pi * 440 * t)).astype(np.float32), sr)


def test_without_splits_every_file_serves_both(tmp_path: Path) -> None:
    for name in ("b.wav", "a.flac", "notes.txt"):
        (_tone(tmp_path / name) if name != "notes.txt" else (tmp_path / name).write_text("x"))
    train, val = split_files(tmp_path, MODALITY_EXTENSIONS["audio"])
    assert [p.name for p in train] == ["a.flac", "b.wav"] and train == val


def test_splits_json_splits_and_filters_by_extension(tmp_path: Path) -> None:
    (tmp_path / "audio").mkdir()
    for name in ("a", "b", "c"):
        _tone(tmp_path / "audio" / f"{name}.wav")
    (tmp_path / "img.jpg").write_bytes(b"")
    (tmp_path / "splits.json").write_text(json.dumps({"train": ["audio/a.wav", "audio/b.wav", "img.jpg"], "val": ["audio/c.wav"]}))
    train, val = split_files(tmp_path, MODALITY_EXTENSIONS["audio"])
    assert [p.name for p in train] == ["a.wav", "b.wav"] and [p.name for p in val] == ["c.wav"]
    source = audio_source(tmp_path, 8000, 2000, 4000)
    assert [Path(s.path).name for s in source.train] == ["a.wav", "b.wav"]
    assert [Path(s.path).name for s in source.val] == ["c.wav"]


def test_bad_splits_file_is_one_clear_error(tmp_path: Path) -> None:
    (tmp_path / "splits.json").write_text(json.dumps({"train": ["missing.wav"], "val": []}))
    with pytest.raises(UserError, match="lists files that are not there: missing.wav"):
        split_files(tmp_path, MODALITY_EXTENSIONS["audio"])
    (tmp_path / "splits.json").write_text("[1, 2]")
    with pytest.raises(UserError, match="splits.json is not a"):
        split_files(tmp_path, MODALITY_EXTENSIONS["audio"])


def test_unreadable_files_are_skipped_with_a_reason(tmp_path: Path) -> None:
    _tone(tmp_path / "ok.wav")
    (tmp_path / "broken.wav").write_bytes(b"RIFF not really")
    spans, skipped = file_spans(sorted(tmp_path.iterdir()), "audio", 0.5)
    assert [Path(s.path).name for s in spans] == ["ok.wav"]
    assert len(skipped) == 1 and skipped[0].startswith("broken.wav: ")
