"""Autoregressive (KV cache) and MaskGIT samplers over the prefix LM.

Both take a batch of prefixes (everything before the output's opening marker, as `data/tasks.py` lays it
out) and an `OutputLayout` (the output blocks: opening marker, how many tokens from which id ranges,
closing marker), and return the output's content ids. Logits are restricted to the id range of the
modality and RVQ level each position produces, so every id is valid.

Classifier-free guidance runs the conditional and unconditional prefixes as one batch and mixes the
logits: uncond + scale * (cond - uncond). Prefixes of different lengths are left-padded; explicit
position ids and 4D masks keep the padding invisible.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import Any

import torch
from transformers import DynamicCache

from videopoet.llm.backbone import bidirectional_attention
from videopoet.sequence import OutputLayout

NEG_INF = float("-inf")


@dataclass
class SamplingConfig:
    temperature: float = 1.0
    top_k: int = 0  # 0: off
    top_p: float = 1.0  # 1: off
    cfg_scale: float = 1.0  # 1: no guidance
    steps: int = 16  # MaskGIT steps
    choice_temperature: float = 4.5  # MaskGIT: Gumbel noise on confidences, annealed to zero
    seed: int = 0
    # torch.compile the backbone (in place, once per model) before sampling: the same tokens, fused kernels
    # per step on GPUs, after a one-time compile of each new shape kind (docs/training.md "Device handling")
    compile: bool = False
    compile_backend: str = "inductor"  # torch.compile backend; aot_eager traces without generating code (a quick check)

    def __post_init__(self) -> None:
        if self.temperature < 0 or self.top_k < 0 or not 0 < self.top_p <= 1 or self.steps < 1:
            raise ValueError("temperature >= 0, top_k >= 0, 0 < top_p <= 1 and steps >= 1 are required")


@dataclass
class SamplingSection:
    """Project config section `sampling`: how each sampler samples, for the demo and, copied into the
    exported model, as the defaults of `videopoet generate` (its options override them)."""

    ar: SamplingConfig = field(default_factory=SamplingConfig)
    maskgit: SamplingConfig = field(default_factory=SamplingConfig)

    def for_sampler(self, sampler: str, **changes: Any) -> SamplingConfig:
        """The settings of `sampler` (`ar` or `maskgit`) with `changes` (e.g. `seed`) applied."""
        if sampler not in ("ar", "maskgit"):
            raise ValueError(f"the sampler must be ar or maskgit, got {sampler!r}")
        return dataclasses.replace(getattr(self, sampler), **changes)


def _left_pad(prefixes: list[torch.Tensor], pad_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Left-padded ids `[B, P]` and the count of padding per row `[B]`."""
    width = max(len(p) for p in prefixes)
    ids = torch.full((len(prefixes), width), pad_id, dtype=torch.long)
    pads = torch.tensor([width - len(p) for p in prefixes])
    for i, p in enumerate(prefixes):
        ids[i, width - len(p) :] = p
    return ids, pads


def _prefix_mask(pads: torch.Tensor, width: int) -> torch.Tensor:
    """Bidirectional over each row's real prefix tokens `[B, 1, P, P]` (padding queries see themselves)."""
    j = torch.arange(width)
    real = j[None, :] >= pads[:, None]
    mask = real[:, None, :] & real[:, :, None]
    return (mask | torch.eye(width, dtype=torch.bool)[None]).unsqueeze(1)


def _head(model: torch.nn.Module, hidden: torch.Tensor, base: int, top: int) -> torch.Tensor:
    """Logits of the vocabulary slice [base, top) only: at paper scale the full head has ~300k rows and
    a block needs one range of them."""
    weight = model.get_output_embeddings().weight[base:top]
    return (hidden.to(weight.dtype) @ weight.T).float().cpu()


def compile_backbone(model: torch.nn.Module, backend: str = "inductor") -> None:
    """Compile the backbone the samplers run (`model.model`) in place with torch.compile, once; shapes are
    dynamic from the start (the KV cache grows every step), so a new cache length does not recompile."""
    backbone = model.model
    if not getattr(backbone, "_videopoet_compiled", False):
        backbone.compile(dynamic=True, backend=backend)
        backbone._videopoet_compiled = True


def _hidden(model: torch.nn.Module, **inputs) -> torch.Tensor:
    """Last hidden states of the backbone (the head is applied per slice by `_head`)."""
    return model.model(**inputs).last_hidden_state


