"""`videopoet plan`: what a training run of a project config needs on a cluster, before renting it.

Per GPU: model and optimizer memory for each ZeRO stage (DeepSpeed's own estimators for stages 2 and 3,
the same byte counts by hand for 0 and 1), activation memory at the config's micro-batch and a sequence
length with and without activation checkpointing, the largest micro-batch that fits; then FLOPs per step
(`llm.flops`), step time and tokens per day at a stated MFU, and the days to train a token budget.

Assumptions, stated where they are used: bf16 mixed precision (DeepSpeed's layout: 16-bit weights and
gradients, fp32 master weights, gradients and Adam moments) or plain fp32; activations counted from the
tensors a Llama block keeps for backward; the loss's logits (`[B, S, V]`, V ~300k at paper scale) counted
apart because at paper scale they outweigh the blocks. The default token budget is VideoPoet's: about 2
trillion tokens across modalities (Kondratyuk et al., VideoPoet, ICML 2024, section 5.1).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from videopoet.errors import UserError

GIB = 2**30
# Datasheet dense bf16 peaks (TFLOP/s) and memory (GiB) per GPU; A100: the 80 GB part.
GPUS: dict[str, tuple[float, float]] = {"h100": (989.0, 80.0), "h200": (989.0, 141.0), "a100": (312.0, 80.0), "l40s": (362.0, 48.0)}
VIDEOPOET_TOKENS = 2e12  # VideoPoet's training data, "around 2 trillion tokens across all modalities" (section 5.1)
DEFAULT_MFU = 0.40  # near llm-foundry's 41.8% for a 1B model on H100s; our own is measured by benchmarks/gpu_check.sh
USABLE_SHARE = 0.92  # of a GPU's memory that tensors can use (allocator fragmentation, the rest)
GPU_RUNTIME_GIB = 2.0  # CUDA context, NCCL and DeepSpeed's buckets per GPU (assumption)
GPUS_PER_NODE = 8
# torch's AdamW (DeepSpeed's `torch_adam: true`) allocates temporaries in its step: measured 18.5 bytes per
# parameter at the first step of torch 2.11's foreach AdamW on one fp32 tensor, of which 8 are the moments
ADAM_STEP_TRANSIENT = 10.5


class PlanError(UserError):
    """Options that describe no cluster (no GPUs, an MFU outside (0, 1], ...)."""


@dataclass
class ModelSize:
    """What the memory and FLOPs depend on: parameters, the largest module, the block's shape."""

    params: int  # all parameters: blocks, embeddings and head
    largest_module: int  # parameters of the largest module ZeRO-3 gathers whole (embeddings or head at paper scale)
    layers: int
    hidden: int
    kv_dim: int
    ffn: int
    heads: int
    vocab_rows: int


