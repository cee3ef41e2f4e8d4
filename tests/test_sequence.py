"""The sequence format shared by the task builder and the samplers: attention modes and output layouts."""

from __future__ import annotations

import pytest
import torch

from videopoet.sequence import CAUSAL, MASKGIT, PREFIX, OutputBlock, OutputLayout, mode_id


def test_mode_names() -> None:
    assert mode_id("ar") == mode_id("prefix") == PREFIX and mode_id("maskgit") == MASKGIT and mode_id("causal") == CAUSAL
    assert mode_id(MASKGIT) == MASKGIT
    with pytest.raises(ValueError, match="unknown attention mode 'sideways'"):
        mode_id("sideways")
    with pytest.raises(ValueError):
        mode_id(7)


def test_output_layout_places_markers_around_each_block() -> None:
    video = OutputBlock(10, 11, torch.full((3,), 100), torch.full((3,), 200))
    audio = OutputBlock(12, 13, torch.tensor([300, 300, 400, 400]), torch.tensor([400, 400, 500, 500]))
    layout = OutputLayout([video, audio], eos_id=2)
    content = torch.tensor([[101, 102, 103, 301, 302, 401, 402]])
    assert layout.content_length == 7
    assert layout.full_ids(content)[0].tolist() == [10, 101, 102, 103, 11, 12, 301, 302, 401, 402, 13, 2]
    assert layout.full_ids(content)[0, layout.content_positions()].tolist() == content[0].tolist()
    lo, hi = layout.ranges()
    assert lo.tolist() == [100, 100, 100, 300, 300, 400, 400] and hi.tolist() == [200, 200, 200, 400, 400, 500, 500]
