"""Task sequences: every task's layout and loss mask in AR and MaskGIT mode, availability, caption dropout."""

from __future__ import annotations

import numpy as np
import pytest

from videopoet.data.tasks import (
    IGNORE_INDEX,
    TaskBuilder,
    TaskConfig,
    TaskError,
    collate,
    group_by_length,
    padding_ratio,
    record_info,
)
from videopoet.sequence import MASKGIT, PREFIX
from videopoet.vocab import TASKS, SharedVocab

VOCAB = SharedVocab(text_size=300, video_bits=6, audio_levels=2, audio_codebook_size=16)


def record(rng: np.random.Generator, caption: bool = True, audio: bool = True, t: int = 3) -> dict:
    return {
        "clip_id": "c",
        "text_ids": rng.integers(0, 300, 7).tolist() if caption else [],
        "video_ids": rng.integers(0, 64, t * 4 * 4).tolist(),
        "video_shape": [t, 4, 4],
        "audio_ids": rng.integers(0, 16, 2 * 10).tolist() if audio else [],
        "audio_shape": [2, 10] if audio else [0, 0],
        "height": 32,
        "width": 32,
    }


def block(ids: np.ndarray, open_name: str, close_name: str) -> np.ndarray:
    a = int(np.where(ids == VOCAB.token_id(open_name))[0][0])
    b = int(np.where(ids == VOCAB.token_id(close_name))[0][0])
    return ids[a + 1 : b]


@pytest.mark.parametrize("task", TASKS)
def test_layout_and_ar_labels(task: str) -> None:
    rng = np.random.default_rng(0)
    rec = record(rng)
    builder = TaskBuilder(VOCAB, TaskConfig())
    seq = builder.build(rec, task, PREFIX, rng)
    ids = seq.input_ids
    assert len(seq) == builder.length(record_info(rec), task, drop_caption=False)
    assert ids[0] == VOCAB.token_id("<bos>") and ids[1] == VOCAB.task_id(task) and ids[-1] == VOCAB.token_id("<eos>")
    assert ids[2:4].tolist() == list(VOCAB.resolution_ids(32, 32))
    # the prefix ends right before the output's opening marker
    assert VOCAB.special_name(int(ids[seq.prefix_len])) in ("<bov_o>", "<boa_o>")
    # AR: every position after the opening marker is scored, nothing before
    assert (seq.labels[: seq.prefix_len + 1] == IGNORE_INDEX).all()
    assert (seq.labels[seq.prefix_len + 1 :] == ids[seq.prefix_len + 1 :]).all()
    video = VOCAB.video_to_global(np.asarray(rec["video_ids"]))
    audio = VOCAB.audio_to_global(np.asarray(rec["audio_ids"]).reshape(2, 10)).reshape(-1)
    if task in ("text_to_video", "text_to_image", "text_to_video_audio"):
        assert block(ids, "<bot_i>", "<eot_i>").tolist() == VOCAB.text_to_global(rec["text_ids"])
    expected_out = {"text_to_image": video[:16], "video_to_audio": audio, "video_continuation": video[16:]}.get(task, video)
    if task == "video_to_audio":
        assert block(ids, "<boa_o>", "<eoa_o>").tolist() == expected_out.tolist()
        assert block(ids, "<bov_i>", "<eov_i>").tolist() == video.tolist()
    else:
        assert block(ids, "<bov_o>", "<eov_o>").tolist() == expected_out.tolist()
    if task == "text_to_video_audio":
        assert block(ids, "<boa_o>", "<eoa_o>").tolist() == audio.tolist()
    if task == "audio_to_video":
        assert block(ids, "<boa_i>", "<eoa_i>").tolist() == audio.tolist()
    if task == "image_to_video":
        assert block(ids, "<bov_i>", "<eov_i>").tolist() == video[:16].tolist()
    if task in ("video_inpainting", "video_outpainting"):
        masked = block(ids, "<bov_i>", "<eov_i>")
        hidden = masked == VOCAB.token_id("<mask>")
        assert 0 < hidden.sum() < len(masked) and (masked[~hidden] == video[~hidden]).all()
    # every output id lies in its modality's range
    for a, b in seq.output_spans:
        mods = {VOCAB.modality_of(int(i)) for i in ids[a:b]}
        assert mods <= {"video", "audio"} and len(mods) == 1


