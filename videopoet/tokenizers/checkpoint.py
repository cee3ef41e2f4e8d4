"""Tokenizer weights and training checkpoints on disk.

A tokenizer folder (what `--ckpt DIR` takes) holds `config.json` and `model.safetensors` (the EMA weights
of the latest save). Training checkpoints live under `DIR/checkpoints/step_NNNNNNN/` with the raw and
EMA weights, the discriminator and `training_state.pt` (optimizers, schedulers, step, RNG); the file
`DIR/checkpoints/latest` names the newest complete one (`videopoet.runs`: every write goes to a temporary
name first and is renamed into place, so a crash while saving never leaves `latest` or the tokenizer
folder pointing at a broken checkpoint).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from torch import nn

from videopoet.errors import UserError
from videopoet.runs import RunFolder, atomic_write_json, fresh_tmp_dir, replace_dir

CONFIG_FILE = "config.json"
WEIGHTS_FILE = "model.safetensors"


class CheckpointError(UserError):
    """A tokenizer folder or checkpoint that is missing, corrupt, or made for another model."""


def save_weights(module: nn.Module, path: str | Path) -> None:
    """Write a module's state (parameters and buffers) as safetensors, atomically."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().cpu().contiguous() for k, v in module.state_dict().items()}
    tmp = path.with_name(path.name + ".tmp")
    save_file(state, str(tmp))
    os.replace(tmp, path)


def load_weights(module: nn.Module, path: str | Path) -> None:
    """Load safetensors weights into `module`, saying exactly what does not fit."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"weights file not found: {path}")
    try:
        state = load_file(str(path))
    except (SafetensorError, OSError, ValueError) as e:
        raise CheckpointError(f"weights file {path} is corrupt or not safetensors: {e}") from None
    own = module.state_dict()
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    shapes = [f"{k} {tuple(state[k].shape)} vs {tuple(v.shape)}" for k, v in own.items() if k in state and state[k].shape != v.shape]
    if missing or unexpected or shapes:
        parts = []
        if missing:
            parts.append(f"missing {len(missing)} tensors (e.g. {missing[0]})")
        if unexpected:
            parts.append(f"{len(unexpected)} unexpected tensors (e.g. {unexpected[0]})")
        if shapes:
            parts.append(f"{len(shapes)} shape mismatches (e.g. {shapes[0]}, file vs model)")
        raise CheckpointError(f"weights in {path} do not fit this model's config: " + "; ".join(parts))
    module.load_state_dict(state)


def save_json(data: dict[str, Any], path: str | Path) -> None:
    atomic_write_json(path, data)


def load_json(path: str | Path) -> dict[str, Any]:
    path = Path(path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise CheckpointError(f"{path.name} not found in {path.parent}: not a tokenizer folder") from None
    except (OSError, ValueError) as e:
        raise CheckpointError(f"cannot read {path}: {e}") from None
    if not isinstance(data, dict):
        raise CheckpointError(f"{path} must hold a JSON object")
    return data


def save_tokenizer_folder(folder: str | Path, module: nn.Module, config: dict[str, Any]) -> None:
    """Write `config.json` and `model.safetensors`: the folder that encode/decode/eval load."""
    folder = Path(folder)
    save_weights(module, folder / WEIGHTS_FILE)
    save_json(config, folder / CONFIG_FILE)


def load_tokenizer_config(folder: str | Path, kind: str) -> dict[str, Any]:
    """The config JSON of a tokenizer folder, checked to be of `kind` ('video' or 'audio')."""
    folder = Path(folder)
    if not folder.is_dir():
        raise CheckpointError(f"tokenizer folder not found: {folder}")
    config = load_json(folder / CONFIG_FILE)
    if config.get("kind") != kind:
        raise CheckpointError(f"{folder} holds a {config.get('kind', 'unknown')!r} tokenizer, not a {kind!r} one")
    return config


# ---- training checkpoints ---------------------------------------------------------------------------------


def checkpoint_dir(run_dir: str | Path, step: int) -> Path:
    return RunFolder(run_dir).checkpoint(step)


def latest_checkpoint(run_dir: str | Path) -> Path | None:
    """The checkpoint `latest` names, or None when the run has none."""
    return RunFolder(run_dir).latest()


def save_checkpoint(
    run_dir: str | Path,
    step: int,
    modules: dict[str, nn.Module],
    state: dict[str, Any],
    keep_last: int,
) -> Path:
    """Write modules (safetensors) and training state (torch.save) for `step`, then move `latest` to it
    and delete all but the newest `keep_last` checkpoints."""
    run = RunFolder(run_dir)
    final = run.checkpoint(step)
    tmp = fresh_tmp_dir(final)
    for name, module in modules.items():
        save_weights(module, tmp / f"{name}.safetensors")
    torch.save(state, tmp / "training_state.pt")
    replace_dir(tmp, final)
    run.mark_latest(final)
    run.prune(keep_last)
    return final


def load_checkpoint(path: str | Path, modules: dict[str, nn.Module]) -> dict[str, Any]:
    """Restore modules from a training checkpoint and return its training state."""
    path = Path(path)
    for name, module in modules.items():
        load_weights(module, path / f"{name}.safetensors")
    try:
        return torch.load(path / "training_state.pt", map_location="cpu", weights_only=False)
    except FileNotFoundError:
        raise CheckpointError(f"checkpoint {path} has no training_state.pt") from None
    except Exception as e:  # a truncated or foreign pickle
        raise CheckpointError(f"checkpoint {path} has a corrupt training_state.pt: {e}") from None


def tokenizer_folder_config(kind: str, model_config: Any, **extra: Any) -> dict[str, Any]:
    """The config.json of a tokenizer folder: its kind and model config (plus e.g. the training config)."""
    from videopoet.config import to_dict

    return {"kind": kind, "model": to_dict(model_config), **{k: to_dict(v) for k, v in extra.items()}}


def load_tokenizer(folder: str | Path, kind: str, device: str | torch.device = "cpu") -> nn.Module:
    """A media tokenizer of family `kind` (`video`, `audio`, ...: `tokenizers.registry`) from its folder
    (config.json + model.safetensors), in eval mode."""
    from videopoet.config import ConfigError, from_dict
    from videopoet.tokenizers.registry import get_family

    family = get_family(kind)
    model_cls, config_cls = family.load("model"), family.load("model_config")
    config = load_tokenizer_config(folder, kind)
    try:
        model_config = from_dict(config_cls, config.get("model") or {}, prefix="model")
    except (ConfigError, ValueError) as e:
        raise CheckpointError(f"{Path(folder) / CONFIG_FILE} has a bad model config: {e}") from None
    model = model_cls(model_config)
    load_weights(model, Path(folder) / WEIGHTS_FILE)
    return model.to(device).eval()


def save_tokenizer(folder: str | Path, model: nn.Module, kind: str, **extra: Any) -> None:
    """Write a media tokenizer's folder from the model and its config (e.g. an untrained one)."""
    save_tokenizer_folder(folder, model, tokenizer_folder_config(kind, model.config, **extra))
