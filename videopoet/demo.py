"""`videopoet demo`: the whole pipeline on the built-in shapes dataset, scored by the shapes oracle.

Stages, each writing under `DIR` and recorded in `DIR/stages.json` when done (re-running the command
continues after the last finished stage; a stopped tokenizer or LLM training resumes from its checkpoint):

1. `data`    shapes clips with tones and captions (`data/shapes`)
2. `text`    SentencePiece on the captions (`tokenizers/text`)
3. `video`   the video tokenizer (`tokenizers/video`)
4. `audio`   the audio tokenizer (`tokenizers/audio`)
5. `ingest`  clip index (`data/index`)
6. `tokenize` token records (`data/tokens`)
7. `llm`     the prefix LM with DeepSpeed on `nproc` local ranks (`llm`), then exported (`model`)
8. `generate` text-to-video+audio for prompts of seen and held-out combinations with both samplers,
             video-to-audio and audio-to-video on validation clips (`samples/`, MP4/WAV + JSON sidecars)
9. `report`  the oracle's scores, tokenizer metrics, the loss curve and timings (`report.json`,
             `report.md`, `contact_sheet.png`)

The sizes come from the project config (default `configs/tiny.yaml`): its `demo` section, and the sections
of every stage (`video_tokenizer.train.steps`, `llm_train.steps`, ...), so `videopoet demo --config C
demo.prompts_per_split=4 llm_train.steps=100` makes a quicker, weaker run.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from videopoet.config import load_project_config, to_dict
from videopoet.errors import UserError
from videopoet.runs import atomic_write_json, check_settings


class DemoError(UserError):
    """A demo stage that could not finish."""


@dataclass
class DemoConfig:
    """What the demo makes and samples (project config section `demo`; how it samples: section `sampling`)."""

    clips: int = 480  # shapes clips written (split into train / val / held-out by the `shapes` section)
    seed: int = 0
    nproc: int = 2  # LLM training ranks
    task: str = "text_to_video_audio"  # the prompt task scored for prompt accuracy
    samplers: tuple[str, ...] = ("ar", "maskgit")
    prompts_per_split: int = 12  # prompts of seen (training) and of held-out combinations
    cross_modal_clips: int = 12  # validation clips for video-to-audio and audio-to-video
    tokenize_batch_size: int = 8
    contact_sheet_samples: int = 6  # samples per sampler on the contact sheet

    def __post_init__(self) -> None:
        self.samplers = tuple(self.samplers)
        if self.clips < 20 or self.nproc < 1 or self.prompts_per_split < 1 or self.cross_modal_clips < 0:
            raise ValueError("demo needs clips >= 20, nproc >= 1, prompts_per_split >= 1, cross_modal_clips >= 0")
        if not self.samplers or any(s not in ("ar", "maskgit") for s in self.samplers):
            raise ValueError(f"demo samplers must be ar and/or maskgit, got {list(self.samplers)}")


STAGES = ("data", "text", "video", "audio", "ingest", "tokenize", "llm", "generate", "report")


class Demo:
    """The demo's stages over one output folder."""

    def __init__(self, out: str | Path, config_path: str | Path | None, overrides: list[str] | None = None) -> None:
        self.out = Path(out)
        self.config_path = Path(config_path) if config_path is not None else None
        self.overrides = list(overrides or [])
        self.sections = load_project_config(self.config_path, self.overrides)
        self.demo: DemoConfig = self.sections["demo"]
        self.paths = {
            "shapes": self.out / "data" / "shapes",
            "index": self.out / "data" / "index",
            "tokens": self.out / "data" / "tokens",
            "text": self.out / "tokenizers" / "text",
            "video": self.out / "tokenizers" / "video",
            "audio": self.out / "tokenizers" / "audio",
            "llm": self.out / "llm",
            "model": self.out / "model",
            "samples": self.out / "samples",
        }
        self.state_file = self.out / "stages.json"
        shapes, ingest, video = self.sections["shapes"], self.sections["ingest"], self.sections["video_tokenizer"]
        drawn = (shapes.frames, shapes.fps, (shapes.size, shapes.size))
        cut = (ingest.frames, ingest.fps, tuple(ingest.size) if ingest.size else None)
        tokenized = (video.model.frames, video.fps, (video.model.height, video.model.width))
        if not drawn == cut == tokenized:
            raise DemoError(f"the shapes are drawn at (frames, fps, size) {drawn}, ingest cuts {cut} and the video "
                            f"tokenizer takes {tokenized}; set them once, in the config's clip section")

    # ---- bookkeeping ------------------------------------------------------------------------------------
    def _state(self) -> dict[str, Any]:
        return json.loads(self.state_file.read_text()) if self.state_file.is_file() else {"stages": {}}

    def _check_same_config(self) -> None:
        config = {k: to_dict(v) for k, v in self.sections.items()}
        check_settings(self.out / "config.json", config, "a demo", "use a new --out folder or the same config")

    def _write_state(self, state: dict[str, Any]) -> None:
        atomic_write_json(self.state_file, state)

    def _run_stage(self, name: str, fn: Callable[[], dict[str, Any] | None], log: Callable[[str], None]) -> None:
        state = self._state()
        if name in state["stages"]:
            log(f"[{name}] done earlier ({state['stages'][name]['seconds']:.0f} s), skipped")
            return
        log(f"[{name}] ...")
        started = time.perf_counter()
        result = fn() or {}
        seconds = time.perf_counter() - started
        state = self._state()
        state["stages"][name] = {"seconds": seconds, **result}
        self._write_state(state)
        log(f"[{name}] {seconds:.0f} s")

    def run(self, log: Callable[[str], None] = print) -> dict[str, Any]:
        """Run every stage not done yet; returns the report."""
        import torch

        if not torch.cuda.is_available():
            os.environ.setdefault("DS_ACCELERATOR", "cpu")  # DeepSpeed on the CPU (gloo), as the tests run it
        self._check_same_config()
        for name in STAGES:
            self._run_stage(name, getattr(self, f"stage_{name}"), log)
        return json.loads((self.out / "report.json").read_text())

    # ---- stages -----------------------------------------------------------------------------------------
    def stage_data(self) -> dict[str, Any]:
        from videopoet.data.shapes_dataset import write_shapes_dataset

        write_shapes_dataset(self.paths["shapes"], num_clips=self.demo.clips, seed=self.demo.seed, config=self.sections["shapes"])
        return {"clips": self.demo.clips}

    def stage_text(self) -> dict[str, Any]:
        from videopoet.tokenizers.text import train_text_tokenizer

        tok = train_text_tokenizer(self.paths["shapes"] / "metadata.jsonl", self.paths["text"], self.sections["text_tokenizer"])
        return {"vocab_size": tok.vocab_size}

    def _media_tokenizer(self, kind: str) -> dict[str, Any]:
        folder = self.paths[kind]
        if (folder / "train_result.json").is_file():  # written after the tokenizer folder is complete
            return json.loads((folder / "train_result.json").read_text())
        from videopoet.data.sources import training_source
        from videopoet.tokenizers.registry import get_family

        resume = (folder / "checkpoints" / "latest").exists()
        family = get_family(kind)
        config = self.sections[family.section]
        source = training_source(family, "shapes", config, self.sections["shapes"])
        result = family.train(config, source, folder, resume=resume)
        metrics = {k: float(v) for k, v in (result.get("val") or {}).items() if isinstance(v, int | float)}
        summary = {"steps": config.train.steps, "val": metrics}
        (folder / "train_result.json").write_text(json.dumps(summary, indent=2) + "\n")
        return summary

    def stage_video(self) -> dict[str, Any]:
        return self._media_tokenizer("video")

    def stage_audio(self) -> dict[str, Any]:
        return self._media_tokenizer("audio")

    def stage_ingest(self) -> dict[str, Any]:
        from videopoet.data.ingest import ingest

        report = ingest(self.paths["shapes"], self.paths["index"], self.sections["ingest"])
        return {k: report[k] for k in ("files_seen", "files_ingested", "files_skipped", "clips")}

    def stage_tokenize(self) -> dict[str, Any]:
        from videopoet.data.pretokenize import pretokenize

        report = pretokenize(self.paths["index"], self.paths["tokens"], self.paths["video"], self.paths["text"], self.paths["audio"],
                             batch_size=self.demo.tokenize_batch_size, num_workers=1)
        return {"clips": report["clips"], "clips_per_s": report["clips_per_s"]}

    def stage_llm(self) -> dict[str, Any]:
        from videopoet.llm.export import export_run
        from videopoet.llm.parallelize import launch_local

        status = launch_local(self.demo.nproc, self.config_path, self.overrides, self.paths["tokens"], self.paths["llm"], resume="auto")
        if status:
            raise DemoError(f"LLM training exited with status {status}; its log is above, its run folder {self.paths['llm']}; "
                            "run the demo again to resume it")
        meta = export_run(self.paths["llm"], self.paths["model"])
        return {"step": meta["step"]}

    def stage_generate(self) -> dict[str, Any]:
        return generate_samples(self.paths["model"], self.paths["shapes"], self.paths["samples"], self.demo, self.sections["sampling"])

    def stage_report(self) -> dict[str, Any]:
        from videopoet.eval.demo_report import tokenizer_round_trip, write_report

        round_trip = tokenizer_round_trip(self.paths["shapes"], self.paths["video"], self.paths["audio"],
                                          self.demo.prompts_per_split, self.sections["shapes"].fps)
        report = write_report(self.out, self._state(), self.demo, round_trip)
        return {"prompt_accuracy": report["prompt_accuracy"]}