@pytest.mark.parametrize("task", ["text_to_video", "text_to_video_audio", "video_to_audio"])
def test_maskgit_masks_output_only_and_scores_same_position(task: str) -> None:
    rng = np.random.default_rng(1)
    rec = record(rng)
    builder = TaskBuilder(VOCAB, TaskConfig())
    ar = builder.build(rec, task, PREFIX, np.random.default_rng(5))
    counts = []
    for s in range(20):
        seq = builder.build(rec, task, MASKGIT, np.random.default_rng(s))
        masked = seq.input_ids == VOCAB.token_id("<mask>")
        scored = seq.labels != IGNORE_INDEX
        assert (masked == scored).all() and masked.sum() >= 1
        assert (seq.labels[scored] == ar.input_ids[scored]).all()  # the token at the same position
        inside = np.zeros(len(seq), bool)
        for a, b in seq.output_spans:
            inside[a:b] = True
        assert not (masked & ~inside).any()  # prefix and markers never masked
        counts.append(int(masked.sum()))
    assert len(set(counts)) > 3  # the ratio varies (cosine schedule)


def test_tasks_a_record_lacks_are_never_drawn() -> None:
    builder = TaskBuilder(VOCAB, TaskConfig())
    rng = np.random.default_rng(0)
    silent_uncaptioned = record_info(record(rng, caption=False, audio=False))
    drawn = {builder.choose(silent_uncaptioned, rng) for _ in range(300)}
    assert drawn and not drawn & {"text_to_video", "text_to_image", "text_to_video_audio", "video_to_audio", "audio_to_video"}
    with pytest.raises(TaskError, match="none of the tasks"):
        TaskBuilder(VOCAB, TaskConfig(mixture={"video_to_audio": 1.0})).choose(silent_uncaptioned, rng)


def test_caption_dropout_keeps_empty_text_block() -> None:
    rng = np.random.default_rng(0)
    rec = record(rng)
    builder = TaskBuilder(VOCAB, TaskConfig())
    seq = builder.build(rec, "text_to_video", PREFIX, rng, drop_caption=True)
    assert block(seq.input_ids, "<bot_i>", "<eot_i>").size == 0
    assert len(seq) == builder.length(record_info(rec), "text_to_video", drop_caption=True)


def test_bad_config_and_collate() -> None:
    with pytest.raises(ValueError, match="unknown task"):
        TaskConfig(mixture={"text_to_poem": 1.0})
    builder = TaskBuilder(VOCAB, TaskConfig())
    rng = np.random.default_rng(0)
    seqs = [builder.build(record(rng), "text_to_image", PREFIX, rng), builder.build(record(rng), "text_to_video", MASKGIT, rng)]
    batch = collate(seqs, pad_id=VOCAB.token_id("<pad>"))
    assert batch["input_ids"].shape == (2, max(len(s) for s in seqs))
    assert batch["lengths"].tolist() == [len(s) for s in seqs] and batch["modes"].tolist() == [PREFIX, MASKGIT]
    assert (batch["labels"][0, len(seqs[0]) :] == IGNORE_INDEX).all()


def test_every_block_lies_in_its_vocab_range() -> None:
    rng = np.random.default_rng(2)
    rec = record(rng)
    builder = TaskBuilder(VOCAB, TaskConfig())
    special = VOCAB.special_range
    for task in TASKS:
        for mode in (PREFIX, MASKGIT):
            ids = builder.build(rec, task, mode, np.random.default_rng(0)).input_ids
            assert all(int(i) in special for i in ids[:2])
            for open_name, close_name, ranges in (
                ("<bot_i>", "<eot_i>", [VOCAB.text_range]),
                ("<bov_i>", "<eov_i>", [VOCAB.video_range]),
                ("<bov_o>", "<eov_o>", [VOCAB.video_range]),
                ("<boa_i>", "<eoa_i>", [VOCAB.audio_range(0), VOCAB.audio_range(1)]),
                ("<boa_o>", "<eoa_o>", [VOCAB.audio_range(0), VOCAB.audio_range(1)]),
            ):
                if VOCAB.token_id(open_name) not in ids:
                    continue
                content = block(ids, open_name, close_name)
                content = content[content != VOCAB.token_id("<mask>")]  # MaskGIT output, in/outpainting input
                if len(ranges) == 1:
                    assert all(int(i) in ranges[0] for i in content), (task, open_name)
                elif mode == PREFIX:  # audio: level 0 (coarse) first, then level 1
                    assert all(int(i) in ranges[0] for i in content[:10]) and all(int(i) in ranges[1] for i in content[10:])


