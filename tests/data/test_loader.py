"""The training loader: rank sharding, length grouping, exact resume (workers, other world sizes)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from videopoet.data.loader import DataError, TaskLoader, build_train_and_val_loaders, plan_epoch
from videopoet.data.tasks import TaskBuilder, TaskConfig, record_info
from videopoet.vocab import SharedVocab


def loader(records, vocab: SharedVocab, rank=0, world=1, workers=0, seed=3, batch=2) -> TaskLoader:
    return TaskLoader(records, TaskBuilder(vocab, TaskConfig()), batch, rank, world, seed, 0.5, workers)


def fingerprint(batch: dict) -> tuple:
    return tuple(batch["input_ids"].flatten().tolist()) + tuple(batch["labels"].flatten().tolist())


def take(it, n: int) -> list[tuple]:
    return [fingerprint(next(it)) for _ in range(n)]


def test_epoch_plan_covers_every_record_once_and_groups_lengths(make_records, records_vocab) -> None:
    records = make_records(64)
    builder = TaskBuilder(records_vocab, TaskConfig())
    infos = [record_info(r) for r in records]
    plan = plan_epoch(infos, builder, 4, seed=0, epoch=0, maskgit_ratio=0.5)
    assert sorted(s.index for b in plan for s in b) == list(range(64))
    assert plan != plan_epoch(infos, builder, 4, seed=0, epoch=1, maskgit_ratio=0.5)

    def padding(batches):
        lengths = [[builder.length(infos[s.index], s.task, s.drop_caption) for s in b] for b in batches]
        return sum(max(ls) * len(ls) - sum(ls) for ls in lengths) / sum(sum(ls) for ls in lengths)

    flat = [s for b in plan for s in b]
    flat = [flat[i] for i in np.random.default_rng(0).permutation(len(flat))]
    random_batches = [flat[i : i + 4] for i in range(0, 64, 4)]
    assert padding(plan) < 0.5 * padding(random_batches)


def test_ranks_split_each_global_step(make_records, records_vocab) -> None:
    records = make_records(24)
    solo = loader(records, records_vocab, batch=2)
    plan = solo.plan(0)
    r0, r1 = iter(loader(records, records_vocab, 0, 2, batch=2)), iter(loader(records, records_vocab, 1, 2, batch=2))
    for step in range(len(plan) // 2):
        assert fingerprint(next(r0)) == fingerprint(solo.build_batch(plan[2 * step]))
        assert fingerprint(next(r1)) == fingerprint(solo.build_batch(plan[2 * step + 1]))


@pytest.mark.parametrize("workers", [0, 2])
def test_exact_resume(workers: int, make_records, records_vocab) -> None:
    records = make_records(20)
    whole = take(iter(loader(records, records_vocab, workers=workers)), 16)  # crosses into the second epoch
    first = loader(records, records_vocab, workers=workers)
    it = iter(first)
    head = take(it, 7)
    state = first.state_dict()
    resumed = loader(records, records_vocab, workers=workers)
    resumed.load_state_dict(state)
    assert head + take(iter(resumed), 9) == whole


def test_resume_on_other_world_size_no_duplicates_no_skips(make_records, records_vocab) -> None:
    records = make_records(32)
    two = [loader(records, records_vocab, r, 2) for r in range(2)]
    its = [iter(x) for x in two]
    seen = []
    for _ in range(3):
        seen += [fingerprint(next(it)) for it in its]
    state = two[0].state_dict()
    one = loader(records, records_vocab, 0, 1)
    one.load_state_dict(state, saved_world_size=2)
    rest = take(iter(one), len(one.plan(0)) - 6)
    solo = loader(records, records_vocab)
    assert sorted(seen + rest) == sorted(take(iter(solo), len(solo.plan(0))))


def test_train_val_split_from_records_folder(tmp_path: Path, make_records, records_vocab) -> None:
    make_records(40).save_to_disk(str(tmp_path / "records"))
    records_vocab.save(tmp_path / "vocab.json")
    vocab, train, val = build_train_and_val_loaders(tmp_path, TaskConfig(), 2, 0, 1, 0, 0.2, 0.5)
    assert vocab == records_vocab and len(train.infos) + len(val.infos) == 40 and len(val.infos) > 0
    assert [fingerprint(b) for b in val.fixed_batches(2)] == [fingerprint(b) for b in val.fixed_batches(2)]
    with pytest.raises(DataError, match="no token records"):
        build_train_and_val_loaders(tmp_path / "nope", TaskConfig(), 2, 0, 1, 0, 0.2, 0.5)


def interleave(loaders: list[TaskLoader], steps: int) -> list[tuple]:
    """The micro-batches of `steps` global steps, rank by rank within a step."""
    its = [iter(x) for x in loaders]
    return [fingerprint(next(it)) for _ in range(steps) for it in its]


def test_ranks_cover_the_stream_exactly_across_epochs(make_records, records_vocab) -> None:
    records = make_records(26)  # 13 micro-batches per epoch: 3 ranks never divide an epoch evenly
    solo = loader(records, records_vocab, batch=2)
    assert len(solo.plan(0)) == 13
    whole = take(iter(solo), 30)  # two epochs and a bit
    three = [loader(records, records_vocab, r, 3, batch=2) for r in range(3)]
    assert interleave(three, 10) == whole  # nothing left out at the epoch boundary, nothing repeated
    epoch0 = set(whole[:13])
    assert len(epoch0) == 13  # every micro-batch of the epoch once


@pytest.mark.parametrize("workers", [0, 2])
def test_resume_on_more_ranks_mid_epoch(workers: int, make_records, records_vocab) -> None:
    records = make_records(26)
    whole = take(iter(loader(records, records_vocab, batch=2)), 26)
    two = [loader(records, records_vocab, r, 2, workers=workers, batch=2) for r in range(2)]
    seen = interleave(two, 4)
    state = two[1].state_dict()
    assert state["epoch"] == 0 and state["consumed"] == 8 and two[0].state_dict() == state
    three = [loader(records, records_vocab, r, 3, workers=workers, batch=2) for r in range(3)]
    for x in three:
        x.load_state_dict(state, saved_world_size=2)
    assert seen + interleave(three, 6) == whole  # none twice, none skipped, same order


def test_split_column_keeps_heldout_out_of_training(tmp_path: Path, make_records, records_vocab) -> None:
    records = make_records(30)
    splits = ["train"] * 20 + ["val"] * 4 + ["heldout"] * 6
    records.add_column("split", splits).save_to_disk(str(tmp_path / "records"))
    records_vocab.save(tmp_path / "vocab.json")
    _, train, val = build_train_and_val_loaders(tmp_path, TaskConfig(), 2, 0, 1, 0, 0.2, 0.5)
    assert train.records["clip_id"] == [f"clip{i}" for i in range(20)]
    assert val.records["clip_id"] == [f"clip{i}" for i in range(20, 24)]


def packing_loader(records, vocab: SharedVocab, pack_length: int, workers=0) -> TaskLoader:
    return TaskLoader(records, TaskBuilder(vocab, TaskConfig()), 2, 0, 1, 3, 0.5, workers, pack_length=pack_length)


def test_packed_plan_covers_every_record_once_within_the_row_length(make_records, records_vocab) -> None:
    from videopoet.data.packing import pack_rows

    records = make_records(40)
    grouped, packed = loader(records, records_vocab), packing_loader(records, records_vocab, 160)
    assert sorted(s.index for b in packed.plan(0) for s in packed.samples(b)) == list(range(40))
    infos, builder = packed.infos, packed.builder
    for micro in packed.plan(0):
        assert len(micro) <= 2
        for row in micro:
            lengths = [builder.length(infos[s.index], s.task, s.drop_caption) for s in row]
            assert sum(lengths) <= 160 or len(row) == 1

    def padding_share(tl: TaskLoader) -> float:
        batches = [tl.build_batch(b) for b in tl.plan(0)]
        return 1 - sum(int(b["lengths"].sum()) for b in batches) / sum(b["input_ids"].numel() for b in batches)

    assert padding_share(packed) < padding_share(grouped)
    assert pack_rows([5, 30, 7], 10, 4) == [[[1], [2], [0]]]  # a sequence longer than a row: a row of its own


@pytest.mark.parametrize("workers", [0, 2])
def test_packed_exact_resume_and_pack_length_guard(workers: int, make_records, records_vocab) -> None:
    records = make_records(20)
    whole = take(iter(packing_loader(records, records_vocab, 150, workers)), 9)  # crosses into the second epoch
    first = packing_loader(records, records_vocab, 150, workers)
    it = iter(first)
    head = take(it, 4)
    state = first.state_dict()
    resumed = packing_loader(records, records_vocab, 150, workers)
    resumed.load_state_dict(state)
    assert head + take(iter(resumed), 5) == whole
    with pytest.raises(ValueError, match="pack length"):
        packing_loader(records, records_vocab, 200).load_state_dict(state)
    with pytest.raises(ValueError, match="pack length"):
        loader(records, records_vocab).load_state_dict(state)
