"""Tokenizer folders and training checkpoints on disk: atomic saves, `latest`, keep-last, and errors that
say what does not fit."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torch import nn

from videopoet.errors import UserError
from videopoet.tokenizers import checkpoint as ck


def test_weights_round_trip_and_say_what_does_not_fit(tmp_path: Path) -> None:
    a = nn.Linear(3, 2)
    ck.save_weights(a, tmp_path / "w.safetensors")
    b = nn.Linear(3, 2)
    ck.load_weights(b, tmp_path / "w.safetensors")
    assert torch.equal(a.weight, b.weight) and not list(tmp_path.glob("*.tmp"))
    with pytest.raises(ck.CheckpointError, match="shape mismatches"):
        ck.load_weights(nn.Linear(4, 2), tmp_path / "w.safetensors")
    with pytest.raises(ck.CheckpointError, match="missing 2 tensors .e.g. 0.bias.; 2 unexpected tensors"):
        ck.load_weights(nn.Sequential(nn.Linear(3, 2)), tmp_path / "w.safetensors")
    (tmp_path / "bad.safetensors").write_bytes(b"not safetensors")
    with pytest.raises(ck.CheckpointError, match="corrupt"):
        ck.load_weights(a, tmp_path / "bad.safetensors")


def test_checkpoints_move_latest_and_keep_the_last(tmp_path: Path) -> None:
    model = nn.Linear(2, 2)
    for step in (10, 20, 30):
        ck.save_checkpoint(tmp_path, step, {"model": model}, {"step": step}, keep_last=2)
    assert ck.latest_checkpoint(tmp_path).name == "step_0000030"
    assert sorted(p.name for p in (tmp_path / "checkpoints").glob("step_*")) == ["step_0000020", "step_0000030"]
    assert ck.load_checkpoint(ck.latest_checkpoint(tmp_path), {"model": nn.Linear(2, 2)})["step"] == 30
    (ck.latest_checkpoint(tmp_path) / "training_state.pt").write_bytes(b"truncated")
    with pytest.raises(ck.CheckpointError, match="corrupt training_state.pt"):
        ck.load_checkpoint(ck.latest_checkpoint(tmp_path), {"model": nn.Linear(2, 2)})
    (tmp_path / "checkpoints" / "latest").write_text("step_0000099\n")
    with pytest.raises(UserError, match="does not exist"):
        ck.latest_checkpoint(tmp_path)
    assert ck.latest_checkpoint(tmp_path / "empty") is None


def test_tokenizer_folders_are_checked_for_kind_and_family(tmp_path: Path) -> None:
    from videopoet.tokenizers.registry import get_family

    model = get_family("audio").build_model("tiny")
    ck.save_tokenizer(tmp_path / "tok", model, "audio")
    assert ck.load_tokenizer_config(tmp_path / "tok", "audio")["kind"] == "audio"
    loaded = ck.load_tokenizer(tmp_path / "tok", "audio")
    assert all(torch.equal(x, y) for x, y in zip(loaded.state_dict().values(), model.state_dict().values()))
    with pytest.raises(ck.CheckpointError, match="holds a 'audio' tokenizer, not a 'video' one"):
        ck.load_tokenizer(tmp_path / "tok", "video")
    with pytest.raises(UserError, match="unknown tokenizer family 'sr'; known: video, audio"):
        ck.load_tokenizer(tmp_path / "tok", "sr")
    with pytest.raises(ck.CheckpointError, match="not found"):
        ck.load_tokenizer(tmp_path / "nothing", "audio")