def _filter_logits(logits: torch.Tensor, lo: torch.Tensor, hi: torch.Tensor, config: SamplingConfig) -> torch.Tensor:
    """Logits `[..., V']` of a vocabulary slice restricted to [lo, hi) per position (relative to the slice),
    then top-k / top-p, divided by temperature."""
    v = torch.arange(logits.shape[-1], device=logits.device)
    allowed = (v >= lo[..., None]) & (v < hi[..., None])
    logits = logits.float().masked_fill(~allowed, NEG_INF)
    if config.top_k:
        kth = logits.topk(min(config.top_k, logits.shape[-1]), dim=-1).values[..., -1:]
        logits = logits.masked_fill(logits < kth, NEG_INF)
    if config.top_p < 1:
        sorted_logits, order = logits.sort(dim=-1, descending=True)
        cum = sorted_logits.softmax(-1).cumsum(-1)
        drop = cum - sorted_logits.softmax(-1) > config.top_p
        logits = logits.masked_fill(drop.scatter(-1, order, drop), NEG_INF)
    return logits / max(config.temperature, 1e-6)


def _draw(logits: torch.Tensor, config: SamplingConfig, generator: torch.Generator) -> torch.Tensor:
    """One sample per position from softmax(logits), by the Gumbel-max trick (one vectorised argmax,
    much faster than `multinomial` over thousands of positions)."""
    if config.temperature == 0:
        return logits.argmax(-1)
    u = torch.rand(logits.shape, generator=generator).clamp_(min=1e-20)
    return (logits - torch.log(-torch.log(u))).argmax(-1)


def _masked_slots(unknown: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Positions `[B, K]` of each row's masked slots (K: the most any row has; rows with fewer repeat
    known positions, flagged False in the returned `valid`), so the head and the draw run on those only:
    the later steps leave few masked, and at paper scale the head is the step's largest matmul."""
    counts = unknown.sum(1)
    order = (~unknown).to(torch.uint8).argsort(dim=1, stable=True)  # masked slots first, in order
    k = int(counts.max())
    return order[:, :k], torch.arange(k)[None, :] < counts[:, None]


def _guide(logits: torch.Tensor, batch: int, scale: float) -> torch.Tensor:
    """Mix conditional (first half) and unconditional (second half) logits."""
    if logits.shape[0] == batch:
        return logits
    cond, uncond = logits[:batch], logits[batch:]
    return uncond + scale * (cond - uncond)


def _prefill(
    model: torch.nn.Module,
    prefixes: list[torch.Tensor],
    uncond: list[torch.Tensor] | None,
    config: SamplingConfig,
    pad_id: int,
) -> tuple[DynamicCache, torch.Tensor, torch.Tensor]:
    """Run the (left-padded) prefixes once, conditional rows then unconditional ones when guiding;
    returns the KV cache, the padding per row and the position ids `[rows, P]`."""
    rows = prefixes + (uncond if uncond is not None and config.cfg_scale != 1.0 else [])
    ids, pads = _left_pad(rows, pad_id)
    width = ids.shape[1]
    positions = (torch.arange(width)[None, :] - pads[:, None]).clamp(min=0)
    device = next(model.parameters()).device
    cache = DynamicCache()
    _hidden(model, input_ids=ids.to(device), attention_mask=_prefix_mask(pads, width).to(device),
            position_ids=positions.to(device), cache=cache, use_cache=True)
    return cache, pads, positions


