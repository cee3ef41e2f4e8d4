"""A tiny, randomly initialised exported model folder (the layout `videopoet export` writes).

For the server's tests and benchmark, and to try `videopoet serve` without training: it samples noise,
at the speed of the demo's model shape. Built in seconds: random video and audio tokenizers, a
SentencePiece text tokenizer trained on a handful of shapes captions, a 1-layer LLM."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

# The demo's shapes (configs/tiny.yaml): 17x32x32 clips -> 5x8x8 video tokens, the `tiny` LLM preset.
DEMO_SHAPE: dict[str, Any] = {
    "frames": 17,
    "video": {"channels": 16, "channel_mult": (1, 2, 4), "num_res_blocks": 1, "temporal_kernel": 1, "norm_groups": 8,
              "spatial_factor": 4, "temporal_factor": 4, "bits": 8, "group_bits": 4},
    "llm": {"hidden_size": 128, "num_layers": 4, "num_heads": 4, "intermediate_size": 384},
}


def make_tiny_model(out: str | Path, *, frames: int = 9, size: int = 32, llm: dict[str, Any] | None = None,
                    video: dict[str, Any] | None = None, sampling: dict[str, Any] | None = None, seed: int = 0) -> Path:
    """Write a model folder (and its tokenizer folders and a few shapes clips beside it) under `out`;
    returns the model folder `out/model`. An existing complete folder is reused. `llm` and `video` override
    the LLM config and the video tokenizer's `tiny` preset (`DEMO_SHAPE` has the demo's)."""
    out = Path(out)
    model_dir = out / "model"
    if (model_dir / "videopoet.json").is_file():
        return model_dir
    import torch

    from videopoet.config import to_dict
    from videopoet.data.pretokenize import load_tokenizers
    from videopoet.data.shapes_dataset import write_shapes_dataset
    from videopoet.data.synthetic import ShapesConfig
    from videopoet.data.tasks import TaskConfig
    from videopoet.geometry import ClipConfig
    from videopoet.llm.model import LLMConfig, build_model
    from videopoet.tokenizers.audio.model import AudioTokenizer
    from videopoet.tokenizers.audio.model import preset as audio_preset
    from videopoet.tokenizers.checkpoint import save_tokenizer
    from videopoet.tokenizers.text import TextTokenizerConfig, train_text_tokenizer
    from videopoet.tokenizers.video.model import VideoTokenizer
    from videopoet.tokenizers.video.model import preset as video_preset

    shapes = write_shapes_dataset(out / "shapes", num_clips=8, seed=seed, config=ShapesConfig(size=size, frames=frames), progress=False)
    torch.manual_seed(seed)
    video_config = {"channels": 8, "norm_groups": 4, **(video or {})}
    video_tok = VideoTokenizer(video_preset("tiny", frames=frames, height=size, width=size, **video_config))
    save_tokenizer(out / "video", video_tok.eval(), "video")
    save_tokenizer(out / "audio", AudioTokenizer(audio_preset("tiny")).eval(), "audio")
    train_text_tokenizer(shapes / "metadata.jsonl", out / "text", TextTokenizerConfig(vocab_size=300, model_type="bpe"))
    _, _, _, vocab = load_tokenizers(out / "video", out / "text", out / "audio")
    llm_config = LLMConfig(**{"hidden_size": 32, "num_layers": 1, "num_heads": 2, "intermediate_size": 64,
                              "max_position_embeddings": 1024, **(llm or {})})
    model = build_model(llm_config, vocab)
    tmp = out / "model.tmp"
    model.save_pretrained(tmp, safe_serialization=True)
    vocab.save(tmp / "vocab.json")
    default = {"temperature": 1.0, "top_k": 0, "top_p": 1.0, "cfg_scale": 1.0, "steps": 3, "choice_temperature": 1.0, "seed": 0}
    meta = {
        "format": "videopoet-llm",
        "step": 0,
        "checkpoint": None,
        "llm": to_dict(llm_config),
        "tasks": to_dict(TaskConfig()),
        "sampling": sampling or {"ar": {**default, "temperature": 0.0}, "maskgit": default},
        "tokenizers": {"video": str(out / "video"), "text": str(out / "text"), "audio": str(out / "audio")},
        "clip": to_dict(ClipConfig(frames=frames, fps=8.0, height=size, width=size)),
    }
    (tmp / "videopoet.json").write_text(json.dumps(meta, indent=2) + "\n", encoding="utf-8")
    tmp.rename(model_dir)
    return model_dir
