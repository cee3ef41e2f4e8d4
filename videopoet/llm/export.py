"""`videopoet export`: a training run's DeepSpeed checkpoint -> a Hugging Face model folder.

The folder holds `config.json` and `model.safetensors` (loadable with `LlamaForCausalLM.from_pretrained`),
`vocab.json` (the shared vocabulary) and `videopoet.json` (the LLM and task configs, the run's tokenizer
folders, the clip geometry its records were made at, and the `sampling` section as generation's defaults),
which is what `videopoet generate` reads. Works for any ZeRO stage: the
fp32 weights are gathered from the partitions with DeepSpeed's own consolidation.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch

from videopoet.config import load_project_config, to_dict
from videopoet.data.pretokenize import CLIP_FILE
from videopoet.errors import UserError
from videopoet.llm.backbone import tied_parameter_names
from videopoet.llm.model import build_model
from videopoet.llm.train import RUN_FILE, find_checkpoint
from videopoet.vocab import SharedVocab

EXPORT_META = "videopoet.json"


class ExportError(UserError):
    """A run folder that cannot be exported."""


def consolidated_state_dict(checkpoint: Path, zero_stage: int) -> dict[str, torch.Tensor]:
    """Full fp32 weights of a DeepSpeed checkpoint folder (one tag) saved under any ZeRO stage."""
    if zero_stage == 0:
        state = torch.load(checkpoint / "mp_rank_00_model_states.pt", map_location="cpu", weights_only=False)
        return {k: v.float() for k, v in state["module"].items()}
    from deepspeed.utils.zero_to_fp32 import get_fp32_state_dict_from_zero_checkpoint

    return get_fp32_state_dict_from_zero_checkpoint(str(checkpoint.parent), tag=checkpoint.name)


def export_run(run_dir: str | Path, out_dir: str | Path, checkpoint: str = "auto") -> dict[str, Any]:
    """Write the Hugging Face folder of a run's latest (or given) checkpoint; returns its metadata."""
    run_dir, out_dir = Path(run_dir), Path(out_dir)
    if not (run_dir / "config.yaml").is_file() or not (run_dir / "vocab.json").is_file():
        raise ExportError(f"{run_dir} is not a videopoet LLM run folder (it needs config.yaml and vocab.json)")
    ckpt = find_checkpoint(run_dir, checkpoint)
    if ckpt is None:
        raise ExportError(f"{run_dir} holds no checkpoint to export")
    sections = load_project_config(run_dir / "config.yaml")
    vocab = SharedVocab.load(run_dir / "vocab.json")
    model = build_model(sections["llm"], vocab)
    state = consolidated_state_dict(ckpt.path, ckpt.meta["zero_stage"])
    missing, unexpected = model.load_state_dict(state, strict=False)
    missing = [k for k in missing if k not in tied_parameter_names(model)]
    if missing or unexpected:
        raise ExportError(f"checkpoint {ckpt.path} does not fit the run's model config: missing {missing[:3]}, unexpected {unexpected[:3]}")
    out_dir.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out_dir, safe_serialization=True)
    vocab.save(out_dir / "vocab.json")
    run_file = run_dir / RUN_FILE
    data = Path(json.loads(run_file.read_text())["data"]) if run_file.is_file() else None

    def from_data(name: str) -> Any:
        """A JSON file of the token records the run trained on (None when it is not there)."""
        path = data / name if data is not None else None
        return json.loads(path.read_text()) if path is not None and path.is_file() else None

    meta = {
        "format": "videopoet-llm",
        "step": ckpt.meta["step"],
        "checkpoint": str(ckpt.path),
        "llm": to_dict(sections["llm"]),
        "tasks": to_dict(sections["tasks"]),
        "sampling": to_dict(sections["sampling"]),
        "tokenizers": from_data("tokenizers.json") or {},
        "clip": from_data(CLIP_FILE),
    }
    (out_dir / EXPORT_META).write_text(json.dumps(meta, indent=2) + "\n", encoding="utf-8")
    return meta
