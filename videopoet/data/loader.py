"""A distributed, stateful, deterministic loader of task sequences for LLM training.

Each epoch has a plan that depends only on (seed, epoch, batch size), never on the number of ranks: a
seeded order of the records, a task, mode and caption-dropout draw for each (and a seed for its masking),
and the samples grouped into micro-batches of similar length (VideoPoet groups tasks by length, so
batches carry little padding), or, with `pack_length`, packed several to a row (`data.packing`). The plans of epochs 0, 1, 2, ... make one stream of micro-batches; global
step k on W ranks takes stream items k*W .. k*W+W-1, rank r the r-th. A global step may straddle two
epochs, so no micro-batch is ever left out and all ranks always take a step together.

The state is (epoch, micro-batches of that epoch consumed by all ranks). A resumed run continues at
exactly that point, so it sees the samples an uninterrupted run would, none twice and none skipped, with
any number of DataLoader workers (worker w of n builds every n-th micro-batch of its rank from the plan;
the DataLoader hands them out in order). Resuming on another number of ranks keeps the guarantee: the
stream is the same and the new ranks split what is left of it. What changes is which rank builds which
micro-batch, the number of samples per global step (W x batch size), and so the step count per epoch.
The batch size, seed and pack length must stay the same (`load_state_dict` refuses others: the plan would
differ).
"""

from __future__ import annotations

import zlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader, IterableDataset, get_worker_info

from videopoet.data.packing import collate_packed, pack_rows
from videopoet.data.tasks import (
    GROUP_WINDOW,
    RecordInfo,
    TaskBuilder,
    TaskConfig,
    TaskSequence,
    collate,
    group_by_length,
    record_info,
)
from videopoet.errors import UserError
from videopoet.vocab import SharedVocab


class DataError(UserError):
    """Token records that are missing or too few for the run."""


@dataclass(frozen=True)
class Sample:
    index: int  # record index
    task: str
    mode: int
    drop_caption: bool
    seed: int


MicroBatch = list[Sample] | list[list[Sample]]  # one sample per row, or packed rows of samples


def plan_epoch(
    infos: Sequence[RecordInfo],
    builder: TaskBuilder,
    batch_size: int,
    seed: int,
    epoch: int,
    maskgit_ratio: float,
    shuffle: bool = True,
    pack_length: int = 0,
) -> list[MicroBatch]:
    """The epoch's micro-batches: every record once, with its task and mode, grouped by length (a list of
    samples per micro-batch) or packed into rows of up to `pack_length` tokens (a list of rows)."""
    rng = np.random.default_rng([seed, epoch])
    order = rng.permutation(len(infos)) if shuffle else np.arange(len(infos))
    samples, lengths = [], []
    for i in order:
        info = infos[int(i)]
        task, mode, drop = builder.draw(info, rng, maskgit_ratio)
        samples.append(Sample(int(i), task, mode, drop, int(rng.integers(2**62))))
        lengths.append(builder.length(info, task, drop))
    if pack_length:
        packed = pack_rows(lengths, pack_length, batch_size, rng if shuffle else None, GROUP_WINDOW)
        return [[[samples[j] for j in row] for row in rows] for rows in packed]
    groups = group_by_length(lengths, batch_size, rng if shuffle else None, GROUP_WINDOW)
    return [[samples[j] for j in group] for group in groups]


class _MicroBatches(IterableDataset):
    """Micro-batches `start + rank + k * world` of each epoch's plan; worker w builds every W-th of them
    and the DataLoader interleaves workers in order, so the stream is the same for any worker count."""

    def __init__(self, loader: TaskLoader, epoch: int, start: int) -> None:
        self.loader, self.epoch, self.start = loader, epoch, start

    def __iter__(self) -> Iterator[tuple[int, int, dict[str, Any]]]:
        info = get_worker_info()
        workers, wid = (info.num_workers, info.id) if info else (1, 0)
        if info:
            torch.set_num_threads(1)
        L = self.loader
        epoch, pos = self.epoch, self.start + L.rank  # stream position of this rank's next micro-batch
        k = 0  # micro-batches of this rank so far; worker k % workers builds the k-th
        while True:
            plan = L.plan(epoch)
            if pos >= len(plan):
                if not L.repeat or not plan:
                    return
                epoch, pos = epoch + 1, pos - len(plan)
                continue
            if k % workers == wid:
                yield epoch, pos, L.build_batch(plan[pos])
            k += 1
            pos += L.world_size


