"""Prompt (+ image / video / audio) -> tokens -> media files: `videopoet generate`.

Reads an exported model folder (`videopoet export`): the Hugging Face weights, `vocab.json`, and
`videopoet.json` (task config and the tokenizer folders the training records were made with). Builds the
task's prefix exactly as training did (`data/tasks.py`), samples the output with the AR or MaskGIT sampler,
decodes it with the media tokenizers, and writes MP4 (H.264, plus AAC when there is sound), PNG (a
text-to-image sample) or WAV (video-to-audio), each with a JSON sidecar of the same name.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from videopoet import media as io
from videopoet.config import from_dict
from videopoet.data.tasks import TASK_SPECS, TaskBuilder, TaskConfig
from videopoet.errors import UserError
from videopoet.llm.sampling import SamplingConfig, SamplingSection, sample_autoregressive, sample_maskgit
from videopoet.vocab import TASKS, SharedVocab


class GenerateError(UserError):
    """A model folder, task or input generation cannot work with."""


@dataclass
class GenerateRequest:
    task: str
    prompt: str = ""
    image: str | None = None
    video: str | None = None
    audio: str | None = None
    sampler: str = "maskgit"  # "ar" or "maskgit"
    sampling: SamplingConfig | None = None  # None: the model's defaults for the sampler (`Generator.default_sampling`)
    num_samples: int = 1
    box: tuple[float, float, float, float] | None = None  # in/outpainting box (top, left, height, width) as shares of the frame
    seconds: float | None = None  # extend video outputs to this length by repeated continuation (None: one clip)


class Generator:
    """An exported model with its tokenizers, ready to sample."""

    def __init__(self, model_dir: str | Path, device: str = "cpu") -> None:
        from transformers import LlamaForCausalLM

        from videopoet.data.pretokenize import load_tokenizers

        model_dir = Path(model_dir)
        if not (model_dir / "vocab.json").is_file():
            raise GenerateError(f"{model_dir} has no vocab.json: not a model folder written by `videopoet export`")
        meta_file = model_dir / "videopoet.json"
        if not meta_file.is_file():
            raise GenerateError(f"{model_dir} has no videopoet.json: not a model folder written by `videopoet export`")
        self.meta = json.loads(meta_file.read_text())
        self.vocab = SharedVocab.load(model_dir / "vocab.json")
        tokenizers = self.meta.get("tokenizers") or {}
        if not tokenizers.get("video") or not tokenizers.get("text"):
            raise GenerateError(f"{meta_file} names no tokenizer folders (export a run trained on `videopoet tokenize` records)")
        self.video_tok, self.audio_tok, self.text_tok, vocab = load_tokenizers(tokenizers["video"], tokenizers["text"], tokenizers.get("audio"), device)
        vocab.check_same(self.vocab, what="tokenizers'")
        self.model = LlamaForCausalLM.from_pretrained(model_dir).to(device).eval()
        self.tasks = from_dict(TaskConfig, self.meta.get("tasks") or {})
        self.sampling = from_dict(SamplingSection, self.meta.get("sampling") or {})
        self.builder = TaskBuilder(self.vocab, self.tasks)
        geometry = self.video_tok.geometry()
        self.frames, self.height, self.width = geometry["frames"], geometry["height"], geometry["width"]
        self.fps = self._trained_fps(tokenizers["video"])
        self.latent = self.video_tok.latent_shape(self.frames, self.height, self.width)

    def default_sampling(self, sampler: str, **changes: Any) -> SamplingConfig:
        """The model's sampling settings for `sampler` (its config's `sampling` section), with `changes`."""
        try:
            return self.sampling.for_sampler(sampler, **changes)
        except ValueError as e:
            raise GenerateError(str(e)) from None

    def _trained_fps(self, video_tokenizer: str) -> float:
        """The frame rate the model's clips had: the export's clip geometry, else (an export made before
        it was recorded) the rate the video tokenizer trained at, from its folder."""
        fps = (self.meta.get("clip") or {}).get("fps")
        if fps is None:
            from videopoet.tokenizers.checkpoint import load_tokenizer_config

            fps = (load_tokenizer_config(video_tokenizer, "video").get("training") or {}).get("fps")
        if not fps:
            raise GenerateError("the model folder records no clip frame rate (re-export it with this version)")
        return float(fps)

    # ---- inputs ----------------------------------------------------------------------------------------
    def audio_shape(self) -> tuple[int, int]:
        """(levels, frames) of one clip's audio codes: the shape of an audio output block ((0, 0) without
        an audio tokenizer)."""
        if self.audio_tok is None:
            return (0, 0)
        samples = round(self.frames / self.fps * self.audio_tok.sample_rate)
        return (self.audio_tok.config.levels, self.audio_tok.frames_for(samples))

    def _check_size(self, frames: np.ndarray, what: str) -> None:
        if frames.shape[1:3] != (self.height, self.width):
            raise GenerateError(
                f"the {what} is {frames.shape[2]}x{frames.shape[1]} but the model makes {self.width}x{self.height} clips; "
                "resize or crop it first"
            )

    def _video_input(self, request: GenerateRequest) -> np.ndarray:
        """The input clip's global video ids `[t, h, w]` (the task's prefix takes its span and masks it)."""
        if TASK_SPECS[request.task].input_media == "image":
            if request.image is None:
                raise GenerateError(f"{request.task} needs --image")
            frames = io.read_image(request.image)
            self._check_size(frames, "image")
        else:
            if request.video is None:
                raise GenerateError(f"{request.task} needs --video")
            frames = io.read_clip(request.video, 0.0, self.frames, self.fps, pad=False)
            self._check_size(frames, "video")
        return self.vocab.video_to_global(self.video_tok.encode_media(frames[None])[0])

    def _audio_input(self, request: GenerateRequest) -> np.ndarray:
        if request.audio is None:
            raise GenerateError(f"{request.task} needs --audio")
        if self.audio_tok is None:
            raise GenerateError("this model was trained without an audio tokenizer")
        wav = io.read_audio(request.audio, 0.0, self.frames / self.fps, self.audio_tok.sample_rate, pad=True)
        codes = self.audio_tok.encode_waveforms(wav[None])[0]
        return self.vocab.audio_to_global(codes).reshape(-1)

    def prefixes(self, request: GenerateRequest, sampling: SamplingConfig) -> tuple[list[int], list[int] | None]:
        """The conditional prefix and, for text tasks with guidance, the unconditional one."""
        task, spec = request.task, TASK_SPECS[request.task]
        text = None
        if spec.text:
            text = self.text_tok.encode(request.prompt, max_length=10**9)
            if len(text) > self.tasks.max_text_tokens:
                raise GenerateError(f"the prompt is {len(text)} text tokens; the model's text budget is {self.tasks.max_text_tokens}")
        video = self._video_input(request) if spec.video_in else None
        audio = self._audio_input(request) if spec.audio_in else None
        cond = self.builder.prefix(task, self.height, self.width, text, video, audio, box=request.box)
        uncond = None
        if spec.text and sampling.cfg_scale != 1.0:
            uncond = self.builder.prefix(task, self.height, self.width, [], video, audio, box=request.box)
        return cond, uncond

    # ---- sampling and decoding -------------------------------------------------------------------------
    def generate(self, request: GenerateRequest, out_dir: str | Path, name: str | None = None) -> list[dict[str, Any]]:
        """Sample `num_samples` outputs and write them with JSON sidecars (files `NAME_000.mp4`, ...; NAME
        defaults to `TASK_SAMPLER`); returns the sidecars."""
        if request.task not in TASKS:
            raise GenerateError(f"unknown task {request.task!r}; tasks are: {', '.join(TASKS)}")
        if self.tasks.mixture.get(request.task, 0) <= 0:
            raise GenerateError(f"this model was not trained on {request.task} (its task mixture gives it no weight)")
        spec = TASK_SPECS[request.task]
        if spec.needs_audio and self.audio_tok is None:
            raise GenerateError(f"{request.task} needs an audio tokenizer, and this model has none")
        if request.sampler not in ("ar", "maskgit"):
            raise GenerateError(f"--sampler must be ar or maskgit, got {request.sampler!r}")
        if request.seconds is not None:
            if not set(spec.outputs) & {"video", "tail"} or request.seconds <= 0:
                raise GenerateError("--seconds takes a positive length and a task that makes video")
            if self.tasks.mixture.get("video_continuation", 0) <= 0:
                raise GenerateError("--seconds extends clips with video continuation, which this model was not trained on")
        out_dir = Path(out_dir)
        out_dir.mkdir(parents=True, exist_ok=True)
        audio_shape = self.audio_shape()
        layout = self.builder.output_layout(request.task, self.latent, audio_shape)
        base = request.sampling or self.default_sampling(request.sampler)
        cond, uncond = self.prefixes(request, base)
        results = []
        for i in range(request.num_samples):
            sampling = SamplingConfig(**{**asdict(base), "seed": base.seed + i})
            started = time.perf_counter()
            prefixes = [torch.tensor(cond)]
            unconds = [torch.tensor(uncond)] if uncond is not None else None
            content = self.sample(request.sampler, prefixes, layout, sampling, unconds)
            sample_s = time.perf_counter() - started
            path = self.write(request, content[0], layout, out_dir / f"{name or f'{request.task}_{request.sampler}'}_{i:03d}", sampling)
            sidecar = {
                "file": path.name,
                "prompt": request.prompt,
                "task": request.task,
                "sampler": request.sampler,
                "settings": asdict(sampling),
                "seed": sampling.seed,
                "inputs": {"image": request.image, "video": request.video, "audio": request.audio},
                "timings": {"sample_s": sample_s, "decode_s": time.perf_counter() - started - sample_s},
            }
            path.with_suffix(".json").write_text(json.dumps(sidecar, indent=2) + "\n")
            results.append(sidecar)
        return results

    def sample(self, sampler: str, prefixes: list[torch.Tensor], layout: Any, sampling: SamplingConfig,
               uncond: list[torch.Tensor] | None = None) -> torch.Tensor:
        """One sampler call (`ar` or `maskgit`) over a batch: each prefix (and its unconditional twin, for
        guidance) is a row; returns the sampled content ids `[rows, layout.content_length]`."""
        pad, mask = self.vocab.token_id("<pad>"), self.vocab.token_id("<mask>")
        if sampler == "ar":
            return sample_autoregressive(self.model, prefixes, layout, sampling, pad, uncond)
        return sample_maskgit(self.model, prefixes, layout, sampling, pad, mask, uncond)

    def _decode(self, request: GenerateRequest, content: torch.Tensor, layout: Any) -> tuple[np.ndarray | None, np.ndarray | None]:
        """Sampled content -> (uint8 frames `[T, H, W, 3]` or None, waveform or None)."""
        v = self.vocab
        t, h, w = self.latent
        video_ids = audio = None
        start = 0
        for block in layout.blocks:
            part = content[start : start + len(block)].numpy()
            start += len(block)
            if block.open_id == v.token_id("<bov_o>"):
                video_ids = v.global_to_video(part)
            else:
                levels, frames = self.audio_shape()
                codes = v.global_to_audio(part.reshape(levels, frames))
                audio = self.audio_tok.decode_to_waveforms(codes[None])[0]
        if video_ids is None:
            return None, audio
        spec = TASK_SPECS[request.task]
        if "tail" in spec.outputs:  # continuation: the given head, then the sampled rest
            head = self.builder.video_span(self._video_input(request), spec.video_in)
            video_ids = np.concatenate([v.global_to_video(head.reshape(-1)), video_ids])
        latent_t = len(video_ids) // (h * w)
        return self.video_tok.decode_to_frames(video_ids.reshape(latent_t, h, w)).numpy(), audio

    def _extend(self, request: GenerateRequest, frames: np.ndarray, audio: np.ndarray | None,
                sampling: SamplingConfig) -> tuple[np.ndarray, np.ndarray | None]:
        """Continue `frames` until they last `request.seconds`: each round encodes the last frames as the
        continuation task's input latent frames, samples the rest of a clip, and appends its new frames;
        the sound of each new part comes from video-to-audio on that clip."""
        need = round(request.seconds * self.fps)
        k, tf = self.tasks.continuation_frames, self.video_tok.config.temporal_factor
        overlap = 1 + (k - 1) * tf  # frames that make k latent frames
        _, h, w = self.latent
        layout = self.builder.output_layout("video_continuation", self.latent)
        with_audio = audio is not None and self.tasks.mixture.get("video_to_audio", 0) > 0
        parts, sounds, total, round_ = [frames], [audio], len(frames), 0
        while total < need:
            round_ += 1
            step = SamplingConfig(**{**asdict(sampling), "seed": sampling.seed + 1000 * round_})
            given = self.video_tok.encode_frames(parts[-1][-overlap:]).numpy()
            prefix = [torch.tensor(self.builder.prefix("video_continuation", self.height, self.width, None, self.vocab.video_to_global(given)))]
            content = self.sample(request.sampler, prefix, layout, step)
            ids = np.concatenate([given.reshape(-1), self.vocab.global_to_video(content[0].numpy())])
            clip = self.video_tok.decode_to_frames(ids.reshape(-1, h, w)).numpy()
            parts.append(clip[overlap:])
            total += len(clip) - overlap
            if with_audio:
                sounds.append(self._clip_audio(clip, step)[round(overlap / self.fps * self.audio_tok.sample_rate) :])
        frames = np.concatenate(parts)[:need]
        if audio is None:
            return frames, None
        wav = np.concatenate(sounds) if with_audio else np.concatenate([audio, np.zeros(round(need / self.fps * self.audio_tok.sample_rate), np.float32)])
        return frames, wav[: round(need / self.fps * self.audio_tok.sample_rate)]

    def _clip_audio(self, clip: np.ndarray, sampling: SamplingConfig) -> np.ndarray:
        """Video-to-audio on one decoded clip (the sound of an extension)."""
        gvideo = self.vocab.video_to_global(self.video_tok.encode_frames(clip).numpy())
        prefix = [torch.tensor(self.builder.prefix("video_to_audio", self.height, self.width, None, gvideo))]
        levels, frames = self.audio_shape()
        layout = self.builder.output_layout("video_to_audio", self.latent, (levels, frames))
        content = self.sample("maskgit", prefix, layout, sampling)[0].numpy()
        codes = self.vocab.global_to_audio(content.reshape(levels, frames))
        return self.audio_tok.decode_to_waveforms(codes[None])[0]

    def write(self, request: GenerateRequest, content: torch.Tensor, layout: Any, stem: Path, sampling: SamplingConfig) -> Path:
        """One sampled row (`sample`'s content ids) decoded and written at `stem` + suffix, extended to
        `request.seconds` first when given; returns the file's path."""
        frames, audio = self._decode(request, content, layout)
        still = "frame" in TASK_SPECS[request.task].outputs  # text-to-image: one frame, written as PNG
        if frames is not None and request.seconds is not None and not still:
            frames, audio = self._extend(request, frames, audio, sampling)
        return self.write_media(request.task, frames, audio, stem)

    def write_media(self, task: str, frames: np.ndarray | None, audio: np.ndarray | None, stem: Path) -> Path:
        """One sample's file at `stem` + suffix: WAV (sound only), PNG (text-to-image) or MP4 (with AAC
        when there is sound), at the model's frame rate and sample rate."""
        if frames is None:
            path = stem.with_suffix(".wav")
            io.write_audio(path, audio, self.audio_tok.sample_rate)
            return path
        if "frame" in TASK_SPECS[task].outputs:
            path = stem.with_suffix(".png")
            io.write_image(path, frames[0])
            return path
        path = stem.with_suffix(".mp4")
        if audio is not None:
            io.write_video(path, frames, self.fps, audio=audio, sample_rate=self.audio_tok.sample_rate)
        else:
            io.write_video(path, frames, self.fps)
        return path
