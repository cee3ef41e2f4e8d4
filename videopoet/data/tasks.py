"""Token records -> task sequences (docs/design.md, "Sequence format").

Token records (made by pretokenize) hold modality-local ids: ``text_ids`` (SentencePiece ids, may be
empty: no caption), ``video_ids`` (LFQ codes, flat in (t, h, w) order or nested) with ``video_shape``
``[t, h, w]`` (latent), ``audio_ids`` (RVQ codes ``[levels, frames]``, nested, or flat with
``audio_shape``; empty or ``has_audio`` false: no audio) and optionally the clip's pixel ``height`` and
``width``. `TaskBuilder` turns them into global ids with `SharedVocab`.

Layout of every sequence:

    <bos> <task> [<aspect> <short>] [<bot_i> text <eot_i>] [<bov_i> video-in <eov_i>] [<boa_i> audio-in <eoa_i>]
    <bo?_o> output <eo?_o> [<boa_o> audio <eoa_o>] <eos>

- The prefix is everything before the output's opening token; the loss is only on the output.
- The resolution tokens (vocab.resolution_ids of the clip's pixel size) follow the task token; a record
  without ``height``/``width`` gets none (the latent grid's size is not a pixel size).
- Video tokens in (t, h, w) order; audio tokens one RVQ level after another, coarse to fine.
- Text-to-video+audio has two output blocks: the video, then the audio.
- Caption dropout keeps the text block's markers and empties it (`<bot_i> <eot_i>`): the unconditional
  prefix that classifier-free guidance needs has the same layout.
- Inpainting: a box of the latent grid (all frames) is replaced by `<mask>` in the input video;
  outpainting: everything outside a central box is. The output is always the whole video.
- Continuation: the first `continuation_frames` latent frames in, the remaining ones out.
  Image-to-video: the first latent frame in (a still image), the whole video out.

Labels follow the Hugging Face convention (aligned with input_ids, IGNORE_INDEX where not scored):
- AR mode scores every output token, closing markers and `<eos>` (the model predicts label[i] from
  position i - 1; the opening marker itself is not scored).
- MaskGIT mode replaces a share of the output's content tokens by `<mask>` (share = cos(pi/2 * u), u ~ U(0, 1],
  at least one) and scores exactly those positions, predicting the token at the same position.

Tasks whose inputs a record lacks are never drawn for it (`TaskBuilder.available`): no caption -> no
text-conditioned task; no audio -> no video-to-audio, audio-to-video or text-to-video+audio; a single
latent frame -> no continuation. `group_by_length` makes batches of similar length (VideoPoet groups
tasks by length), so they carry little padding.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from videopoet.errors import UserError
from videopoet.sequence import MASKGIT, PREFIX, OutputBlock, OutputLayout
from videopoet.vocab import TASKS, SharedVocab

IGNORE_INDEX = -100
GROUP_WINDOW = 64  # batches whose samples `group_by_length` sorts by length together



@dataclass(frozen=True)
class TaskSpec:
    """What one task reads and writes; every layout rule (`length`, `prefix`, `build`, `output_layout`,
    `available`, and generation's input checks) is derived from it.

    Video spans are named by the latent frames they cover: `video` (all), `frame` (the first: a still
    image), `head` (the first `continuation_frames`), `tail` (the rest). `mask`: the input video is
    given with a box of the latent grid replaced by `<mask>` (`box`: inpainting) or everything outside
    it (`outside`: outpainting); the output is then the whole video."""

    text: bool = False  # a text block in the prefix
    video_in: str | None = None  # the video span given as input
    audio_in: bool = False  # the clip's sound given as input
    outputs: tuple[str, ...] = ("video",)  # output blocks in order: video spans, or "audio"
    mask: str | None = None  # "box" or "outside": how the input video is masked

    @property
    def needs_audio(self) -> bool:
        return self.audio_in or "audio" in self.outputs

    @property
    def input_media(self) -> str | None:
        """What a user gives generation: an `image`, a `video`, `audio`, or nothing (text or no input)."""
        if self.video_in == "frame":
            return "image"
        return "video" if self.video_in else "audio" if self.audio_in else None


# One spec per task, in the order of `vocab.TASKS` (the task tokens).
TASK_SPECS: dict[str, TaskSpec] = {
    "text_to_video": TaskSpec(text=True),
    "text_to_image": TaskSpec(text=True, outputs=("frame",)),
    "text_to_video_audio": TaskSpec(text=True, outputs=("video", "audio")),
    "image_to_video": TaskSpec(video_in="frame"),
    "video_continuation": TaskSpec(video_in="head", outputs=("tail",)),
    "video_inpainting": TaskSpec(video_in="video", mask="box"),
    "video_outpainting": TaskSpec(video_in="video", mask="outside"),
    "video_to_audio": TaskSpec(video_in="video", outputs=("audio",)),
    "audio_to_video": TaskSpec(audio_in=True),
    "unconditional_video": TaskSpec(),
}


class TaskError(UserError):
    """A task the record cannot serve, or a task config that does not fit."""


@dataclass
class TaskConfig:
    """Which tasks to train on, how often, and the knobs of their layouts."""

    mixture: dict[str, float] = field(default_factory=lambda: dict.fromkeys(TASKS, 1.0))
    caption_dropout: float = 0.1
    max_text_tokens: int = 64
    continuation_frames: int = 1  # latent frames given as input for continuation
    inpaint_box: float = 0.5  # side of the masked box, as a share of the latent grid
    outpaint_keep: float = 0.5  # side of the central box kept, as a share of the latent grid

    def __post_init__(self) -> None:
        unknown = [t for t in self.mixture if t not in TASK_SPECS]
        if unknown:
            raise ValueError(f"unknown task {unknown[0]!r} in the mixture; tasks are: {', '.join(TASKS)}")
        if any(w < 0 for w in self.mixture.values()) or sum(self.mixture.values()) <= 0:
            raise ValueError("mixture weights must be >= 0 with a positive sum")
        if not 0 <= self.caption_dropout <= 1 or not 0 < self.inpaint_box < 1 or not 0 < self.outpaint_keep < 1:
            raise ValueError("caption_dropout must be in [0, 1]; inpaint_box and outpaint_keep in (0, 1)")
        if self.max_text_tokens < 1 or self.continuation_frames < 1:
            raise ValueError("max_text_tokens and continuation_frames must be at least 1")


@dataclass
class RecordInfo:
    """What task planning needs to know of a token record, without its ids (height/width 0: unknown)."""

    text_len: int
    video_shape: tuple[int, int, int]
    audio_shape: tuple[int, int]
    height: int
    width: int

    @property
    def has_caption(self) -> bool:
        return self.text_len > 0

    @property
    def has_audio(self) -> bool:
        return self.audio_shape[0] * self.audio_shape[1] > 0


def _audio_shape(record: dict[str, Any]) -> tuple[int, int]:
    """``[levels, frames]`` of a record's audio: from ``audio_shape``, else from nested ``audio_ids``."""
    if record.get("has_audio") is False:
        return (0, 0)
    if record.get("audio_shape") is not None:
        shape = tuple(int(x) for x in record["audio_shape"])
    else:
        ids = record.get("audio_ids")
        arr = np.asarray(ids if ids is not None else [])
        if arr.size == 0:
            return (0, 0)
        if arr.ndim != 2:
            raise TaskError(f"audio_ids must be [levels, frames] (or flat with audio_shape), got shape {arr.shape}")
        shape = arr.shape
    if len(shape) != 2:
        raise TaskError(f"audio_shape must be [levels, frames], got {list(shape)}")
    return (int(shape[0]), int(shape[1]))


def record_info(record: dict[str, Any]) -> RecordInfo:
    """The `RecordInfo` of a token record (see the module docstring for the fields read)."""
    audio_shape = _audio_shape(record)
    return RecordInfo(
        text_len=len(record.get("text_ids") or []),
        video_shape=tuple(record["video_shape"]),
        audio_shape=(int(audio_shape[0]), int(audio_shape[1])),
        height=int(record.get("height") or 0),
        width=int(record.get("width") or 0),
    )


@dataclass
class TaskSequence:
    """One training sequence: ids, labels, where the prefix ends and where the output lies."""

    input_ids: np.ndarray
    labels: np.ndarray
    prefix_len: int
    output_spans: list[tuple[int, int]]  # [start, end) of each output block's content
    mode: int  # sequence.PREFIX (AR) or sequence.MASKGIT
    task: str
    box: tuple[float, float, float, float] | None = None  # the in/outpainting box used, as shares of the grid

    def __len__(self) -> int:
        return len(self.input_ids)


class TaskBuilder:
    """Builds task sequences from token records with modality-local ids."""

    def __init__(self, vocab: SharedVocab, config: TaskConfig) -> None:
        self.vocab, self.config = vocab, config
        self.t = {name: vocab.token_id(name) for name in ("<bos>", "<eos>", "<mask>", "<bot_i>", "<eot_i>", "<bov_i>",
                                                            "<eov_i>", "<boa_i>", "<eoa_i>", "<bov_o>", "<eov_o>", "<boa_o>", "<eoa_o>")}

    # ---- which tasks a record can serve ----------------------------------------------------------
    def available(self, info: RecordInfo) -> list[str]:
        """Tasks with a positive weight whose inputs and outputs the record has."""
        tasks = []
        for task, weight in self.config.mixture.items():
            if weight <= 0:
                continue
            spec = TASK_SPECS[task]
            if spec.text and not info.has_caption:
                continue
            if spec.needs_audio and not info.has_audio:
                continue
            if "head" in (spec.video_in, *spec.outputs) and info.video_shape[0] <= self.config.continuation_frames:
                continue
            tasks.append(task)
        return tasks

    def choose(self, info: RecordInfo, rng: np.random.Generator) -> str:
        tasks = self.available(info)
        if not tasks:
            raise TaskError("a record serves none of the tasks in the mixture (no caption, no audio?)")
        weights = np.array([self.config.mixture[t] for t in tasks], dtype=np.float64)
        return tasks[int(rng.choice(len(tasks), p=weights / weights.sum()))]

    def draw(self, info: RecordInfo, rng: np.random.Generator, maskgit_ratio: float) -> tuple[str, int, bool]:
        """A task the record serves (by mixture weight), a mode (MaskGIT with ``maskgit_ratio``) and
        whether to drop the caption (``caption_dropout``)."""
        task = self.choose(info, rng)
        mode = MASKGIT if rng.random() < maskgit_ratio else PREFIX
        drop = bool(rng.random() < self.config.caption_dropout)
        return task, mode, drop

    def sample(self, record: dict[str, Any], rng: np.random.Generator, maskgit_ratio: float = 0.5) -> TaskSequence:
        """A random training sequence for one record: `draw`, then `build`."""
        task, mode, drop = self.draw(record_info(record), rng, maskgit_ratio)
        return self.build(record, task, mode, rng, drop_caption=drop)

    # ---- lengths without building ------------------------------------------------------------------
    def frames_of(self, span: str, t: int) -> int:
        """Latent frames of a video span (`video`, `frame`, `head`, `tail`) of a `t`-frame clip."""
        k = self.config.continuation_frames
        return {"video": t, "frame": 1, "head": k, "tail": t - k}[span]

    def length(self, info: RecordInfo, task: str, drop_caption: bool) -> int:
        """Exact length of the sequence `build` makes for this record and task."""
        spec = TASK_SPECS[task]
        t, h, w = info.video_shape
        audio = info.audio_shape[0] * info.audio_shape[1]
        n = 3 + (2 if info.height and info.width else 0)  # bos, task ... eos; aspect, short side
        if spec.text:
            n += 2 + (0 if drop_caption else min(info.text_len, self.config.max_text_tokens))
        if spec.video_in:
            n += 2 + self.frames_of(spec.video_in, t) * h * w
        if spec.audio_in:
            n += 2 + audio
        for out in spec.outputs:
            n += 2 + (audio if out == "audio" else self.frames_of(out, t) * h * w)
        return n

    # ---- building ----------------------------------------------------------------------------------
    def build(self, record: dict[str, Any], task: str, mode: int, rng: np.random.Generator, drop_caption: bool = False) -> TaskSequence:
        """The sequence of `task` in `mode` (sequence.PREFIX for AR, sequence.MASKGIT) for one record."""
        info = record_info(record)
        if task not in self.available(info) and task in self.config.mixture:
            raise TaskError(f"the record cannot serve task {task!r}")
        v, tok = self.vocab, self.t
        t, h, w = info.video_shape
        video = np.asarray(record["video_ids"], dtype=np.int64).reshape(t, h, w)
        gvideo = v.video_to_global(video)
        gaudio = None
        if info.has_audio:
            audio = np.asarray(record["audio_ids"], dtype=np.int64).reshape(info.audio_shape)
            gaudio = v.audio_to_global(audio).reshape(-1)  # level after level, coarse to fine

        spec = TASK_SPECS[task]
        text = None
        if spec.text:
            text = [] if drop_caption else list(record["text_ids"])[: self.config.max_text_tokens]
        box = self.draw_box(task, h, w, rng) if spec.mask else None
        prefix = self.prefix(task, info.height, info.width, text, gvideo, gaudio, box=box)
        outputs = [gaudio if out == "audio" else self.video_span(gvideo, out).reshape(-1) for out in spec.outputs]
        blocks = [(o, content, c) for (o, c), content in zip(self._output_markers(task), outputs)]

        ids = list(prefix)
        prefix_len = len(ids)
        spans = []
        for open_id, content, close_id in blocks:
            ids.append(open_id)
            spans.append((len(ids), len(ids) + len(content)))
            ids.extend(int(x) for x in content)
            ids.append(close_id)
        ids.append(tok["<eos>"])
        input_ids = np.asarray(ids, dtype=np.int64)
        labels = np.full_like(input_ids, IGNORE_INDEX)
        if mode == MASKGIT:
            positions = np.concatenate([np.arange(a, b) for a, b in spans])
            ratio = math.cos(math.pi / 2 * (1.0 - rng.random()))  # u in (0, 1]
            count = max(1, math.ceil(ratio * len(positions)))
            chosen = rng.choice(positions, size=count, replace=False)
            labels[chosen] = input_ids[chosen]
            input_ids[chosen] = tok["<mask>"]
        elif mode == PREFIX:
            labels[prefix_len + 1 :] = input_ids[prefix_len + 1 :]
        else:
            raise ValueError(f"unknown mode {mode}")
        return TaskSequence(input_ids, labels, prefix_len, spans, mode, task, box)

    def prefix(
        self,
        task: str,
        height: int,
        width: int,
        text: list[int] | None = None,
        video: np.ndarray | None = None,
        audio: np.ndarray | None = None,
        box: tuple[float, float, float, float] | None = None,
    ) -> list[int]:
        """Global ids before the output's opening marker, for training and for generation.

        `text`: local text ids (the task's text block; [] for the unconditional prefix of CFG);
        `video`: the whole clip's global video ids `[t, h, w]`, of which the task takes its input span
        (masked for in/outpainting with `box`, default `default_box(task)`); `audio`: global audio ids,
        level after level. height/width 0: no resolution tokens."""
        spec, v, tok = TASK_SPECS[task], self.vocab, self.t
        ids = [tok["<bos>"], v.task_id(task)]
        if height and width:
            ids += v.resolution_ids(height, width)
        if spec.text:
            ids += [tok["<bot_i>"], *v.text_to_global(list(text or [])), tok["<eot_i>"]]
        if spec.video_in:
            given = self.video_span(np.asarray(video), spec.video_in)
            if spec.mask:
                given = self.mask_video(given, task, box or self.default_box(task))
            ids += [tok["<bov_i>"], *given.reshape(-1), tok["<eov_i>"]]
        if spec.audio_in:
            ids += [tok["<boa_i>"], *audio, tok["<eoa_i>"]]
        return [int(i) for i in ids]

    def video_span(self, video: np.ndarray, span: str) -> np.ndarray:
        """The latent frames of `video` `[t, h, w]` a span names."""
        k = self.config.continuation_frames
        return {"video": video, "frame": video[:1], "head": video[:k], "tail": video[k:]}[span]

    def _output_markers(self, task: str) -> list[tuple[int, int]]:
        tok = self.t
        video, audio = (tok["<bov_o>"], tok["<eov_o>"]), (tok["<boa_o>"], tok["<eoa_o>"])
        return [audio if out == "audio" else video for out in TASK_SPECS[task].outputs]

    def output_layout(self, task: str, video_shape: tuple[int, int, int], audio_shape: tuple[int, int] = (0, 0)) -> Any:
        """What a sampler must produce for `task` (`sequence.OutputLayout`): each output block's
        markers and the id range of every position (video codes; audio codes of each RVQ level in turn)."""
        import torch

        t, h, w = video_shape
        levels, frames = audio_shape
        v = self.vocab

        def video_ranges(n: int) -> tuple[torch.Tensor, torch.Tensor]:
            return torch.full((n,), v.video_range.start), torch.full((n,), v.video_range.stop)

        def audio_ranges() -> tuple[torch.Tensor, torch.Tensor]:
            ranges = [v.audio_range(level) for level in range(levels)]
            return (torch.tensor([r.start for r in ranges]).repeat_interleave(frames),
                    torch.tensor([r.stop for r in ranges]).repeat_interleave(frames))

        spec = TASK_SPECS[task]
        contents = [audio_ranges() if out == "audio" else video_ranges(self.frames_of(out, t) * h * w) for out in spec.outputs]
        blocks = [OutputBlock(o, c, lo, hi) for (o, c), (lo, hi) in zip(self._output_markers(task), contents)]
        return OutputLayout(blocks, self.t["<eos>"])

    def default_box(self, task: str) -> tuple[float, float, float, float]:
        """(top, left, height, width) as shares of the latent grid: the central box of side `inpaint_box`
        (masked for inpainting) or `outpaint_keep` (kept for outpainting)."""
        side = self.config.inpaint_box if TASK_SPECS[task].mask == "box" else self.config.outpaint_keep
        return ((1 - side) / 2, (1 - side) / 2, side, side)

    def draw_box(self, task: str, h: int, w: int, rng: np.random.Generator) -> tuple[float, float, float, float]:
        """The box a training sequence uses: inpainting's at a random cell of the `h` x `w` grid, outpainting's
        central."""
        if TASK_SPECS[task].mask != "box":
            return self.default_box(task)
        side = self.config.inpaint_box
        bh, bw = max(1, round(h * side)), max(1, round(w * side))
        y, x = int(rng.integers(0, h - bh + 1)), int(rng.integers(0, w - bw + 1))
        return (y / h, x / w, bh / h, bw / w)

    def mask_video(self, gvideo: np.ndarray, task: str, box: tuple[float, float, float, float]) -> np.ndarray:
        """`gvideo` `[t, h, w]` with the box (shares of the grid) replaced by `<mask>` (inpainting), or
        everything outside it (outpainting); a box covers at least one cell."""
        _, h, w = gvideo.shape
        top, left, bh, bw = box
        y0, x0 = min(h - 1, round(top * h)), min(w - 1, round(left * w))
        y1, x1 = max(y0 + 1, round((top + bh) * h)), max(x0 + 1, round((left + bw) * w))
        inside = np.zeros((h, w), dtype=bool)
        inside[y0:y1, x0:x1] = True
        hidden = inside if TASK_SPECS[task].mask == "box" else ~inside
        return np.where(hidden[None], self.t["<mask>"], gvideo)

def group_by_length(
    lengths: Sequence[int], batch_size: int, rng: np.random.Generator | None = None, window: int = GROUP_WINDOW
) -> list[list[int]]:
    """Batches of indices into ``lengths`` with little padding, still in a random-looking order.

    Consecutive windows of ``batch_size * window`` indices are each sorted by length and cut into
    batches (so the input order, e.g. a shuffled epoch, still decides which samples meet); with ``rng``
    the batches are then shuffled, so long and short batches alternate over training.
    """
    if batch_size < 1 or window < 1:
        raise ValueError("batch_size and window must be at least 1")
    batches: list[list[int]] = []
    span = batch_size * window
    for start in range(0, len(lengths), span):
        chunk = sorted(range(start, min(start + span, len(lengths))), key=lambda j: lengths[j])
        batches += [chunk[b : b + batch_size] for b in range(0, len(chunk), batch_size)]
    if rng is not None:
        batches = [batches[int(b)] for b in rng.permutation(len(batches))]
    return batches


def padding_ratio(lengths: Sequence[int], batches: list[list[int]]) -> float:
    """Pad tokens over real tokens when each batch is padded to its longest sequence."""
    real = sum(lengths[i] for b in batches for i in b)
    padded = sum(max(lengths[i] for i in b) * len(b) for b in batches if b)
    return (padded - real) / max(real, 1)


def collate(sequences: list[TaskSequence], pad_id: int) -> dict[str, Any]:
    """Pad a list of sequences into batch tensors: input_ids, labels, prefix_len, lengths, modes, tasks."""
    import torch

    longest = max(len(s) for s in sequences)
    ids = torch.full((len(sequences), longest), pad_id, dtype=torch.long)
    labels = torch.full((len(sequences), longest), IGNORE_INDEX, dtype=torch.long)
    for i, s in enumerate(sequences):
        ids[i, : len(s)] = torch.from_numpy(s.input_ids)
        labels[i, : len(s)] = torch.from_numpy(s.labels)
    return {
        "input_ids": ids,
        "labels": labels,
        "prefix_len": torch.tensor([s.prefix_len for s in sequences]),
        "lengths": torch.tensor([len(s) for s in sequences]),
        "modes": torch.tensor([s.mode for s in sequences]),
        "tasks": torch.tensor([TASKS.index(s.task) for s in sequences]),
    }
