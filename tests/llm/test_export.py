"""`videopoet export` refuses what it cannot export, with one clear error (the round trip of real runs
under ZeRO 0, 2 and 3 is in tests/llm/test_train.py)."""

from __future__ import annotations

from pathlib import Path

import pytest

from videopoet.llm.export import ExportError, export_run


def test_export_refuses_a_folder_that_is_not_a_run(tmp_path: Path) -> None:
    with pytest.raises(ExportError, match="not a videopoet LLM run folder"):
        export_run(tmp_path, tmp_path / "out")
    (tmp_path / "config.yaml").write_text("llm: {preset: tiny}\n")
    (tmp_path / "vocab.json").write_text("{}")
    with pytest.raises(ExportError, match="holds no checkpoint"):
        export_run(tmp_path, tmp_path / "out")
    assert not (tmp_path / "out").exists()
