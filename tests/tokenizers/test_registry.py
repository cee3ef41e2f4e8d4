"""The tokenizer family registry: every entry's parts resolve, the config sections come from it, and an
unknown family is one clear error."""

from __future__ import annotations

import sys

import pytest

from videopoet.config import sections
from videopoet.errors import UserError
from videopoet.tokenizers.registry import FAMILIES, config_sections, get_family


@pytest.mark.parametrize("name", list(FAMILIES))
def test_every_part_of_every_family_resolves(name: str) -> None:
    family = get_family(name)
    assert family.name == name and family.modality in ("video", "audio") and family.section == f"{name}_tokenizer"
    for part in ("model", "model_config", "preset", "training_config", "solver", "source_spec", "tools"):
        assert family.load(part) is not None, part
    tools = family.load("tools")
    assert all(callable(getattr(tools, f)) for f in ("encode_file", "decode_file", "evaluate_files"))
    config = family.load("training_config")()
    assert set(family.source_kwargs(config)) and hasattr(config, "train")


def test_config_sections_and_unknown_families() -> None:
    assert config_sections() == {f.section: f.training_config for f in FAMILIES.values()}
    assert set(config_sections()) <= set(sections())
    with pytest.raises(UserError, match="unknown tokenizer family 'sr'; known: video, audio"):
        get_family("sr")


def test_reading_the_table_imports_no_model() -> None:
    """The CLI builds its parser from the registry, so `videopoet --help` must not import torch."""
    import subprocess

    code = "import sys, videopoet.tokenizers.registry, videopoet.cli.parser as p; p.build_parser(); print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.stdout.strip() == "False", out.stderr