def test_resolution_tokens_only_with_a_pixel_size() -> None:
    rng = np.random.default_rng(3)
    rec = record(rng)
    del rec["height"], rec["width"]
    builder = TaskBuilder(VOCAB, TaskConfig())
    seq = builder.build(rec, "text_to_video", PREFIX, rng)
    assert seq.input_ids[2] == VOCAB.token_id("<bot_i>")
    assert len(seq) == builder.length(record_info(rec), "text_to_video", drop_caption=False)
    portrait = {**record(rng), "height": 224, "width": 128}
    ids = builder.build(portrait, "text_to_video", PREFIX, rng).input_ids
    assert [VOCAB.special_name(int(i)) for i in ids[2:4]] == ["<aspect_7:4>", "<short_128>"]


def test_nested_audio_ids_and_has_audio_flag() -> None:
    rng = np.random.default_rng(4)
    flat = record(rng)
    nested = {**flat, "audio_ids": np.asarray(flat["audio_ids"]).reshape(2, 10).tolist()}
    del nested["audio_shape"]
    builder = TaskBuilder(VOCAB, TaskConfig())
    a = builder.build(flat, "video_to_audio", PREFIX, np.random.default_rng(0))
    b = builder.build(nested, "video_to_audio", PREFIX, np.random.default_rng(0))
    assert (a.input_ids == b.input_ids).all()
    assert not record_info({**nested, "has_audio": False}).has_audio
    with pytest.raises(TaskError, match="levels, frames"):
        record_info({**nested, "audio_ids": [1, 2, 3]})


def test_sample_draws_only_what_the_record_serves_and_drops_captions() -> None:
    builder = TaskBuilder(VOCAB, TaskConfig(caption_dropout=0.1))
    rng = np.random.default_rng(5)
    silent = record(rng, audio=False)
    uncaptioned = record(rng, caption=False)
    silent_tasks = {builder.sample(silent, rng).task for _ in range(300)}
    assert silent_tasks == set(TASKS) - {"text_to_video_audio", "video_to_audio", "audio_to_video"}
    uncaptioned_tasks = {builder.sample(uncaptioned, rng).task for _ in range(300)}
    assert uncaptioned_tasks == set(TASKS) - {"text_to_video", "text_to_image", "text_to_video_audio"}

    full = record(rng)
    draws = [builder.draw(record_info(full), rng, maskgit_ratio=0.3) for _ in range(4000)]
    assert abs(np.mean([d[2] for d in draws]) - 0.1) < 0.02  # caption dropout rate
    assert abs(np.mean([d[1] == MASKGIT for d in draws]) - 0.3) < 0.03
    text_seqs = [s for s in (builder.sample(full, rng) for _ in range(1500)) if s.task in ("text_to_video", "text_to_image")]
    empty = [block(s.input_ids, "<bot_i>", "<eot_i>").size == 0 for s in text_seqs]
    assert abs(np.mean(empty) - 0.1) < 0.04


def test_maskgit_ratio_follows_the_cosine_schedule() -> None:
    rec = record(np.random.default_rng(6), t=5)
    builder = TaskBuilder(VOCAB, TaskConfig())
    shares = []
    for s in range(400):
        seq = builder.build(rec, "unconditional_video", MASKGIT, np.random.default_rng(s))
        a, b = seq.output_spans[0]
        shares.append(float((seq.input_ids[a:b] == VOCAB.token_id("<mask>")).mean()))
    assert abs(np.mean(shares) - 2 / np.pi) < 0.05  # E[cos(pi/2 u)], u ~ U(0, 1]
    assert min(shares) > 0 and max(shares) > 0.95


