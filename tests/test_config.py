"""Config loading: YAML, dotted overrides, unknown keys with suggestions, type errors."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import pytest

from videopoet.config import (
    ConfigError,
    apply_overrides,
    from_dict,
    load_config,
    load_project_config,
    load_section,
    save_config,
    to_dict,
)


@dataclass
class Optim:
    lr: float = 1e-3
    betas: tuple[float, float] = (0.9, 0.95)
    schedule: Literal["cosine", "constant"] = "cosine"


@dataclass
class Model:
    channels: int = 64
    multipliers: list[int] = field(default_factory=lambda: [1, 2, 4])
    name: str | None = None
    causal: bool = True
    optim: Optim = field(default_factory=Optim)

    def __post_init__(self) -> None:
        if self.channels <= 0:
            raise ValueError(f"channels must be positive, got {self.channels}")


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "c.yaml"
    path.write_text(text)
    return path


def test_defaults_without_file() -> None:
    assert load_config(Model) == Model()


def test_yaml_and_nested_overrides(tmp_path: Path) -> None:
    path = write(tmp_path, "channels: 32\noptim:\n  lr: 2.0e-4\n")
    cfg = load_config(Model, path, ["optim.betas=[0.8, 0.99]", "name=big", "multipliers=[1,1]", "optim.lr=1e-4"])
    assert cfg.channels == 32
    assert cfg.optim.lr == pytest.approx(1e-4)  # `1e-4` is a string to PyYAML; float fields accept it
    assert cfg.optim.betas == (0.8, 0.99)
    assert cfg.name == "big" and cfg.multipliers == [1, 1]


def test_int_accepted_for_float_and_null_for_optional() -> None:
    cfg = from_dict(Model, {"optim": {"lr": 1}, "name": None})
    assert isinstance(cfg.optim.lr, float) and cfg.name is None


def test_unknown_key_names_key_and_closest(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"unknown config key 'optim.lrr'.*did you mean 'lr'"):
        load_config(Model, write(tmp_path, "optim:\n  lrr: 0.1\n"))
    with pytest.raises(ConfigError, match=r"unknown config key 'chanels'.*'channels'"):
        load_config(Model, None, ["chanels=3"])


@pytest.mark.parametrize(
    ("override", "pattern"),
    [
        ("channels=abc", r"'channels': expected int, got 'abc'"),
        ("channels=1.5", r"'channels': expected int"),
        ("causal=maybe", r"'causal': expected bool"),
        ("optim.schedule=linear", r"'optim.schedule': expected one of 'cosine', 'constant'"),
        ("optim.betas=[1, 2, 3]", r"'optim.betas': expected 2 items, got 3"),
        ("multipliers=[1, x]", r"'multipliers\[1\]': expected int"),
        ("optim=3", r"'optim': expected a mapping"),
        ("channels=0", r"channels must be positive"),
    ],
)
def test_wrong_values_say_key_and_expectation(override: str, pattern: str) -> None:
    with pytest.raises(ConfigError, match=pattern):
        load_config(Model, None, [override])


def test_bad_files(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="not found"):
        load_config(Model, tmp_path / "missing.yaml")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(Model, write(tmp_path, "a: [1, 2\n"))
    with pytest.raises(ConfigError, match="mapping at the top"):
        load_config(Model, write(tmp_path, "- 1\n- 2\n"))
    with pytest.raises(ConfigError, match="key=value"):
        load_config(Model, None, ["channels"])


def test_override_into_scalar_is_an_error() -> None:
    with pytest.raises(ConfigError, match="'channels' is not a section"):
        apply_overrides({"channels": 3}, ["channels.x=1"])


def test_save_round_trip(tmp_path: Path) -> None:
    cfg = load_config(Model, None, ["optim.betas=[0.5, 0.6]", "name=x"])
    save_config(cfg, tmp_path / "out.yaml")
    assert load_config(Model, tmp_path / "out.yaml") == cfg
    assert to_dict(cfg)["optim"]["betas"] == [0.5, 0.6]


def test_project_config_sections(tmp_path: Path) -> None:
    path = write(tmp_path, "text_tokenizer:\n  vocab_size: 500\n")
    assert load_section("text_tokenizer", path).vocab_size == 500
    assert load_section("text_tokenizer", path, ["text_tokenizer.vocab_size=600"]).vocab_size == 600
    assert load_section("text_tokenizer", path, ["vocab_size=700"]).vocab_size == 700
    sections = load_project_config(path)
    assert {"text_tokenizer", "shapes"} <= set(sections)
    with pytest.raises(ConfigError, match=r"config key 'text_tokenizer.vocab_sise'.*'vocab_size'"):
        load_section("text_tokenizer", path, ["vocab_sise=3"])
    with pytest.raises(ConfigError, match=r"unknown config section 'text_tokeniser'.*'text_tokenizer'"):
        load_project_config(write(tmp_path, "text_tokeniser: {}\n"))


def test_shipped_configs_are_valid() -> None:
    configs = sorted((Path(__file__).resolve().parents[1] / "configs").glob("*.yaml"))
    assert configs, "configs/ holds at least one project config"
    for path in configs:
        load_project_config(path)


def test_the_clip_section_sets_every_dependent_key(tmp_path) -> None:
    from videopoet.config import ConfigError, load_project_config, load_section
    from videopoet.geometry import CLIP_KEYS

    path = tmp_path / "c.yaml"
    path.write_text("clip: {frames: 9, fps: 4.0, height: 32, width: 48, sample_rate: 24000}\nshapes: {jitter: 0}\n")
    with pytest.raises(ConfigError, match="square"):
        load_project_config(path)  # the shapes are drawn square
    path.write_text("clip: {frames: 9, fps: 4.0, height: 32, width: 32, sample_rate: 24000}\n")
    sections = load_project_config(path)
    assert (sections["shapes"].size, sections["shapes"].frames, sections["shapes"].fps) == (32, 9, 4.0)
    assert (sections["ingest"].fps, sections["ingest"].frames, tuple(sections["ingest"].size)) == (4.0, 9, (32, 32))
    model = sections["video_tokenizer"].model
    assert (model.frames, model.height, model.width, sections["video_tokenizer"].fps) == (9, 32, 32, 4.0)
    assert sections["audio_tokenizer"].model.sample_rate == sections["shapes"].sample_rate == 24000
    assert load_section("ingest", path).frames == 9  # one section, from the same place
    assert sum(len(keys) for keys in CLIP_KEYS.values()) == 12
    with pytest.raises(ConfigError, match="ingest.fps = 8.0 disagrees with the clip section"):
        load_project_config(path, ["ingest.fps=8.0"])
    assert load_project_config(path, ["ingest.fps=4.0"])["ingest"].fps == 4.0  # the same value is fine


def test_a_preset_stands_for_its_values_and_keys_change_them(tmp_path) -> None:
    from videopoet.config import ConfigError, load_project_config
    from videopoet.llm.model import PRESETS

    path = tmp_path / "c.yaml"
    path.write_text("llm: {preset: 1b, max_position_embeddings: 2048}\n")
    llm = load_project_config(path)["llm"]
    assert llm.hidden_size == PRESETS["1b"].hidden_size and llm.num_layers == PRESETS["1b"].num_layers
    assert llm.max_position_embeddings == 2048
    assert load_project_config(path, ["llm.num_layers=2"])["llm"].num_layers == 2
    with pytest.raises(ConfigError, match="presets are: tiny, 300m, 1b, 8b"):
        load_project_config(path, ["llm.preset=2b"])
    with pytest.raises(ConfigError, match="has no presets"):
        load_project_config(path, ["tasks.preset=x"])


def test_a_resolved_config_reloads_with_or_without_a_clip_section(tmp_path) -> None:
    """Runs save every section as resolved (`save_config`) and export reads them back."""
    import yaml

    from videopoet.config import load_project_config, to_dict

    for text in ("shapes: {size: 64}\n", "clip: {height: 32, width: 32}\n"):
        path = tmp_path / "c.yaml"
        path.write_text(text)
        sections = load_project_config(path)
        assert ("clip" in sections) == text.startswith("clip")
        (tmp_path / "saved.yaml").write_text(yaml.safe_dump({k: to_dict(v) for k, v in sections.items()}))
        assert {k: to_dict(v) for k, v in load_project_config(tmp_path / "saved.yaml").items()} == {k: to_dict(v) for k, v in sections.items()}
