"""A distributed, stateful, deterministic loader of task sequences for LLM training.

Each epoch has a plan that depends only on (seed, epoch, batch size), never on the number of ranks: a
seeded order of the records, a task, mode and caption-dropout draw for each, and the samples grouped into
micro-batches of similar length (VideoPoet groups tasks by length, so batches carry little padding).
Global step k takes micro-batches k*W .. k*W+W-1 of the plan on W ranks; rank r takes the r-th.

The state is (epoch, micro-batches consumed in the epoch). A resumed run continues at exactly that point,
so it sees the samples an uninterrupted run would, none twice and none skipped, with any number of
DataLoader workers (each micro-batch is built from its own seed). Resuming on another number of ranks
keeps that guarantee: the plan is the same and the new ranks split the remaining micro-batches; what
changes is which rank builds which micro-batch, and how many micro-batches at the end of each epoch are left
out (the last `len(plan) % W`, so that all ranks start the next epoch at the same step).
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

from videopoet.data.tasks import RecordInfo, TaskBuilder, TaskConfig, collate, record_info
from videopoet.errors import UserError
from videopoet.llm.masks import MASKGIT, PREFIX
from videopoet.vocab import SharedVocab

GROUP_WINDOW = 64  # micro-batches whose samples are sorted by length together


class DataError(UserError):
    """Token records that are missing or too few for the run."""


@dataclass(frozen=True)
class Sample:
    index: int  # record index
    task: str
    mode: int
    drop_caption: bool
    seed: int


def plan_epoch(
    infos: Sequence[RecordInfo],
    builder: TaskBuilder,
    batch_size: int,
    seed: int,
    epoch: int,
    maskgit_ratio: float,
    shuffle: bool = True,
) -> list[list[Sample]]:
    """The epoch's micro-batches: every record once, with its task and mode, grouped by length."""
    rng = np.random.default_rng([seed, epoch])
    order = rng.permutation(len(infos)) if shuffle else np.arange(len(infos))
    samples, lengths = [], []
    for i in order:
        info = infos[int(i)]
        task = builder.choose(info, rng)
        mode = MASKGIT if rng.random() < maskgit_ratio else PREFIX
        drop = bool(rng.random() < builder.config.caption_dropout)
        samples.append(Sample(int(i), task, mode, drop, int(rng.integers(2**62))))
        lengths.append(builder.length(info, task, drop))
    batches: list[list[Sample]] = []
    window = batch_size * GROUP_WINDOW
    for start in range(0, len(samples), window):
        chunk = sorted(range(start, min(start + window, len(samples))), key=lambda j: lengths[j])
        batches += [[samples[j] for j in chunk[b : b + batch_size]] for b in range(0, len(chunk), batch_size)]
    if shuffle:
        batches = [batches[int(b)] for b in rng.permutation(len(batches))]
    return batches


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
        epoch, start = self.epoch, self.start
        k = 0
        while True:
            plan = L.plan(epoch)
            usable = len(plan) - len(plan) % L.world_size  # all ranks change epoch at the same step
            if usable == 0:
                raise ValueError(f"an epoch has {len(plan)} micro-batches, fewer than the {L.world_size} ranks")
            positions = range(start + L.rank, usable, L.world_size)
            for j, pos in enumerate(positions):
                if (k + j) % workers == wid:
                    yield epoch, pos, L.build_batch(plan[pos])
            k += len(positions)
            if not L.repeat:
                return
            epoch, start = epoch + 1, 0


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
    ) -> None:
        self.records, self.builder = records, builder
        self.batch_size, self.rank, self.world_size, self.seed = batch_size, rank, world_size, seed
        self.maskgit_ratio, self.num_workers, self.shuffle, self.repeat = maskgit_ratio, num_workers, shuffle, repeat
        self.infos = [record_info(r) for r in _iter_rows(records, ("text_ids", "video_shape", "audio_shape", "height", "width"))]
        self.epoch, self.consumed = 0, 0  # micro-batches of the epoch consumed by all ranks
        self._plans: dict[int, list[list[Sample]]] = {}

    def plan(self, epoch: int) -> list[list[Sample]]:
        if epoch not in self._plans:
            self._plans = {epoch: plan_epoch(self.infos, self.builder, self.batch_size, self.seed, epoch, self.maskgit_ratio, self.shuffle)}
        return self._plans[epoch]

    def build_batch(self, samples: list[Sample]) -> dict[str, Any]:
        seqs = [
            self.builder.build(self.records[s.index], s.task, s.mode, np.random.default_rng(s.seed), s.drop_caption)
            for s in samples
        ]
        return collate(seqs, pad_id=self.builder.vocab.token_id("<pad>"))

    def typical_length(self) -> int:
        """Mean sequence length of the first epoch's plan (for FLOPs estimates)."""
        plan = self.plan(0)
        lengths = [self.builder.length(self.infos[s.index], s.task, s.drop_caption) for b in plan for s in b]
        return int(np.mean(lengths)) if lengths else 1

    def __iter__(self) -> Iterator[dict[str, Any]]:
        dataset = _MicroBatches(self, self.epoch, self.consumed)
        stream = DataLoader(dataset, batch_size=None, num_workers=self.num_workers,
                            prefetch_factor=2 if self.num_workers else None,
                            generator=torch.Generator().manual_seed(self.seed))
        for epoch, pos, batch in stream:
            # after this micro-batch, every rank has consumed up to its own slot of this global step
            self.epoch, self.consumed = epoch, pos - self.rank + self.world_size
            yield batch

    def fixed_batches(self, count: int) -> Iterator[dict[str, Any]]:
        """The first `count` micro-batches of this rank in epoch 0, the same every call (for validation)."""
        plan = self.plan(0)
        for pos in list(range(self.rank, len(plan), self.world_size))[:count]:
            yield self.build_batch(plan[pos])

    def state_dict(self) -> dict[str, Any]:
        return {"epoch": self.epoch, "consumed": self.consumed, "seed": self.seed, "batch_size": self.batch_size, "world_size": self.world_size}

    def load_state_dict(self, state: dict[str, Any], saved_world_size: int | None = None) -> None:
        """Continue where `state` stopped; the plan is the same on any number of ranks."""
        if state["seed"] != self.seed or state["batch_size"] != self.batch_size:
            raise ValueError("the loader state was saved with another seed or batch size; the sample order would differ")
        self.epoch, self.consumed = int(state["epoch"]), int(state["consumed"])
        plan = len(self.plan(self.epoch))
        if self.consumed >= plan - plan % self.world_size:
            self.epoch, self.consumed = self.epoch + 1, 0

    def batches_per_epoch(self) -> int:
        """Global steps per epoch."""
        return len(self.plan(self.epoch)) // self.world_size


