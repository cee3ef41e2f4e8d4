"""The sequence format both the data side (task builder) and the model side (masks, samplers) agree on.

A task sequence is `<bos> <task> prefix output <eos>` (docs/design.md, "Sequence format"); the model reads
it in one of three attention modes, and a sampler fills the output's blocks. These definitions sit below
both `videopoet.data` and `videopoet.llm`, so neither imports the other for them.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

CAUSAL, PREFIX, MASKGIT = 0, 1, 2
MODES = {"causal": CAUSAL, "prefix": PREFIX, "ar": PREFIX, "maskgit": MASKGIT}


def mode_id(mode: str | int) -> int:
    """The integer code of a mode name ('causal', 'prefix'/'ar', 'maskgit')."""
    if isinstance(mode, int):
        if mode not in (CAUSAL, PREFIX, MASKGIT):
            raise ValueError(f"unknown attention mode {mode}")
        return mode
    try:
        return MODES[mode]
    except KeyError:
        raise ValueError(f"unknown attention mode {mode!r}; use one of {', '.join(MODES)}") from None


@dataclass
class OutputBlock:
    """One output block: `<open> content <close>`, content position i drawn from [lo[i], hi[i])."""

    open_id: int
    close_id: int
    lo: torch.Tensor  # [n] int64
    hi: torch.Tensor  # [n] int64

    def __len__(self) -> int:
        return len(self.lo)


@dataclass
class OutputLayout:
    """The output of a task: its blocks, then `<eos>`."""

    blocks: list[OutputBlock]
    eos_id: int

    @property
    def content_length(self) -> int:
        return sum(len(b) for b in self.blocks)

    def full_ids(self, content: torch.Tensor) -> torch.Tensor:
        """Markers around each block's content, then eos: the output region of the sequence `[B, L]`."""
        parts, start = [], 0
        b = content.shape[0]
        for block in self.blocks:
            parts += [torch.full((b, 1), block.open_id), content[:, start : start + len(block)], torch.full((b, 1), block.close_id)]
            start += len(block)
        parts.append(torch.full((b, 1), self.eos_id))
        return torch.cat([p.to(content) for p in parts], dim=1)

    def content_positions(self) -> torch.Tensor:
        """Indices of the content tokens within `full_ids`."""
        idx, pos = [], 0
        for block in self.blocks:
            idx.append(torch.arange(pos + 1, pos + 1 + len(block)))
            pos += len(block) + 2
        return torch.cat(idx)

    def ranges(self) -> tuple[torch.Tensor, torch.Tensor]:
        return torch.cat([b.lo for b in self.blocks]), torch.cat([b.hi for b in self.blocks])