@torch.no_grad()
def sample_autoregressive(
    model: torch.nn.Module,
    prefixes: list[torch.Tensor],
    layout: OutputLayout,
    config: SamplingConfig,
    pad_id: int,
    uncond_prefixes: list[torch.Tensor] | None = None,
) -> torch.Tensor:
    """Content ids `[B, N]` of the output, one token at a time with a KV cache."""
    if config.compile:
        compile_backbone(model, config.compile_backend)
    device, batch, generator = next(model.parameters()).device, len(prefixes), torch.Generator().manual_seed(config.seed)
    cache, pads, positions = _prefill(model, prefixes, uncond_prefixes, config, pad_id)
    rows, width = positions.shape
    lo, hi = layout.ranges()
    key_valid = torch.arange(width)[None, :] >= pads[:, None]  # [rows, keys]
    next_pos = positions[:, -1] + 1

    def feed(token: torch.Tensor) -> torch.Tensor:
        nonlocal key_valid, next_pos
        key_valid = torch.cat([key_valid, torch.ones(rows, 1, dtype=torch.bool)], dim=1)
        step_mask = key_valid[:, None, None, :]
        hidden = _hidden(model, input_ids=token[:, None].to(device), attention_mask=step_mask.to(device),
                         position_ids=next_pos[:, None].to(device), cache=cache, use_cache=True)
        next_pos = next_pos + 1
        return hidden[:, -1]

    content = torch.empty(batch, layout.content_length, dtype=torch.long)
    k = 0
    for b, block in enumerate(layout.blocks):
        if b:  # the previous block's closing marker, then this block's opening one
            feed(torch.full((rows,), layout.blocks[b - 1].close_id))
        hidden = feed(torch.full((rows,), block.open_id))
        for i in range(len(block)):
            base, top = int(lo[k]), int(hi[k])
            logits = _guide(_head(model, hidden, base, top), batch, config.cfg_scale)
            zero = torch.zeros(batch, dtype=torch.long)
            token = base + _draw(_filter_logits(logits, zero, zero + (top - base), config), config, generator)
            content[:, k] = token
            k += 1
            if i + 1 < len(block) or b + 1 < len(layout.blocks):
                hidden = feed(token.repeat(rows // batch))
    return content


@torch.no_grad()
def sample_maskgit(
    model: torch.nn.Module,
    prefixes: list[torch.Tensor],
    layout: OutputLayout,
    config: SamplingConfig,
    pad_id: int,
    mask_id: int,
    uncond_prefixes: list[torch.Tensor] | None = None,
) -> torch.Tensor:
    """Content ids `[B, N]` of the output in `config.steps` parallel steps (MaskGIT).

    The prefix's keys and values are computed once; each step runs only the output region, samples every
    masked position, and keeps the most confident (log-probability plus annealed Gumbel noise) so that
    `N * cos(pi/2 * (s+1)/S)` stay masked after step s. Tokens once kept are never changed."""
    if config.compile:
        compile_backbone(model, config.compile_backend)
    device, batch, generator = next(model.parameters()).device, len(prefixes), torch.Generator().manual_seed(config.seed)
    cache, pads, positions = _prefill(model, prefixes, uncond_prefixes, config, pad_id)
    rows, width = positions.shape

    n = layout.content_length
    content = torch.full((batch, n), mask_id, dtype=torch.long)
    slots = layout.content_positions()
    region_len = n + 2 * len(layout.blocks) + 1
    key_valid = torch.cat([torch.arange(width)[None, :] >= pads[:, None], torch.ones(rows, region_len, dtype=torch.bool)], dim=1)
    region_mask = key_valid[:, None, None, :].expand(rows, 1, region_len, width + region_len)
    region_pos = positions[:, -1:] + 1 + torch.arange(region_len)[None, :]
    padded = bool(pads.any())
    for step in range(config.steps):
        region = layout.full_ids(content).repeat(rows // batch, 1)
        inputs = dict(input_ids=region.to(device), position_ids=region_pos.to(device), cache=cache, use_cache=True)
        if padded:  # left padding must stay invisible: an explicit mask
            hidden = _hidden(model, attention_mask=region_mask.to(device), **inputs)[:, slots]
        else:  # every key is real and the output sees all of them
            with bidirectional_attention(model) as extra:
                hidden = _hidden(model, **inputs, **extra)[:, slots]
        cache.crop(-region_len)  # keep only the prefix
        unknown = content == mask_id
        sampled, logp = content.clone(), torch.zeros(batch, n)
        start = 0
        for block in layout.blocks:  # one vocabulary slice per block
            end = start + len(block)
            base, top = int(block.lo.min()), int(block.hi.max())
            idx, valid = _masked_slots(unknown[:, start:end])
            if idx.shape[1]:
                rows_idx = idx.repeat(rows // batch, 1).to(hidden.device)
                h = hidden[:, start:end].gather(1, rows_idx[..., None].expand(-1, -1, hidden.shape[-1]))
                logits = _guide(_head(model, h, base, top), batch, config.cfg_scale)
                filtered = _filter_logits(logits, (block.lo - base)[idx], (block.hi - base)[idx], config)
                drawn = _draw(filtered, config, generator)
                got = filtered.log_softmax(-1).gather(-1, drawn[..., None]).squeeze(-1)
                span = sampled[:, start:end]
                span.scatter_(1, idx, torch.where(valid, drawn + base, span.gather(1, idx)))
                logp[:, start:end].scatter_(1, idx, torch.where(valid, got, 0.0))
            start = end
        remaining = math.floor(n * math.cos(math.pi / 2 * (step + 1) / config.steps))
        if step == config.steps - 1 or remaining == 0:
            content = sampled
            break
        anneal = config.choice_temperature * (1 - (step + 1) / config.steps)
        u = torch.rand(logp.shape, generator=generator).clamp(1e-20, 1)
        confidence = logp + anneal * -torch.log(-torch.log(u))
        confidence = confidence.masked_fill(~unknown, float("inf"))  # fixed tokens stay
        keep_masked = confidence.argsort(dim=-1)[:, :remaining]
        content = sampled.scatter(1, keep_masked, mask_id)
    return content