def run_demo(out: str | Path, config_path: str | Path | None, overrides: list[str] | None = None,
             log: Callable[[str], None] = print) -> dict[str, Any]:
    """Run (or continue) the demo in `out`; returns the report."""
    return Demo(out, config_path, overrides).run(log)


# ---- samples ------------------------------------------------------------------------------------------


def demo_prompts(config: DemoConfig) -> list[dict[str, Any]]:
    """The prompts the demo samples: `prompts_per_split` of combinations seen in training and as many
    of the held-out ones (cycled), each with its own seed."""
    from videopoet.data.synthetic import HELDOUT_COMBOS, TRAIN_COMBOS

    rng = np.random.default_rng(config.seed)
    seen = [TRAIN_COMBOS[i] for i in rng.permutation(len(TRAIN_COMBOS))]
    picks = {"seen": [seen[i % len(seen)] for i in range(config.prompts_per_split)],
             "heldout": [HELDOUT_COMBOS[i % len(HELDOUT_COMBOS)] for i in range(config.prompts_per_split)]}
    prompts = []
    for split, combos in picks.items():
        for i, (color, shape, direction) in enumerate(combos):
            prompts.append({"split": split, "name": f"{split}_{i:02d}", "prompt": f"a {color} {shape} moving {direction}",
                            "color": color, "shape": shape, "direction": direction, "seed": config.seed + i})
    return prompts


