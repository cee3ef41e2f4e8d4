"""Pretokenize: clip index -> token records with small random tokenizers; shards, merge, resume."""

from __future__ import annotations

from pathlib import Path

import datasets
import numpy as np
import pytest

from videopoet.data.ingest import IngestConfig, ingest
from videopoet.data.loader import load_token_records
from videopoet.data.pretokenize import PretokenizeError, pretokenize
from videopoet.data.shapes_dataset import write_shapes_dataset
from videopoet.data.synthetic import ShapesConfig
from videopoet.tokenizers.checkpoint import save_tokenizer
from videopoet.tokenizers.text import TextTokenizerConfig, train_text_tokenizer


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    import torch

    from videopoet.tokenizers.audio.model import AudioTokenizer, preset
    from videopoet.tokenizers.video.model import VideoTokenizer
    from videopoet.tokenizers.video.model import preset as video_preset

    root = tmp_path_factory.mktemp("pretok")
    shapes = write_shapes_dataset(root / "shapes", num_clips=5, seed=0, config=ShapesConfig(size=32, frames=9), progress=False)
    ingest(shapes, root / "index", IngestConfig(frames=9, fps=8.0), progress=False)
    torch.manual_seed(0)
    video = VideoTokenizer(video_preset("tiny", channels=8, norm_groups=4, frames=9, height=32, width=32)).eval()
    save_tokenizer(root / "video", video, "video")
    save_tokenizer(root / "audio", AudioTokenizer(preset("tiny")).eval(), "audio")
    train_text_tokenizer(shapes / "metadata.jsonl", root / "text", TextTokenizerConfig(vocab_size=300, model_type="bpe"))
    return {"root": root, "index": root / "index", "video": root / "video", "audio": root / "audio", "text": root / "text"}


def run(setup: dict[str, Path], out: Path, **kw) -> dict:
    return pretokenize(setup["index"], out, setup["video"], setup["text"], setup["audio"], batch_size=2, num_workers=0, progress=False, **kw)


def test_records_and_vocab(setup: dict[str, Path], tmp_path: Path) -> None:
    report = run(setup, tmp_path / "tok")
    assert report["merged"] and report["clips"] == 5
    records, vocab = load_token_records(tmp_path / "tok")
    assert len(records) == 5 and vocab.video_bits == 10 and vocab.audio_levels == 2
    for r in records:
        assert r["video_shape"] == [3, 4, 4] and len(r["video_ids"]) == 48
        assert max(r["video_ids"]) < 2**10 and r["has_audio"]
        levels, frames = r["audio_shape"]
        assert levels == 2 and len(r["audio_ids"]) == levels * frames and max(r["audio_ids"]) < 256
        assert r["text_ids"] and r["caption"] and r["height"] == 32 and r["split"] in ("train", "val", "heldout")


def test_shards_merge_and_resume(setup: dict[str, Path], tmp_path: Path) -> None:
    out = tmp_path / "tok"
    first = run(setup, out, shard="0/2")
    assert not first["merged"] and not (out / "records").exists()
    second = run(setup, out, shard="1/2")
    assert second["merged"] and first["clips"] + second["clips"] == 5
    again = run(setup, out, shard="1/2")
    assert again["tokenized_now"] == 0 and again["merged"]
    whole = run(setup, tmp_path / "whole")
    assert whole["merged"]
    a = sorted(datasets.load_from_disk(str(out / "records"))["clip_id"])
    b = sorted(datasets.load_from_disk(str(tmp_path / "whole" / "records"))["clip_id"])
    assert a == b
    ids = {r["clip_id"]: r["video_ids"] for r in datasets.load_from_disk(str(out / "records"))}
    for r in datasets.load_from_disk(str(tmp_path / "whole" / "records")):
        assert np.array_equal(ids[r["clip_id"]], r["video_ids"])  # sharding does not change tokens


def test_bad_options(setup: dict[str, Path], tmp_path: Path) -> None:
    with pytest.raises(PretokenizeError, match="I/N"):
        run(setup, tmp_path / "x", shard="3")
    with pytest.raises(PretokenizeError, match=r"\[0, N\)"):
        run(setup, tmp_path / "x", shard="2/2")


def test_command_line(setup: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from videopoet.cli import main

    args = ["tokenize", "--data", str(setup["index"]), "--video-tokenizer", str(setup["video"]), "--text-tokenizer", str(setup["text"]),
            "--audio-tokenizer", str(setup["audio"]), "--out", str(tmp_path / "tok"), "--num-workers", "0"]
    assert main(args) == 0
    assert "5 clips" in capsys.readouterr().out and (tmp_path / "tok" / "records").is_dir()
    assert main([*args[:-4], "--out", str(tmp_path / "tok2"), "--shard", "x"]) == 2
    assert "--shard must be I/N" in capsys.readouterr().err
