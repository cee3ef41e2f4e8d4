"""The tiny model folder loads as an exported model and is reused when it exists."""

from __future__ import annotations

import json
from pathlib import Path


def test_tiny_model_folder(tiny_model: Path) -> None:
    from videopoet.serve.tiny import make_tiny_model

    meta = json.loads((tiny_model / "videopoet.json").read_text())
    assert meta["format"] == "videopoet-llm" and meta["clip"]["fps"] == 8.0 and meta["sampling"]["maskgit"]["steps"] == 3
    assert (tiny_model / "vocab.json").is_file() and (tiny_model / "model.safetensors").is_file()
    assert make_tiny_model(tiny_model.parent) == tiny_model  # reused, not rebuilt