def test_group_by_length_beats_random_batching() -> None:
    rng = np.random.default_rng(7)
    builder = TaskBuilder(VOCAB, TaskConfig())
    recs = [record(rng, audio=bool(i % 2), t=int(rng.integers(1, 6))) for i in range(256)]
    lengths = [len(builder.sample(r, rng)) for r in recs]
    grouped = group_by_length(lengths, 8, np.random.default_rng(0))
    assert sorted(i for b in grouped for i in b) == list(range(256)) and all(len(b) == 8 for b in grouped)
    order = np.random.default_rng(1).permutation(256).tolist()
    random_batches = [order[i : i + 8] for i in range(0, 256, 8)]
    grouped_pad, random_pad = padding_ratio(lengths, grouped), padding_ratio(lengths, random_batches)
    assert grouped_pad < 0.25 * random_pad, (grouped_pad, random_pad)


@pytest.mark.parametrize("task", TASKS)
def test_generation_layout_matches_training_sequence(task: str) -> None:
    import torch

    rng = np.random.default_rng(3)
    rec = record(rng)
    builder = TaskBuilder(VOCAB, TaskConfig())
    seq = builder.build(rec, task, PREFIX, np.random.default_rng(4))
    layout = builder.output_layout(task, tuple(rec["video_shape"]), tuple(rec["audio_shape"]))
    content = np.concatenate([seq.input_ids[a:b] for a, b in seq.output_spans])
    assert layout.content_length == len(content)
    assert layout.full_ids(torch.from_numpy(content)[None])[0].tolist() == seq.input_ids[seq.prefix_len :].tolist()
    lo, hi = layout.ranges()
    assert ((torch.from_numpy(content) >= lo) & (torch.from_numpy(content) < hi)).all()
    video = VOCAB.video_to_global(np.asarray(rec["video_ids"]).reshape(rec["video_shape"]))
    audio = VOCAB.audio_to_global(np.asarray(rec["audio_ids"]).reshape(rec["audio_shape"])).reshape(-1)
    prefix = builder.prefix(task, 32, 32, rec["text_ids"], video, audio, box=seq.box)  # painting: the box training drew
    assert prefix == seq.input_ids[: seq.prefix_len].tolist()
    assert builder.length(record_info(rec), task, drop_caption=False) == len(seq)


def test_one_spec_per_task_in_token_order() -> None:
    from videopoet.data.tasks import TASK_SPECS

    assert list(TASK_SPECS) == list(TASKS)
    media = {t: s.input_media for t, s in TASK_SPECS.items()}
    assert media["image_to_video"] == "image" and media["audio_to_video"] == "audio" and media["text_to_video"] is None
    assert {t for t, m in media.items() if m == "video"} == {"video_continuation", "video_inpainting", "video_outpainting", "video_to_audio"}


def test_painting_boxes_mask_inside_or_outside() -> None:
    builder = TaskBuilder(VOCAB, TaskConfig(inpaint_box=0.5, outpaint_keep=0.5))
    video = np.arange(2 * 8 * 8).reshape(2, 8, 8) + VOCAB.video_range.start
    mask = VOCAB.token_id("<mask>")
    inner = builder.mask_video(video, "video_inpainting", builder.default_box("video_inpainting"))
    outer = builder.mask_video(video, "video_outpainting", builder.default_box("video_outpainting"))
    assert (inner[:, 2:6, 2:6] == mask).all() and (inner[:, :2] == video[:, :2]).all()  # the central 4x4 hidden
    assert (outer[:, 2:6, 2:6] == video[:, 2:6, 2:6]).all() and (outer[:, :2] == mask).all()  # only it kept
    corner = builder.mask_video(video, "video_inpainting", (0.0, 0.75, 0.25, 0.25))  # a user's box
    assert (corner[:, :2, 6:] == mask).all() and (corner == mask).sum() == 2 * 4
    tiny = builder.mask_video(video, "video_inpainting", (0.5, 0.5, 0.01, 0.01))  # at least one cell
    assert (tiny == mask).sum() == 2
    rng = np.random.default_rng(0)
    boxes = {builder.draw_box("video_inpainting", 8, 8, rng) for _ in range(20)}
    assert len(boxes) > 1 and all(b[2:] == (0.5, 0.5) for b in boxes)  # random place, fixed side
    assert builder.draw_box("video_outpainting", 8, 8, rng) == builder.default_box("video_outpainting")