def _iter_rows(records: Any, columns: Sequence[str]) -> Iterator[dict[str, Any]]:
    """Rows with only the columns planning needs (cheap on a `datasets.Dataset`)."""
    if hasattr(records, "select_columns"):
        present = [c for c in columns if c in records.column_names]
        yield from records.select_columns(present)
    else:
        for r in records:
            yield {c: r.get(c) for c in columns}


RECORDS_DIR = "records"
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
) -> tuple[SharedVocab, TaskLoader, TaskLoader]:
    """Loaders over the train and validation split of a token records folder."""
    records, vocab = load_token_records(data)
    ids = records["clip_id"]
    val_idx = [i for i, c in enumerate(ids) if is_validation(c, val_fraction)]
    val_set = set(val_idx)
    train_idx = [i for i in range(len(ids)) if i not in val_set]
    if not val_idx:  # tiny datasets: validate on a few training records rather than on nothing
        val_idx = train_idx[: max(1, batch_size * world_size)]
    if len(train_idx) < batch_size * world_size:
        raise DataError(f"{data} has {len(train_idx)} training records, fewer than one global batch ({batch_size} x {world_size} ranks)")
    builder = TaskBuilder(vocab, task_config)
    train = TaskLoader(records.select(train_idx), builder, batch_size, rank, world_size, seed, maskgit_ratio, num_workers)
    val = TaskLoader(records.select(val_idx), builder, batch_size, rank, world_size, seed + 1, maskgit_ratio, shuffle=False)
    return vocab, train, val