def model_size(config: Any, vocab_rows: int) -> ModelSize:
    """The `ModelSize` of an `LLMConfig` over a vocabulary of `vocab_rows` (padded) rows."""
    from videopoet.llm.model import transformer_parameters

    h, f, heads = config.hidden_size, config.ffn_size, config.num_heads
    kv = (config.num_kv_heads or heads) * (h // heads)
    per_layer = h * h * 2 + h * kv * 2 + 3 * h * f + 2 * h
    embed = vocab_rows * h
    params = transformer_parameters(config) + embed * (1 if config.tie_word_embeddings else 2)
    return ModelSize(params, max(embed, per_layer), config.num_layers, h, kv, f, heads, vocab_rows)


def _deepspeed_estimators() -> tuple[Any, Any]:
    """DeepSpeed's ZeRO-2 and ZeRO-3 model-state estimators. Its import logs the accelerator it picks on
    stdout, which would spoil `plan --json`: that line goes to stderr instead."""
    import contextlib
    import sys

    with contextlib.redirect_stdout(sys.stderr):
        from deepspeed.runtime.zero.stage3 import estimate_zero3_model_states_mem_needs
        from deepspeed.runtime.zero.stage_1_and_2 import estimate_zero2_model_states_mem_needs
    return estimate_zero2_model_states_mem_needs, estimate_zero3_model_states_mem_needs


def model_state_bytes(size: ModelSize, stage: int, gpus: int, offload: bool = False, bf16: bool = True,
                      gpus_per_node: int = GPUS_PER_NODE) -> tuple[int, int]:
    """(per GPU, per node's CPU) bytes of weights, gradients and optimizer states under ZeRO `stage`.

    bf16 stages 2 and 3 come from DeepSpeed's estimators (`estimate_zero2_model_states_mem_needs`,
    `estimate_zero3_model_states_mem_needs`, with their 1.5x CPU buffer factor); the rest counts the same
    bytes: 16-bit weights and gradients (2 + 2), fp32 master weights and gradients (4 + 4) and Adam's two
    moments (8), the last three split over the GPUs from stage 1 on, gradients from stage 2, weights at 3."""
    p, n = size.params, gpus
    per_node = min(gpus, gpus_per_node)
    nodes = max(1, -(-gpus // per_node))
    if bf16 and stage == 2:
        cpu, gpu = _deepspeed_estimators()[0](p, per_node, nodes, cpu_offload=offload)
        return int(gpu), int(cpu)
    if bf16 and stage == 3:
        cpu, gpu, _ = _deepspeed_estimators()[1](p, size.largest_module, per_node, nodes, cpu_offload=offload,
                                                            cpu_offload_params=offload, zero_init=True)
        return int(gpu), int(cpu)
    w = 2 if bf16 else 4
    split = n if stage >= 1 else 1
    weights = w * p / n + 4 * size.largest_module if stage == 3 else w * p
    grads = w * p / (n if stage >= 2 else 1)
    # fp32 master weights: bf16 always; fp32 under ZeRO 1-3 too (DeepSpeed keeps an fp32 partition copy)
    master = 4 * p / split if (bf16 or stage >= 1) else 0
    fp32_grads = 4 * p / split if bf16 else 0
    adam = 8 * p / split
    states = master + fp32_grads + adam
    if offload and stage >= 1:
        return int(weights + grads), int(states * n / nodes * 1.5)
    return int(weights + grads + states), 0


def optimizer_step_bytes(size: ModelSize, stage: int, gpus: int, offload: bool = False) -> int:
    """Bytes per GPU of the optimizer step's temporaries (`ADAM_STEP_TRANSIENT` per parameter of this
    GPU's optimizer partition; none on the GPU when the optimizer is offloaded). DeepSpeed's estimators
    leave them out."""
    if offload and stage >= 1:
        return 0
    return int(ADAM_STEP_TRANSIENT * size.params / (gpus if stage >= 1 else 1))


def activation_bytes(size: ModelSize, micro_batch: int, seq_len: int, checkpointing: bool, bytes_per_value: int = 2,
                     math_attention: bool = False) -> dict[str, int]:
    """Bytes of activations kept for backward in one micro-batch, by part.

    A Llama block keeps per token: its two RMSNorms' input, normalised and output tensors (3h each), the
    rotated queries (h), keys and values (2 kv), the attention output (h), and the MLP's gate, up, SiLU
    and product (4 ffn). With checkpointing only each block's input (h) stays, plus one block's full set
    while it is recomputed. The logits: the head's output, its fp32 log-softmax and that one's gradient
    (w + 4 + 4 bytes per value). `math_attention` adds the attention weights (heads x S per token), kept
    where SDPA falls back to its math kernel (the CPU with a mask)."""
    tokens, w = micro_batch * seq_len, bytes_per_value
    per_token_layer = w * (8 * size.hidden + 2 * size.kv_dim + 4 * size.ffn)
    if math_attention:
        per_token_layer += w * size.heads * seq_len
    blocks = (size.layers * w * size.hidden + per_token_layer) * tokens if checkpointing else size.layers * per_token_layer * tokens
    logits = tokens * size.vocab_rows * (w + 8)
    mask = micro_batch * seq_len * seq_len  # the boolean [B, 1, S, S] prefix-LM mask
    return {"blocks": int(blocks), "logits": int(logits), "mask": int(mask), "total": int(blocks + logits + mask)}


@dataclass
class Plan:
    """The plan for one config on one cluster (bytes per GPU; FLOPs; seconds)."""

    config: str
    gpu: str
    gpus: int
    zero: int
    offload: bool
    precision: str
    micro_batch: int
    grad_accum: int
    seq_len: int
    params: int
    vocab_rows: int
    model_states: dict[int, int]  # ZeRO stage -> bytes per GPU
    cpu_per_node: int  # CPU memory per node DeepSpeed's estimator asks for (offloaded states; ZeRO-3: also model creation)
    activations: dict[str, dict[str, int]]  # "checkpointing" / "none" -> parts
    activation_checkpointing: bool
    optimizer_step: int  # bytes per GPU of the optimizer step's temporaries
    gpu_memory: int
    peak_per_gpu: int
    fits: bool
    max_micro_batch: dict[str, int]
    flops_per_token: float
    flops_per_step: float
    mfu: float
    step_seconds: float
    tokens_per_day: float
    token_budget: float
    days: float
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _vocab_rows(sections: dict[str, Any]) -> int:
    """Padded rows of the shared vocabulary the config's tokenizers make."""
    from videopoet.vocab import SharedVocab

    video, audio = sections["video_tokenizer"].model, sections["audio_tokenizer"].model
    vocab = SharedVocab(text_size=sections["text_tokenizer"].vocab_size, video_bits=video.bits,
                        audio_levels=audio.levels, audio_codebook_size=audio.codebook_size)
    return vocab.padded_size(sections["llm"].vocab_multiple)


def _max_micro_batch(budget: int, size: ModelSize, seq_len: int, checkpointing: bool, w: int) -> int:
    """The largest micro-batch whose activations fit in `budget` bytes (0 if not even one)."""
    if budget <= 0:
        return 0
    one = activation_bytes(size, 1, seq_len, checkpointing, w)["total"]
    b = int(budget // one)
    while b > 0 and activation_bytes(size, b, seq_len, checkpointing, w)["total"] > budget:
        b -= 1
    return b


def make_plan(sections: dict[str, Any], gpus: int, gpu: str = "h100", zero: int | None = None, offload: bool | None = None,
              seq_len: int = 2048, mfu: float = DEFAULT_MFU, tokens: float = VIDEOPOET_TOKENS,
              config_name: str = "") -> Plan:
    """The plan of a project config's `llm` and `llm_train` sections on `gpus` GPUs of kind `gpu`.

    `zero` and `offload` default to the config's DeepSpeed JSON; precision is bf16 unless the config
    says fp32 (a GPU plan: `auto` means bf16 there)."""
    from videopoet.llm.flops import flops_per_token

    if gpus < 1:
        raise PlanError(f"--gpus must be at least 1, got {gpus}")
    if gpu not in GPUS:
        raise PlanError(f"unknown GPU {gpu!r}; choose one of {', '.join(GPUS)}")
    if not 0 < mfu <= 1:
        raise PlanError(f"--mfu is a share of the peak, in (0, 1]; got {mfu}")
    if tokens <= 0 or seq_len < 1:
        raise PlanError("--tokens and --seq-len must be positive")
    llm, train = sections["llm"], sections["llm_train"]
    if zero is None or offload is None:
        from videopoet.llm.parallelize import read_deepspeed_json

        path = Path(train.deepspeed)
        if not path.is_absolute() and not path.is_file():  # a checkout's deploy/deepspeed/*.json, from elsewhere
            path = Path(__file__).resolve().parents[1] / path
        ds = read_deepspeed_json(path).get("zero_optimization", {})
        zero = int(ds.get("stage", 0)) if zero is None else zero
        offload = bool(ds.get("offload_optimizer") or ds.get("offload_param")) if offload is None else offload
    if zero not in (0, 1, 2, 3):
        raise PlanError(f"--zero must be 0, 1, 2 or 3, got {zero}")
    if offload and zero == 0:
        raise PlanError("--offload needs ZeRO stage 1, 2 or 3 (DeepSpeed offloads the optimizer of a ZeRO stage)")
    bf16 = train.precision != "fp32"
    w = 2 if bf16 else 4
    rows = _vocab_rows(sections)
    size = model_size(llm, rows)
    states = {s: model_state_bytes(size, s, gpus, offload and s > 0, bf16)[0] for s in range(4)}
    cpu_per_node = model_state_bytes(size, zero, gpus, offload, bf16)[1]
    acts = {name: activation_bytes(size, train.micro_batch_size, seq_len, ckpt, w)
            for name, ckpt in (("checkpointing", True), ("none", False))}
    peak_tflops, mem_gib = GPUS[gpu]
    gpu_memory = int(mem_gib * GIB)
    runtime = int(GPU_RUNTIME_GIB * GIB)
    ckpt = train.activation_checkpointing
    step_tmp = optimizer_step_bytes(size, zero, gpus, offload)
    # the sum (conservative: most activations are freed before the optimizer step)
    peak = states[zero] + acts["checkpointing" if ckpt else "none"]["total"] + step_tmp + runtime
    budget = int(gpu_memory * USABLE_SHARE) - states[zero] - step_tmp - runtime
    max_mb = {name: _max_micro_batch(budget, size, seq_len, name == "checkpointing", w) for name in ("checkpointing", "none")}
    fpt = flops_per_token(llm, rows, seq_len)
    tokens_per_step = train.micro_batch_size * train.grad_accum * gpus * seq_len
    cluster_flops = gpus * peak_tflops * 1e12 * mfu
    step_s = fpt * tokens_per_step / cluster_flops
    per_day = cluster_flops / fpt * 86400
    notes = [f"activations at micro-batch {train.micro_batch_size} x {seq_len} tokens; "
             f"the logits ([B, S, {rows}] at {w} + 8 bytes) are {acts['none']['logits'] / GIB:.1f} GiB of them"]
    if states[zero] > gpu_memory * USABLE_SHARE:
        notes.append(f"ZeRO-{zero}'s model states alone exceed the GPU: use a higher stage, --offload or more GPUs")
    return Plan(config_name, gpu, gpus, zero, bool(offload), "bf16" if bf16 else "fp32", train.micro_batch_size,
                train.grad_accum, seq_len, size.params, rows, states, cpu_per_node, acts, ckpt, step_tmp, gpu_memory, peak,
                peak <= gpu_memory * USABLE_SHARE, max_mb, fpt, fpt * tokens_per_step, mfu, step_s, per_day, tokens,
                tokens / per_day, notes)


def format_plan(plan: Plan) -> str:
    """The plan as the lines `videopoet plan` prints."""

    def gib(b: float) -> str:
        return f"{b / GIB:.1f} GiB"

    ckpt = "on" if plan.activation_checkpointing else "off"
    lines = [
        f"{plan.config or 'config'}: {plan.params / 1e9:.2f}B parameters (vocabulary {plan.vocab_rows} rows), {plan.precision}",
        f"cluster: {plan.gpus} x {plan.gpu.upper()} ({gib(plan.gpu_memory)} each), ZeRO-{plan.zero}"
        + (" with CPU offload" if plan.offload else ""),
        "model + optimizer states per GPU: " + ", ".join(f"ZeRO-{s} {gib(b)}" for s, b in plan.model_states.items())
        + (f"; CPU memory per node (offloaded states): {gib(plan.cpu_per_node)}" if plan.offload else ""),
        f"activations per GPU (micro-batch {plan.micro_batch}, {plan.seq_len} tokens): "
        f"{gib(plan.activations['checkpointing']['total'])} with checkpointing, {gib(plan.activations['none']['total'])} without "
        f"(logits {gib(plan.activations['none']['logits'])})",
        f"peak per GPU (checkpointing {ckpt}, + {gib(plan.optimizer_step)} optimizer step temporaries, + {GPU_RUNTIME_GIB:g} GiB "
        f"runtime): {gib(plan.peak_per_gpu)} "
        f"-> {'fits' if plan.fits else 'does NOT fit'} in {USABLE_SHARE:.0%} of {gib(plan.gpu_memory)}",
        f"largest micro-batch that fits: {plan.max_micro_batch['checkpointing']} with checkpointing, "
        f"{plan.max_micro_batch['none']} without",
        f"FLOPs: {plan.flops_per_token:.3g} per token, {plan.flops_per_step:.3g} per step "
        f"({plan.micro_batch} x {plan.grad_accum} x {plan.gpus} sequences of {plan.seq_len})",
        f"at {plan.mfu:.0%} MFU: {plan.step_seconds:.2f} s per step, {plan.tokens_per_day / 1e9:.1f}B tokens per day",
        f"{plan.token_budget / 1e12:.3g}T tokens: {plan.days:.1f} days",
        *(f"note: {n}" for n in plan.notes),
    ]
    return "\n".join(lines)


def plan_command(config: str | Path | None, overrides: list[str], gpus: int, gpu: str = "h100", zero: int | None = None,
                 offload: bool | None = None, seq_len: int = 2048, mfu: float = DEFAULT_MFU,
                 tokens: float = VIDEOPOET_TOKENS) -> Plan:
    """`videopoet plan`: load the config and plan it."""
    from videopoet.config import load_project_config

    if config is not None and not Path(config).is_file():
        raise PlanError(f"config {config} not found")
    sections = load_project_config(config, overrides)
    return make_plan(sections, gpus, gpu, zero, offload, seq_len, mfu, tokens, config_name=str(config or "defaults"))
