"""Clip index -> token records: `videopoet tokenize --data DS --video-tokenizer DIR --text-tokenizer DIR
[--audio-tokenizer DIR] --out TOK [--batch-size B --num-workers W --shard I/N]`.

Clips are decoded in DataLoader workers and tokenized in batches. Output folder `TOK`:

- `shards/shard-IIIII-of-NNNNN/part-PPPPP/`: token records of one part (a `datasets` folder), written
  whole and renamed into place, so an interrupted run resumes at the first missing part;
  `shard-IIIII-of-NNNNN/done` marks a finished shard;
- `records/`: all shards merged (`datasets.concatenate_datasets`) once every shard is done; this is what
  the LLM trains on (`videopoet train --data TOK`);
- `vocab.json` (the shared vocabulary the three tokenizers define) and `tokenizers.json` (their folders).

A record: clip_id, split, caption, height, width (pixels), text_ids (local SentencePiece ids, empty
without a caption), video_ids (int32, flat, (t, h, w) order) with video_shape, audio_ids (int32, flat,
level after level) with audio_shape `[levels, frames]` (`[0, 0]` and has_audio false without audio).

`--shard I/N` lets each rank of a `torchrun` or `deepspeed` launch take clips I, I+N, I+2N, ... (under
a launcher without `--shard`, RANK/WORLD_SIZE choose it); the last shard to finish merges them.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset
from tqdm.auto import tqdm

from videopoet import media as io
from videopoet.data.ingest import load_clip_index
from videopoet.errors import UserError
from videopoet.runs import atomic_write_json, replace_dir
from videopoet.vocab import SharedVocab

PART_SIZE = 256  # clips per resumable part


class PretokenizeError(UserError):
    """Options or inputs pretokenizing cannot work with."""


@dataclass
class Shard:
    index: int
    count: int

    @classmethod
    def parse(cls, text: str | None) -> Shard:
        """`I/N`, or RANK/WORLD_SIZE under a launcher, or 0/1."""
        if text is None:
            return cls(int(os.environ.get("RANK", 0)), int(os.environ.get("WORLD_SIZE", 1)))
        try:
            i, n = (int(x) for x in text.split("/"))
        except ValueError:
            raise PretokenizeError(f"--shard must be I/N (e.g. 0/4), got {text!r}") from None
        if not 0 <= i < n:
            raise PretokenizeError(f"--shard {text}: I must be in [0, N)")
        return cls(i, n)

    @property
    def name(self) -> str:
        return f"shard-{self.index:05d}-of-{self.count:05d}"


class _Clips(Dataset):
    """Decodes clip rows (frames and audio) in DataLoader workers."""

    def __init__(self, rows: list[dict[str, Any]], sample_rate: int | None) -> None:
        self.rows, self.sample_rate = rows, sample_rate

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, i: int) -> dict[str, Any]:
        row = self.rows[i]
        frames = io.read_clip(row["source"], row["start_s"], row["num_frames"], row["fps"],
                              size=(row["height"], row["width"]), pad=True)
        audio = None
        if row["has_audio"] and self.sample_rate:
            try:
                audio = io.read_audio(row["source"], row["start_s"], row["num_frames"] / row["fps"], self.sample_rate, pad=True)
            except io.NoAudioStreamError:
                audio = None
        return {"row": row, "frames": frames, "audio": audio}


def _collate(items: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return items


def load_tokenizers(video: str | Path, text: str | Path, audio: str | Path | None, device: str = "cpu"):
    """The three tokenizers from their folders, and the shared vocabulary they define."""
    from videopoet.tokenizers.checkpoint import load_tokenizer
    from videopoet.tokenizers.text import TextTokenizer

    video_tok = load_tokenizer(video, "video", device)
    audio_tok = load_tokenizer(audio, "audio", device) if audio is not None else None
    text_tok = TextTokenizer.load(text)
    shares = {"audio_levels": 0, "audio_codebook_size": 0, **video_tok.vocab_share()}  # no audio: an empty block
    if audio_tok is not None:
        shares.update(audio_tok.vocab_share())
    vocab = SharedVocab(text_size=text_tok.vocab_size, **shares)
    return video_tok, audio_tok, text_tok, vocab


def _tokenize_batch(items: list[dict[str, Any]], video_tok, audio_tok, text_tok) -> list[dict[str, Any]]:
    by_shape: dict[tuple, list[int]] = {}
    for i, item in enumerate(items):
        by_shape.setdefault(item["frames"].shape, []).append(i)
    video_ids: list[np.ndarray | None] = [None] * len(items)
    for _, idx in by_shape.items():  # clips of one size encode together
        ids = video_tok.encode_frames(np.stack([items[i]["frames"] for i in idx]))
        for j, i in enumerate(idx):
            video_ids[i] = ids[j].numpy().astype(np.int32)
    audio_ids: list[np.ndarray | None] = [None] * len(items)
    with_audio = [i for i, item in enumerate(items) if item["audio"] is not None]
    if audio_tok is not None and with_audio:
        codes = audio_tok.encode_waveforms(np.stack([items[i]["audio"] for i in with_audio]))
        for j, i in enumerate(with_audio):
            audio_ids[i] = codes[j].astype(np.int32)
    records = []
    for item, v, a in zip(items, video_ids, audio_ids):
        row = item["row"]
        caption = row.get("caption") or ""
        records.append({
            "clip_id": row["clip_id"],
            "split": row.get("split") or "train",
            "caption": caption,
            "height": int(row["height"]),
            "width": int(row["width"]),
            "text_ids": text_tok.encode(caption) if caption else [],
            "video_ids": v.reshape(-1).tolist(),
            "video_shape": list(v.shape),
            "audio_ids": a.reshape(-1).tolist() if a is not None else [],
            "audio_shape": list(a.shape) if a is not None else [0, 0],
            "has_audio": a is not None,
        })
    return records


CLIP_FILE = "clip.json"  # the clip geometry the records were made at (geometry.ClipConfig's fields)


def clip_geometry(index: Any, video_tok: Any, audio_tok: Any) -> dict[str, Any]:
    """The geometry of the clips behind the records: frames and fps of the clip index (one value for all
    rows), the video tokenizer's frame size, the audio tokenizer's sample rate."""
    rates = set(index.unique("fps")) if len(index) else set()
    lengths = set(index.unique("num_frames")) if len(index) else set()
    if len(rates) > 1 or len(lengths) > 1:
        raise PretokenizeError(f"the clip index mixes clip geometries (fps {sorted(rates)}, frames {sorted(lengths)}); ingest it with one --fps and --frames")
    geometry = video_tok.geometry()
    return {
        "frames": int(next(iter(lengths), geometry["frames"])),
        "fps": float(next(iter(rates), 0.0)) or None,
        "height": int(geometry["height"]),
        "width": int(geometry["width"]),
        "sample_rate": int(audio_tok.geometry()["sample_rate"]) if audio_tok is not None else None,
    }


def pretokenize(
    data: str | Path,
    out: str | Path,
    video_tokenizer: str | Path,
    text_tokenizer: str | Path,
    audio_tokenizer: str | Path | None = None,
    batch_size: int = 8,
    num_workers: int = 1,
    shard: str | None = None,
    progress: bool = True,
) -> dict[str, Any]:
    """Tokenize this shard of the clip index `data` into `out`; merge when every shard is done."""
    import datasets

    out = Path(out)
    shard_ = Shard.parse(shard)
    if batch_size < 1 or num_workers < 0:
        raise PretokenizeError("--batch-size must be at least 1 and --num-workers at least 0")
    index = load_clip_index(data)
    video_tok, audio_tok, text_tok, vocab = load_tokenizers(video_tokenizer, text_tokenizer, audio_tokenizer)
    out.mkdir(parents=True, exist_ok=True)
    vocab_file = out / "vocab.json"
    if vocab_file.is_file():
        SharedVocab.load(vocab_file).check_same(vocab, what="existing token records")
    elif shard_.index == 0:
        vocab.save(vocab_file)
    (out / "tokenizers.json").write_text(json.dumps({
        "video": str(Path(video_tokenizer).resolve()),
        "audio": str(Path(audio_tokenizer).resolve()) if audio_tokenizer else None,
        "text": str(Path(text_tokenizer).resolve()),
    }, indent=2) + "\n")
    atomic_write_json(out / CLIP_FILE, clip_geometry(index, video_tok, audio_tok))

    mine = list(range(shard_.index, len(index), shard_.count))
    shard_dir = out / "shards" / shard_.name
    parts = [mine[i : i + PART_SIZE] for i in range(0, len(mine), PART_SIZE)]
    todo = [(p, rows) for p, rows in enumerate(parts) if not (shard_dir / f"part-{p:05d}").is_dir()]
    sample_rate = audio_tok.sample_rate if audio_tok is not None else None
    bar = tqdm(total=len(mine), initial=len(mine) - sum(len(r) for _, r in todo), unit="clip", desc=f"tokenize {shard_.name}", disable=not progress)
    started, done_now = time.perf_counter(), 0
    for p, rows in todo:
        clips = _Clips([index[i] for i in rows], sample_rate)
        loader = DataLoader(clips, batch_size=batch_size, num_workers=num_workers, collate_fn=_collate)
        records = []
        with torch.inference_mode():
            for items in loader:
                records += _tokenize_batch(items, video_tok, audio_tok, text_tok)
                bar.update(len(items))
                done_now += len(items)
                bar.set_postfix(clips_per_s=f"{done_now / (time.perf_counter() - started):.2f}")
        tmp = shard_dir / f".part-{p:05d}.tmp"
        shutil.rmtree(tmp, ignore_errors=True)
        datasets.Dataset.from_list(records).save_to_disk(str(tmp))
        replace_dir(tmp, shard_dir / f"part-{p:05d}")
    bar.close()
    shard_dir.mkdir(parents=True, exist_ok=True)
    (shard_dir / "done").write_text("")
    merged = merge_shards(out, shard_.count)
    return {
        "shard": shard_.name,
        "clips": len(mine),
        "tokenized_now": done_now,
        "seconds": time.perf_counter() - started,
        "clips_per_s": done_now / max(time.perf_counter() - started, 1e-9),
        "merged": merged,
    }


def merge_shards(out: str | Path, count: int) -> bool:
    """Merge the shards into `out/records` when all `count` are done (shard after shard; the training
    loader shuffles)."""
    import datasets

    out = Path(out)
    shards = [out / "shards" / Shard(i, count).name for i in range(count)]
    if not all((s / "done").is_file() for s in shards):
        return False
    tables = []
    for s in shards:
        parts = sorted(p for p in s.glob("part-*") if p.is_dir())
        tables += [datasets.load_from_disk(str(p)) for p in parts]
    if not tables:
        raise PretokenizeError(f"the clip index behind {out} has no clips")
    merged = datasets.concatenate_datasets(tables)
    tmp = out / ".records.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    merged.save_to_disk(str(tmp))
    replace_dir(tmp, out / "records")
    return True
