"""One entry per media tokenizer family: everything the CLI, the demo, the checkpoint loader, the config
loader and the pretokenizer need to find, in the manner of torchtitan's `TrainSpec` and transformers'
Auto classes.

An entry names its parts as `module:attribute` strings, resolved on first use, so reading the table costs
nothing (the CLI builds its parser from it without importing torch). Adding a family (a super-resolution
tokenizer, a pretrained codec behind the same interface) is one entry here and its own package; nothing
else branches on the family's name (docs/design.md, "Adding a tokenizer family").
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from videopoet.errors import UserError


@dataclass(frozen=True)
class TokenizerFamily:
    """A media tokenizer family and where its parts live.

    - `modality`: the media it tokenizes, `video` (clips, stills) or `audio` (waveforms); it picks the
      data source (`videopoet.data.sources`) and the vocabulary block the tokens go to.
    - `section`: its project config section (read into `training_config`).
    - `model`, `model_config`, `preset`: the `nn.Module` (a `MediaTokenizer`), the dataclass beside it,
      and `preset(name, **overrides)` giving named model configs (every family has a `tiny` one).
    - `training_config`, `solver`, `source_spec`: the config section's dataclass, the `TokenizerSolver`
      class the shared loop runs (`solver(config, source)`), and the geometry its data source must give
      (`source_spec(config) -> kwargs of the source`).
    - `tools`: module with `encode_file`, `decode_file` and `evaluate_files`; `encode_options` and
      `eval_options` are the keyword options (beyond input, output and `start`) those take, which the
      CLI offers for this family.
    """

    name: str
    modality: str
    section: str
    model: str
    model_config: str
    preset: str
    training_config: str
    solver: str
    source_spec: str
    tools: str
    encode_options: tuple[str, ...] = ()
    eval_options: tuple[str, ...] = ()

    def load(self, part: str) -> Any:
        """The object (or module) an entry's `part` names, imported on first use."""
        target = getattr(self, part)
        module_name, _, attr = target.partition(":")
        module = importlib.import_module(module_name)
        return getattr(module, attr) if attr else module

    def build_model(self, preset: str = "tiny", **overrides: Any) -> Any:
        """A new (untrained) model from a named preset of its config."""
        return self.load("model")(self.load("preset")(preset, **overrides))

    def source_kwargs(self, config: Any) -> dict[str, Any]:
        """The geometry (frame count, size, rate; or sample rate and lengths) its source must give `config`."""
        return self.load("source_spec")(config)

    def build_solver(self, config: Any, source: Any) -> Any:
        return self.load("solver")(config, source)

    def train(self, config: Any, source: Any, out: str | Path, resume: bool = False) -> dict[str, Any]:
        """Train this family's tokenizer on `source` into the tokenizer folder `out` (the shared loop)."""
        from videopoet.tokenizers.trainer import train_tokenizer

        return train_tokenizer(self.build_solver(config, source), config.train, out, resume=resume)


def _family(name: str, modality: str, model: str, solver: str, encode: tuple[str, ...], evaluate: tuple[str, ...]) -> TokenizerFamily:
    """An entry whose package `videopoet.tokenizers.NAME` follows the layout: `model.py` (the model and its
    `<Model>Config`), `train.py` (`<Model>TrainingConfig`, the solver, `source_spec`), `tools.py`; its
    config section is `NAME_tokenizer`."""
    pkg = f"videopoet.tokenizers.{name}"
    return TokenizerFamily(
        name=name, modality=modality, section=f"{name}_tokenizer",
        model=f"{pkg}.model:{model}", model_config=f"{pkg}.model:{model}Config", preset=f"{pkg}.model:preset",
        training_config=f"{pkg}.train:{model}TrainingConfig", solver=f"{pkg}.train:{solver}",
        source_spec=f"{pkg}.train:source_spec", tools=f"{pkg}.tools", encode_options=encode, eval_options=evaluate,
    )  # fmt: skip


FAMILIES: dict[str, TokenizerFamily] = {
    f.name: f
    for f in (
        _family("video", "video", "VideoTokenizer", "VideoSolver", encode=("frames", "size"), evaluate=("frames", "size", "x264_sweep")),
        _family("audio", "audio", "AudioTokenizer", "AudioSolver", encode=("seconds",), evaluate=("seconds",)),
    )
}


def get_family(name: str) -> TokenizerFamily:
    """The family called `name`; a UserError lists the known ones."""
    try:
        return FAMILIES[name]
    except KeyError:
        raise UserError(f"unknown tokenizer family {name!r}; known: {', '.join(FAMILIES)}") from None


def config_sections() -> dict[str, str]:
    """Project config sections of the families: section name -> `module:Class` of its dataclass."""
    return {f.section: f.training_config for f in FAMILIES.values()}