class TaskLoader:
    """Iterates collated micro-batches of this rank forever (or one epoch when repeat=False)."""

    def __init__(
        self,
        records: Any,
        builder: TaskBuilder,
        batch_size: int,
        rank: int = 0,
        world_size: int = 1,
        seed: int = 0,
        maskgit_ratio: float = 0.5,
        num_workers: int = 0,
        shuffle: bool = True,
        repeat: bool = True,
        pack_length: int = 0,
        pin_memory: bool = False,
    ) -> None:
        self.records, self.builder = records, builder
        self.batch_size, self.rank, self.world_size, self.seed = batch_size, rank, world_size, seed
        self.maskgit_ratio, self.num_workers, self.shuffle, self.repeat = maskgit_ratio, num_workers, shuffle, repeat
        self.pack_length = pack_length  # 0: one sequence per row; else rows packed up to this many tokens
        self.pin_memory = pin_memory  # page-locked batches (for a CUDA device: asynchronous copies)
        self.infos = [record_info(r) for r in _iter_rows(records, _INFO_COLUMNS)]
        self.epoch, self.consumed = 0, 0  # micro-batches of the epoch consumed by all ranks
        self._plans: dict[int, list[MicroBatch]] = {}

    def plan(self, epoch: int) -> list[MicroBatch]:
        """The micro-batches of ``epoch`` (`plan_epoch`), cached."""
        if epoch not in self._plans:
            # keep the previous epoch's plan too: a global step may straddle two epochs
            self._plans = {e: p for e, p in self._plans.items() if e == epoch - 1}
            self._plans[epoch] = plan_epoch(
                self.infos, self.builder, self.batch_size, self.seed, epoch, self.maskgit_ratio, self.shuffle, self.pack_length
            )
        return self._plans[epoch]

    def build_batch(self, batch: MicroBatch) -> dict[str, Any]:
        pad_id = self.builder.vocab.token_id("<pad>")
        if self.pack_length:
            return collate_packed([[self.sequence(s) for s in row] for row in batch], pad_id)
        return collate([self.sequence(s) for s in batch], pad_id=pad_id)

    def sequence(self, s: Sample) -> TaskSequence:
        """The task sequence of one planned sample."""
        return self.builder.build(self.records[s.index], s.task, s.mode, np.random.default_rng(s.seed), s.drop_caption)

    def samples(self, batch: MicroBatch) -> list[Sample]:
        """The samples of a micro-batch, packed or not."""
        return [s for row in batch for s in row] if self.pack_length else list(batch)

    def typical_length(self) -> int:
        """Mean sequence (document) length of the first epoch's plan (for FLOPs estimates)."""
        plan = self.plan(0)
        lengths = [self.builder.length(self.infos[s.index], s.task, s.drop_caption) for b in plan for s in self.samples(b)]
        return int(np.mean(lengths)) if lengths else 1

    def __iter__(self) -> Iterator[dict[str, Any]]:
        dataset = _MicroBatches(self, self.epoch, self.consumed)
        stream = DataLoader(dataset, batch_size=None, num_workers=self.num_workers,
                            prefetch_factor=2 if self.num_workers else None, pin_memory=self.pin_memory,
                            generator=torch.Generator().manual_seed(self.seed))
        for epoch, pos, batch in stream:
            # after this micro-batch, all ranks have consumed the whole global step it belongs to
            self.epoch, self.consumed = self._normalized(epoch, pos - self.rank + self.world_size)
            yield batch

    def _normalized(self, epoch: int, consumed: int) -> tuple[int, int]:
        """(epoch, consumed) with ``consumed`` inside the epoch (a step may run into the next one)."""
        while consumed >= len(self.plan(epoch)) > 0:
            consumed -= len(self.plan(epoch))
            epoch += 1
        return epoch, consumed

    def fixed_batches(self, count: int) -> Iterator[dict[str, Any]]:
        """The first `count` micro-batches of this rank in epoch 0, the same every call (for validation)."""
        plan = self.plan(0)
        for pos in list(range(self.rank, len(plan), self.world_size))[:count]:
            yield self.build_batch(plan[pos])

    def state_dict(self) -> dict[str, Any]:
        return {"epoch": self.epoch, "consumed": self.consumed, "seed": self.seed, "batch_size": self.batch_size,
                "world_size": self.world_size, "pack_length": self.pack_length}

    def load_state_dict(self, state: dict[str, Any], saved_world_size: int | None = None) -> None:
        """Continue where `state` stopped; the plan is the same on any number of ranks."""
        if state["seed"] != self.seed or state["batch_size"] != self.batch_size or state.get("pack_length", 0) != self.pack_length:
            raise ValueError("the loader state was saved with another seed, batch size or pack length; the sample order would differ")
        self.epoch, self.consumed = self._normalized(int(state["epoch"]), int(state["consumed"]))

    def batches_per_epoch(self) -> float:
        """Global steps per epoch (on average: a step may straddle two epochs)."""
        return len(self.plan(self.epoch)) / self.world_size


