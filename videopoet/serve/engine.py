"""Batched generation on one loaded model: the server's jobs -> one sampler call -> media files.

A batch is a list of compatible jobs (`batch_key`: same task, sampler, sampling settings other than the
seed, and output length); each of a job's samples is one row of the sampler's batch. Prefixes are built,
and outputs decoded and written, exactly as `videopoet generate` does (`llm.generate.Generator`); only the
sampling is shared. The batch's random stream is seeded by its first job's seed, so a job alone in its
batch with one sample gives what `videopoet generate` gives with the same settings."""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from videopoet.data.tasks import TASK_SPECS
from videopoet.errors import UserError
from videopoet.serve.limits import FieldError
from videopoet.vocab import TASKS

SAMPLERS = ("ar", "maskgit")
# request field -> SamplingConfig field (the options `videopoet generate` takes)
_SAMPLING_FIELDS = {"steps": "steps", "cfg": "cfg_scale", "temperature": "temperature", "seed": "seed", "top_k": "top_k",
                    "top_p": "top_p", "choice_temperature": "choice_temperature"}


class Cancelled(UserError):
    """Every job of the running batch was cancelled: the sampler stops at its next model call."""


@dataclass
class Job:
    """One job as the engine sees it: its id, request parameters and output folder."""

    id: str
    params: dict[str, Any]
    out_dir: Path