def generate_samples(model_dir: Path, shapes_dir: Path, out: Path, config: DemoConfig, sampling: Any) -> dict[str, Any]:
    """Sample every demo prompt with each sampler, and video-to-audio / audio-to-video on validation clips;
    writes the media, their sidecars and `out/metadata.jsonl` (what each file should show, for the oracle)."""
    from tqdm.auto import tqdm

    from videopoet.data.shapes_dataset import read_metadata
    from videopoet.llm.generate import GenerateRequest, Generator

    gen = Generator(model_dir)
    rows: list[dict[str, Any]] = []
    jobs: list[tuple[GenerateRequest, Path, str, dict[str, Any]]] = []
    for p in demo_prompts(config):  # samplers alternate, so both are timed under the same machine load
        for sampler in config.samplers:
            request = GenerateRequest(task=config.task, prompt=p["prompt"], sampler=sampler, sampling=sampling.for_sampler(sampler, seed=p["seed"]))
            expected = {k: p[k] for k in ("color", "shape", "direction")}
            jobs.append((request, out / sampler / p["split"], p["name"], {"group": f"{sampler}/{p['split']}", **expected}))
    val = [r for r in read_metadata(shapes_dir / "metadata.jsonl") if r.get("split") == "val"][: config.cross_modal_clips]
    for i, row in enumerate(val):
        clip = str(shapes_dir / row["file"])
        for task, kind in (("video_to_audio", {"video": clip}), ("audio_to_video", {"audio": clip})):
            request = GenerateRequest(task=task, sampler="maskgit", sampling=sampling.for_sampler("maskgit", seed=config.seed + i), **kind)
            jobs.append((request, out / task, f"val_{i:02d}", {"group": task, "shape": row["shape"], "source": row["file"]}))
    for request, folder, name, expected in tqdm(jobs, desc="generate", unit="sample"):
        sidecar = gen.generate(request, folder, name=name)[0]
        rows.append({"file": (folder / sidecar["file"]).relative_to(out).as_posix(), **expected,
                     "sample_s": sidecar["timings"]["sample_s"]})
    with open(out / "metadata.jsonl", "w", encoding="utf-8") as f:
        f.writelines(json.dumps(r) + "\n" for r in rows)
    return {"samples": len(rows)}


__all__ = ["DemoConfig", "Demo", "DemoError", "STAGES", "demo_prompts", "generate_samples", "run_demo"]