_INFO_COLUMNS = ("text_ids", "video_shape", "audio_shape", "has_audio", "height", "width")


def _iter_rows(records: Any, columns: Sequence[str]) -> Iterator[dict[str, Any]]:
    """Rows with only the columns planning needs (cheap on a `datasets.Dataset`); the audio ids too
    when no ``audio_shape`` column gives their shape."""
    if hasattr(records, "select_columns"):
        present = [c for c in columns if c in records.column_names]
        if "audio_shape" not in present and "audio_ids" in records.column_names:
            present.append("audio_ids")
        yield from records.select_columns(present)
    else:
        yield from records


RECORDS_DIR = "records"
_VAL_SPLITS = ("val", "validation")
VOCAB_FILE = "vocab.json"


def load_token_records(path: str | Path) -> tuple[Any, SharedVocab]:
    """The token records dataset of `videopoet tokenize --out PATH` and its shared vocabulary."""
    import datasets

    path = Path(path)
    if not (path / RECORDS_DIR).is_dir() or not (path / VOCAB_FILE).is_file():
        raise DataError(
            f"{path} holds no token records (it needs {RECORDS_DIR}/ and {VOCAB_FILE}); make them with `videopoet tokenize`"
        )
    return datasets.load_from_disk(str(path / RECORDS_DIR)), SharedVocab.load(path / VOCAB_FILE)


def is_validation(clip_id: str, fraction: float) -> bool:
    """A stable split by clip id: the same records are held out on every run and rank."""
    return zlib.crc32(clip_id.encode("utf-8")) % 10_000 < fraction * 10_000


def build_train_and_val_loaders(
    data: str | Path,
    task_config: TaskConfig,
    batch_size: int,
    rank: int,
    world_size: int,
    seed: int,
    val_fraction: float,
    maskgit_ratio: float,
    num_workers: int = 0,
    pack_length: int = 0,
    pin_memory: bool = False,
) -> tuple[SharedVocab, TaskLoader, TaskLoader]:
    """Loaders over the train and validation records of a token records folder.

    Records with a ``split`` column (copied from the clip index, e.g. the shapes dataset's) are split by
    it: ``train`` (or none) is trained on, ``val``/``validation`` validates, and any other split (the
    shapes' ``heldout`` combinations, ``test``) is never trained on. Without a ``val`` split, a stable
    hash of ``clip_id`` holds out ``val_fraction`` of the training records. ``pack_length`` > 0 packs
    both loaders' rows (per-token losses are the same packed or not).
    """
    records, vocab = load_token_records(data)
    ids = records["clip_id"]
    splits = records["split"] if "split" in records.column_names else [None] * len(ids)
    named_val = any(sp in _VAL_SPLITS for sp in splits)
    train_idx, val_idx = [], []
    for i, (clip_id, sp) in enumerate(zip(ids, splits, strict=True)):
        if sp in _VAL_SPLITS or (not sp or sp == "train") and not named_val and is_validation(clip_id, val_fraction):
            val_idx.append(i)
        elif not sp or sp == "train":
            train_idx.append(i)
    if not val_idx:  # tiny datasets: validate on a few training records rather than on nothing
        val_idx = train_idx[: max(1, batch_size * world_size)]
    if len(train_idx) < batch_size * world_size:
        raise DataError(f"{data} has {len(train_idx)} training records, fewer than one global batch ({batch_size} x {world_size} ranks)")
    builder = TaskBuilder(vocab, task_config)
    train = TaskLoader(records.select(train_idx), builder, batch_size, rank, world_size, seed, maskgit_ratio, num_workers,
                       pack_length=pack_length, pin_memory=pin_memory)
    val = TaskLoader(records.select(val_idx), builder, batch_size, rank, world_size, seed + 1, maskgit_ratio, shuffle=False,
                     pack_length=pack_length)
    return vocab, train, val