class Engine:
    """The model, loaded once, and what the API needs to know of it."""

    def __init__(self, generator: Any) -> None:
        self.generator = generator

    @classmethod
    def load(cls, model_dir: str | Path, device: str = "cpu") -> Engine:
        from videopoet.llm.generate import Generator

        return cls(Generator(model_dir, device=device))

    # ---- what the model offers -------------------------------------------------------------------------
    def tasks(self) -> list[str]:
        """The tasks this model can run: trained on (mixture weight > 0) and with the tokenizers they need."""
        g = self.generator
        return [t for t in TASKS if g.tasks.mixture.get(t, 0) > 0 and (g.audio_tok is not None or not TASK_SPECS[t].needs_audio)]

    def info(self) -> dict[str, Any]:
        """`GET /v1/model`: tasks and their inputs, clip geometry, samplers and their defaults, vocabulary sizes."""
        g, v = self.generator, self.generator.vocab
        return {
            "tasks": {t: {"prompt": TASK_SPECS[t].text, "input": TASK_SPECS[t].input_media, "outputs": list(TASK_SPECS[t].outputs),
                          "box": self.box(t, None)} for t in self.tasks()},
            "clip": {"frames": g.frames, "fps": g.fps, "height": g.height, "width": g.width, "seconds": g.frames / g.fps,
                     "sample_rate": g.audio_tok.sample_rate if g.audio_tok is not None else None},
            "samplers": {s: asdict(g.default_sampling(s)) for s in SAMPLERS},
            "vocabulary": {"total": v.size, "special": v.special_range.size, "text": v.text_range.size,
                           "video": v.video_range.size, "audio": v.audio_range().size,
                           "audio_levels": v.audio_levels, "audio_codebook_size": v.audio_codebook_size},
            "max_text_tokens": g.tasks.max_text_tokens,
        }

    # ---- requests --------------------------------------------------------------------------------------
    def sampling(self, params: dict[str, Any]) -> Any:
        """The model's settings for the job's sampler with the fields the request gave."""
        changes = {name: params[field] for field, name in _SAMPLING_FIELDS.items() if params.get(field) is not None}
        try:
            return self.generator.sampling.for_sampler(params["sampler"], **changes)
        except ValueError as e:
            raise FieldError("sampler", str(e)) from None

    def batch_key(self, params: dict[str, Any]) -> tuple:
        """Jobs with equal keys run as one sampler call."""
        settings = {k: v for k, v in asdict(self.sampling(params)).items() if k != "seed"}
        return (params["task"], params["sampler"], tuple(sorted(settings.items())), params.get("seconds"))

    def request(self, params: dict[str, Any]) -> Any:
        from videopoet.llm.generate import GenerateRequest

        inputs = params.get("inputs") or {}
        return GenerateRequest(task=params["task"], prompt=params.get("prompt") or "", image=inputs.get("image"),
                               video=inputs.get("video"), audio=inputs.get("audio"), sampler=params["sampler"],
                               sampling=self.sampling(params), num_samples=params.get("num_samples", 1), seconds=params.get("seconds"),
                               box=self.box(params["task"], params.get("box")))

    def box(self, task: str, given: list[float] | None) -> tuple[float, float, float, float] | None:
        """The in/outpainting box (top, left, height, width as shares of the frame) a task uses: the given
        one, else the model's default (`TaskBuilder.default_box`); None for tasks that mask nothing."""
        if TASK_SPECS[task].mask is None:
            return None
        return tuple(given) if given is not None else self.generator.builder.default_box(task)

    def check(self, params: dict[str, Any]) -> None:
        """Raise `FieldError` when the model cannot run the request (before its uploads are looked at)."""
        g, task = self.generator, params.get("task")
        if task not in TASKS:
            raise FieldError("task", f"unknown task {task!r}; tasks are: {', '.join(TASKS)}")
        if task not in self.tasks():
            raise FieldError("task", f"this model cannot run {task} (not trained on it, or no audio tokenizer); it runs: {', '.join(self.tasks())}")
        if params.get("sampler") not in SAMPLERS:
            raise FieldError("sampler", f"must be ar or maskgit, got {params.get('sampler')!r}")
        spec = TASK_SPECS[task]
        if params.get("box") is not None and spec.mask is None:
            masked = [t for t in self.tasks() if TASK_SPECS[t].mask]
            raise FieldError("box", f"{task} takes no box (only {' and '.join(masked) or 'in/outpainting'} do)")
        if params.get("seconds") is not None:
            if not set(spec.outputs) & {"video", "tail"}:
                raise FieldError("seconds", f"{task} makes no video to extend")
            if g.tasks.mixture.get("video_continuation", 0) <= 0:
                raise FieldError("seconds", "extending needs video continuation, which this model was not trained on")
        if spec.text:
            n = len(g.text_tok.encode(params.get("prompt") or "", max_length=10**9))
            if n > g.tasks.max_text_tokens:
                raise FieldError("prompt", f"is {n} text tokens; the model's text budget is {g.tasks.max_text_tokens}")
        self.sampling(params)

    def needs(self, task: str) -> str | None:
        """The upload field a task needs: image, video, audio or None."""
        return TASK_SPECS[task].input_media

    # ---- running a batch -------------------------------------------------------------------------------
    def run(self, jobs: list[Job], progress: Callable[[float, int, int], None] | None = None,
            should_stop: Callable[[], bool] | None = None) -> dict[str, list[dict[str, Any]] | Exception]:
        """Run compatible `jobs` as one sampler call; per job, its sidecars or the error that failed it.
        `progress(fraction, step, steps)` is called on every model call; `should_stop()` raising `Cancelled`
        is checked there too."""
        import torch

        g = self.generator
        results: dict[str, list[dict[str, Any]] | Exception] = {}
        rows: list[tuple[Job, Any, int]] = []  # (job, request, sample index)
        conds: list[torch.Tensor] = []
        unconds: list[torch.Tensor] = []
        sampling = None
        for job in jobs:
            try:
                req = self.request(job.params)
                cond, uncond = g.prefixes(req, req.sampling)
            except UserError as e:
                results[job.id] = e
                continue
            sampling = sampling or req.sampling
            for i in range(req.num_samples):
                rows.append((job, req, i))
                conds.append(torch.tensor(cond))
                if uncond is not None:
                    unconds.append(torch.tensor(uncond))
        if not rows:
            return results
        first = rows[0][1]
        layout = g.builder.output_layout(first.task, g.latent, g.audio_shape())
        expected = sampling.steps + 1 if first.sampler == "maskgit" else layout.content_length + 2 * len(layout.blocks)
        calls = [0]

        def on_call(_module: Any, _args: Any) -> None:
            if should_stop is not None and should_stop():
                raise Cancelled()
            calls[0] += 1
            if progress is not None:
                progress(0.8 * min(1.0, calls[0] / expected), calls[0], expected)

        backbone = getattr(g.model, "model", g.model)  # the samplers call the backbone; the head is applied per slice
        hook = backbone.register_forward_pre_hook(on_call)
        started = time.perf_counter()
        try:
            content = g.sample(first.sampler, conds, layout, sampling, unconds or None)
        finally:
            hook.remove()
        sample_s = time.perf_counter() - started
        t0 = time.perf_counter()
        decoded = self.decode_batch(first, content, layout)  # None: per row, as `videopoet generate` does
        batch_decode_s = (time.perf_counter() - t0) / len(rows)

        def write_row(r: int, job: Job, req: Any, i: int) -> dict[str, Any]:
            t0 = time.perf_counter()
            stem = job.out_dir / f"{req.task}_{req.sampler}_{i:03d}"
            job.out_dir.mkdir(parents=True, exist_ok=True)
            if decoded is None:
                path = g.write(req, content[r], layout, stem, req.sampling)
            else:
                path = self.write(req.task, decoded[0][r] if decoded[0] is not None else None,
                                  decoded[1][r] if decoded[1] is not None else None, stem)
            sidecar = {
                "file": path.name, "job": job.id, "prompt": req.prompt, "task": req.task, "sampler": req.sampler,
                "settings": asdict(req.sampling), "seed": req.sampling.seed, "sample": i, "box": req.box,
                "inputs": {k: Path(v).name for k, v in (job.params.get("inputs") or {}).items()},
                "batch": {"jobs": len(jobs), "rows": len(rows), "row": r, "seed": sampling.seed},
                "timings": {"sample_s": sample_s, "decode_s": time.perf_counter() - t0 + (batch_decode_s if decoded is not None else 0.0)},
            }
            path.with_suffix(".json").write_text(json.dumps(sidecar, indent=2) + "\n")
            return sidecar

        # Rows decoded at once are encoded and written by several threads (the encoders release the GIL); rows
        # that go through `Generator.write` (extensions sample again) stay one at a time.
        writers = min(len(rows), os.cpu_count() or 1, 8) if decoded is not None else 1
        with ThreadPoolExecutor(max_workers=writers, thread_name_prefix="videopoet-serve-write") as pool:
            futures = [(job, pool.submit(write_row, r, job, req, i)) for r, (job, req, i) in enumerate(rows)
                       if not isinstance(results.get(job.id), Exception)]
            for n, (job, future) in enumerate(futures):  # in row order: a job's files stay in sample order
                try:
                    sidecar = future.result()
                except UserError as e:
                    results[job.id] = e
                    continue
                if not isinstance(results.get(job.id), Exception):
                    results.setdefault(job.id, []).append(sidecar)
                if progress is not None:
                    progress(0.8 + 0.2 * (n + 1) / len(futures), calls[0], expected)
        return results

    # ---- decoding a batch at once ----------------------------------------------------------------------
    def decode_batch(self, request: Any, content: Any, layout: Any) -> tuple[Any, Any] | None:
        """Every row's (frames `[B, T, H, W, 3]` or None, waveforms `[B, N]` or None) from one tokenizer call
        per modality: what `Generator._decode` does row by row. None for the outputs that need more than the
        sampled ids (continuation's given head, `seconds` extension): those go row by row through `Generator.write`."""
        g, v = self.generator, self.generator.vocab
        if "tail" in TASK_SPECS[request.task].outputs or request.seconds is not None:
            return None
        batch, start = content.shape[0], 0
        frames = audio = None
        _, h, w = g.latent
        for block in layout.blocks:
            part = content[:, start : start + len(block)].numpy()
            start += len(block)
            if block.open_id == v.token_id("<bov_o>"):
                ids = v.global_to_video(part)
                frames = g.video_tok.decode_to_frames(ids.reshape(batch, -1, h, w)).numpy()
            else:
                levels, n = g.audio_shape()
                audio = g.audio_tok.decode_to_waveforms(v.global_to_audio(part.reshape(batch, levels, n)))
        return frames, audio

    def write(self, task: str, frames: Any, audio: Any, stem: Path) -> Path:
        """One row's media file, as `videopoet generate` writes it (`Generator.write_media`)."""
        return self.generator.write_media(task, frames, audio, stem)
