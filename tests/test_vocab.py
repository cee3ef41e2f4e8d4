"""The shared vocabulary: layout, conversions with range checks, persistence and mismatch errors."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from videopoet.vocab import SPECIAL_SLOTS, SPECIAL_TOKENS, TASKS, SharedVocab, VocabError

PAPER = SharedVocab(text_size=32000, video_bits=18, audio_levels=4, audio_codebook_size=1024)
TINY = SharedVocab(text_size=500, video_bits=10, audio_levels=2, audio_codebook_size=256)


def test_layout_in_design_order() -> None:
    v = PAPER
    assert v.special_range == (0, SPECIAL_SLOTS)
    assert v.text_range == (256, 256 + 32000)
    assert v.video_range == (32256, 32256 + 2**18)
    assert v.audio_range(0) == (32256 + 2**18, 32256 + 2**18 + 1024)
    assert v.audio_range(3).stop == v.size == 256 + 32000 + 262144 + 4096
    assert v.padded_size(128) % 128 == 0 and 0 <= v.padded_size(128) - v.size < 128
    for level in range(3):
        assert v.audio_range(level).stop == v.audio_range(level + 1).start


def test_special_tokens() -> None:
    assert [TINY.token_id(t) for t in ("<pad>", "<bos>", "<eos>", "<mask>")] == [0, 1, 2, 3]
    ids = {TINY.task_id(t) for t in TASKS}
    assert len(ids) == len(TASKS) == 10
    for name in ("<bot_i>", "<eot_i>", "<bov_i>", "<eov_i>", "<boa_i>", "<eoa_i>", "<bov_o>", "<eov_o>", "<boa_o>", "<eoa_o>"):
        assert TINY.special_name(TINY.token_id(name)) == name
    assert TINY.special_name(255) == "<reserved_255>"
    assert len(set(SPECIAL_TOKENS)) == len(SPECIAL_TOKENS)
    with pytest.raises(VocabError, match="unknown task"):
        TINY.task_id("text_to_poem")
    with pytest.raises(VocabError, match="unknown special token"):
        TINY.token_id("<nope>")


def test_resolution_tokens() -> None:
    square = TINY.resolution_ids(64, 64)
    assert square == (TINY.token_id("<aspect_1:1>"), TINY.token_id("<short_64>"))
    portrait = TINY.resolution_ids(224, 128)
    assert portrait[0] == TINY.token_id("<aspect_7:4>") and portrait[1] == TINY.token_id("<short_128>")


@pytest.mark.parametrize("kind", ["list", "numpy", "torch", "int"])
def test_round_trips_keep_container(kind: str) -> None:
    raw = [0, 5, 1023]
    x = {"list": raw, "numpy": np.array(raw), "torch": torch.tensor(raw), "int": 1023}[kind]
    g = TINY.video_to_global(x)
    assert type(g) is type(x)
    back = TINY.global_to_video(g)
    assert np.array_equal(np.asarray(back), np.asarray(x))
    assert all(TINY.modality_of(int(i)) == "video" for i in np.atleast_1d(np.asarray(g)))
    t = TINY.text_to_global(np.array([0, 499]))
    assert list(TINY.global_to_text(t)) == [0, 499] and TINY.modality_of(int(t[0])) == "text"


def test_audio_levels_disjoint() -> None:
    codes = np.array([[0, 255, 7], [0, 255, 7]])
    g = TINY.audio_to_global(codes)
    assert g[0].tolist() != g[1].tolist()
    for level in range(2):
        assert all(int(i) in TINY.audio_range(level) for i in g[level])
    assert np.array_equal(TINY.global_to_audio(g), codes)
    gt = TINY.audio_to_global(torch.tensor(codes)[None])  # batched [B, levels, frames]
    assert torch.equal(gt[0], torch.tensor(g))
    assert TINY.audio_to_global([3], level=1) == [TINY.audio_range(1).start + 3]
    with pytest.raises(VocabError, match="levels"):
        TINY.audio_to_global(np.zeros((3, 4), dtype=np.int64))
    with pytest.raises(VocabError, match="outside"):
        TINY.global_to_audio(g[::-1].copy())  # level 1 ids in row 0


def test_range_checks() -> None:
    with pytest.raises(VocabError, match=r"video id 1024 is outside \[0, 1024\)"):
        TINY.video_to_global([1, 1024])
    with pytest.raises(VocabError, match="text id -1"):
        TINY.text_to_global(torch.tensor([-1]))
    with pytest.raises(VocabError, match="global text"):
        TINY.global_to_text([TINY.video_range.start])
    with pytest.raises(VocabError, match="audio level 2"):
        TINY.audio_range(2)
    assert TINY.modality_of(TINY.size + 3) == "padding"


def test_save_load_and_mismatch(tmp_path: Path) -> None:
    path = tmp_path / "vocab.json"
    TINY.save(path)
    assert SharedVocab.load(path) == TINY
    SharedVocab.load(path).check_same(TINY)
    other = SharedVocab(text_size=600, video_bits=10, audio_levels=3, audio_codebook_size=256)
    with pytest.raises(VocabError, match=r"text_size 600 vs 500.*audio_levels 3 vs 2"):
        TINY.check_same(other)
    with pytest.raises(VocabError, match="not found"):
        SharedVocab.load(tmp_path / "missing.json")
    (tmp_path / "bad.json").write_text("{not json")
    with pytest.raises(VocabError, match="cannot read"):
        SharedVocab.load(tmp_path / "bad.json")
    data = TINY.to_dict()
    data["special_tokens"][1] = "<start>"
    import json

    (tmp_path / "old.json").write_text(json.dumps(data))
    with pytest.raises(VocabError, match="slot 1: '<start>' vs '<bos>'"):
        SharedVocab.load(tmp_path / "old.json")
