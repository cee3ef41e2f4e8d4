"""`videopoet plan`: parameter counts against a built model, ZeRO byte counts against DeepSpeed's formulas,
activations, the plan's arithmetic, and the command line (table, JSON, one-line errors)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from videopoet.cli import main
from videopoet.llm.model import LLMConfig
from videopoet.plan import (
    GIB,
    VIDEOPOET_TOKENS,
    ModelSize,
    activation_bytes,
    make_plan,
    model_size,
    model_state_bytes,
    optimizer_step_bytes,
)

ROOT = Path(__file__).resolve().parents[1]
SIZE = ModelSize(params=1_000_000, largest_module=100_000, layers=4, hidden=64, kv_dim=64, ffn=192, heads=4, vocab_rows=512)


def test_model_size_counts_the_built_models_parameters() -> None:
    from videopoet.llm.model import build_model
    from videopoet.vocab import SharedVocab

    vocab = SharedVocab(text_size=100, video_bits=6, audio_levels=2, audio_codebook_size=16)
    config = LLMConfig(hidden_size=32, num_layers=2, num_heads=4, num_kv_heads=2, intermediate_size=64, max_position_embeddings=64)
    model = build_model(config, vocab)
    size = model_size(config, vocab.padded_size(config.vocab_multiple))
    assert size.params == sum(p.numel() for p in model.parameters())
    assert size.kv_dim == 16 and size.largest_module == vocab.padded_size() * 32


def test_zero_stages_follow_deepspeeds_byte_counts() -> None:
    p, n = SIZE.params, 8
    bf16 = {s: model_state_bytes(SIZE, s, n)[0] for s in range(4)}
    assert bf16[0] == 20 * p  # 2 + 2 + 4 + 4 + 8 bytes per parameter, nothing split
    assert bf16[1] == 4 * p + 16 * p // n
    assert bf16[2] == 2 * p + 18 * p // n  # DeepSpeed's ZeRO-2 estimator
    assert bf16[3] == 4 * SIZE.largest_module + 18 * p // n  # DeepSpeed's ZeRO-3 estimator
    assert bf16[0] > bf16[1] > bf16[2] > bf16[3]
    assert model_state_bytes(SIZE, 0, 1, bf16=False)[0] == 16 * p  # fp32: weights, gradients, Adam's moments
    gpu, cpu = model_state_bytes(SIZE, 2, n, offload=True)
    assert gpu == 2 * p and cpu > 0  # offloaded: only the 16-bit weights stay on the GPU
    # the optimizer step's temporaries: per parameter of this GPU's partition, none when offloaded
    assert optimizer_step_bytes(SIZE, 0, n) == int(10.5 * p) and optimizer_step_bytes(SIZE, 2, n) == int(10.5 * p / n)
    assert optimizer_step_bytes(SIZE, 3, n, offload=True) == 0


def test_activations_with_and_without_checkpointing() -> None:
    full = activation_bytes(SIZE, 2, 128, checkpointing=False)
    ckpt = activation_bytes(SIZE, 2, 128, checkpointing=True)
    assert ckpt["blocks"] < full["blocks"] and ckpt["logits"] == full["logits"] == 2 * 128 * 512 * (2 + 8)
    assert full["total"] == full["blocks"] + full["logits"] + full["mask"]
    assert activation_bytes(SIZE, 4, 128, False)["blocks"] == 2 * full["blocks"]
    assert activation_bytes(SIZE, 2, 128, False, bytes_per_value=4)["blocks"] == 2 * full["blocks"]


def test_plan_arithmetic() -> None:
    from videopoet.config import load_project_config

    sections = load_project_config(ROOT / "configs" / "videopoet-1b.yaml")
    plan = make_plan(sections, gpus=64, gpu="h100", zero=2, offload=False, mfu=0.4)
    assert plan.precision == "bf16" and plan.micro_batch == sections["llm_train"].micro_batch_size
    assert plan.days == pytest.approx(VIDEOPOET_TOKENS / plan.tokens_per_day)
    assert plan.step_seconds == pytest.approx(plan.flops_per_step / (64 * 989e12 * 0.4))
    assert plan.tokens_per_day * plan.step_seconds == pytest.approx(86400 * plan.micro_batch * 64 * 2048)
    assert plan.max_micro_batch["checkpointing"] >= plan.max_micro_batch["none"] >= 1
    assert plan.fits == (plan.peak_per_gpu <= 0.92 * 80 * GIB)
    more = make_plan(sections, gpus=512, gpu="h100", zero=2, offload=False, mfu=0.4)
    assert more.days == pytest.approx(plan.days / 8) and more.model_states[2] < plan.model_states[2]


def test_cli_prints_the_plan_and_json(capsys: pytest.CaptureFixture[str]) -> None:
    config = str(ROOT / "configs" / "videopoet-300m.yaml")
    assert main(["plan", "--config", config, "--gpus", "8", "--gpu", "h200"]) == 0
    out = capsys.readouterr().out
    assert "8 x H200" in out and "largest micro-batch that fits" in out and "days" in out
    assert main(["plan", "--config", config, "--gpus", "8", "--zero", "3", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["zero"] == 3 and data["gpus"] == 8 and set(data["model_states"]) == {"0", "1", "2", "3"}


@pytest.mark.parametrize("args, message", [
    (["--gpus", "0"], "--gpus must be at least 1"),
    (["--gpus", "8", "--zero", "0", "--offload"], "--offload needs ZeRO stage 1, 2 or 3"),
    (["--gpus", "8", "--mfu", "1.5"], "--mfu is a share of the peak"),
])  # fmt: skip
def test_cli_errors_are_one_line(capsys: pytest.CaptureFixture[str], args: list[str], message: str) -> None:
    assert main(["plan", "--config", str(ROOT / "configs" / "videopoet-300m.yaml"), *args]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len([line for line in err if line.startswith("videopoet: error:")]) == 1 and message in err[-1]
