"""The demo's report: oracle scores of the generated samples, tokenizer metrics, the LLM's loss curve and
sampling speed, as `report.json`, `report.md` and a contact sheet of sample frames."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from videopoet.data.shapes_dataset import read_metadata
from videopoet.eval.shapes import evaluate

SEEN_TARGET = 0.9  # prompt accuracy on seen combinations, each sampler
SPEEDUP_TARGET = 10.0  # MaskGIT seconds per clip vs autoregressive


def score_samples(samples: Path) -> dict[str, Any]:
    """Oracle accuracy per group of `samples/metadata.jsonl` ("ar/seen", "maskgit/heldout",
    "video_to_audio", ...), with each group's mean sampling seconds per clip."""
    rows = read_metadata(samples / "metadata.jsonl")
    groups: dict[str, list[dict[str, Any]]] = {}
    for row in rows:
        groups.setdefault(row["group"], []).append(row)
    scores = {}
    for group, members in groups.items():
        result = evaluate([samples / r["file"] for r in members], metadata=samples / "metadata.jsonl")
        scores[group] = {
            "samples": len(members),
            "accuracy": result["accuracy"],
            "seconds_per_clip": float(np.mean([r["sample_s"] for r in members])),
            "files": [{"file": r["file"], "reading": f["reading"], "correct": f["correct"]}
                      for r, f in zip(members, result["files"], strict=True)],  # evaluate keeps the order
        }
    return scores


def tokenizer_round_trip(shapes_dir: Path, video_dir: Path, audio_dir: Path, clips: int, fps: float) -> dict[str, Any]:
    """The oracle's accuracy on dataset clips passed through the trained tokenizers and back, per split
    ("val": seen combinations, "heldout"): the most the LLM's samples can score, since whatever it
    generates is decoded by the same tokenizers. Video: color, shape, direction and all three from the
    decoded frames; audio: the shape read from the decoded tone's pitch."""
    from videopoet.eval.shapes_reader import pitch_to_shape, read_frames
    from videopoet.media import read_audio, read_clip
    from videopoet.metrics.audio import read_audio_pitch
    from videopoet.tokenizers.checkpoint import load_tokenizer

    video, audio = load_tokenizer(video_dir, "video").eval(), load_tokenizer(audio_dir, "audio").eval()
    cfg = video.config
    rows = read_metadata(shapes_dir / "metadata.jsonl")
    result: dict[str, Any] = {}
    for split in ("val", "heldout"):
        chosen = [r for r in rows if r.get("split") == split][:clips]
        hits = {k: 0 for k in ("color", "shape", "direction", "all", "pitch")}
        for row in chosen:
            path = shapes_dir / row["file"]
            frames = read_clip(path, 0.0, cfg.frames, fps, size=(cfg.height, cfg.width), pad=True)
            reading = read_frames(video.decode_media(video.encode_media(frames[None]))[0])
            got = {k: getattr(reading, k) == row[k] for k in ("color", "shape", "direction")}
            wav = read_audio(path, 0.0, cfg.frames / fps, sample_rate=audio.config.sample_rate, pad=True)
            back = audio.decode_media(audio.encode_media(wav[None]), length=wav.shape[0])[0]
            got["pitch"] = pitch_to_shape(read_audio_pitch(back, audio.config.sample_rate)) == row["shape"]
            got["all"] = got["color"] and got["shape"] and got["direction"]
            for k, ok in got.items():
                hits[k] += ok
        result[split] = {"clips": len(chosen), **{k: v / max(1, len(chosen)) for k, v in hits.items()}}
    return result


def loss_curve(run_dir: Path) -> dict[str, list[list[float]]]:
    """[step, loss] and [step, val_loss] pairs from the run's history.jsonl."""
    history = read_metadata(run_dir / "history.jsonl") if (run_dir / "history.jsonl").is_file() else []
    return {
        "train": [[r["step"], r["loss"]] for r in history if "loss" in r],
        "val": [[r["step"], r["val_loss"]] for r in history if "val_loss" in r],
        "tokens_per_s": [[r["step"], r["tokens_per_s"]] for r in history if "tokens_per_s" in r],
    }


def contact_sheet(samples: Path, scores: dict[str, Any], per_group: int, out: Path) -> list[str]:
    """A PNG with one row per sample (frames 0, 1/4, 1/2, 3/4 and last) of the first `per_group` videos
    of each prompt group; returns the files in row order."""
    from videopoet import media as io

    rows, files = [], []
    for group in sorted(g for g in scores if "/" in g):
        for entry in scores[group]["files"][:per_group]:
            path = samples / entry["file"]
            info = io.probe(path).video[0]
            frames = io.read_clip(path, 0.0, int(info.num_frames or 17), float(info.fps or 8.0), pad=True)
            picks = np.linspace(0, len(frames) - 1, 5).round().astype(int)
            gap = np.full((frames.shape[1], 2, 3), 255, np.uint8)
            rows.append(np.concatenate([x for i in picks for x in (frames[i], gap)], axis=1))
            files.append(entry["file"])
    if not rows:
        return []
    width = max(r.shape[1] for r in rows)
    rows = [np.pad(r, ((0, 2), (0, width - r.shape[1]), (0, 0)), constant_values=255) for r in rows]
    io.write_image(out, np.concatenate(rows, axis=0))
    return files


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{value:.0%}"


def check_targets(prompt_accuracy: dict[str, dict[str, float | None]], speedup: float | None) -> dict[str, bool]:
    """The demo's targets: each sampler's accuracy on seen prompts, and with both samplers MaskGIT's
    speed-up over AR and an accuracy no lower than AR's. A missing accuracy counts as 0."""
    targets = {f"{s}_seen_accuracy_at_least_{SEEN_TARGET:.0%}": (acc["seen"] or 0) >= SEEN_TARGET for s, acc in prompt_accuracy.items()}
    if speedup is not None:
        targets[f"maskgit_at_least_{SPEEDUP_TARGET:g}x_faster"] = speedup >= SPEEDUP_TARGET
        targets["maskgit_accuracy_not_lower"] = (prompt_accuracy["maskgit"]["seen"] or 0) >= (prompt_accuracy["ar"]["seen"] or 0)
    return targets


def write_report(out: Path, state: dict[str, Any], demo: Any, round_trip: dict[str, Any] | None = None) -> dict[str, Any]:
    """Score the samples under `out/samples` and write `out/report.json`, `out/report.md` and
    `out/contact_sheet.png`; returns the report. `round_trip`: `tokenizer_round_trip`'s result, if measured."""
    samples = out / "samples"
    scores = score_samples(samples)
    stages = state.get("stages", {})
    prompt_accuracy = {
        sampler: {split: scores.get(f"{sampler}/{split}", {}).get("accuracy", {}).get("all") for split in ("seen", "heldout")}
        for sampler in demo.samplers
    }
    seconds = {s: float(np.mean([scores[g]["seconds_per_clip"] for g in scores if g.startswith(s + "/")])) for s in demo.samplers}
    speedup = seconds["ar"] / seconds["maskgit"] if {"ar", "maskgit"} <= set(seconds) and seconds["maskgit"] > 0 else None
    targets = check_targets(prompt_accuracy, speedup)
    sheet_files = contact_sheet(samples, scores, demo.contact_sheet_samples, out / "contact_sheet.png")
    report = {
        "prompt_accuracy": prompt_accuracy,
        "video_to_audio_pitch_accuracy": scores.get("video_to_audio", {}).get("accuracy", {}).get("pitch"),
        "audio_to_video_shape_accuracy": scores.get("audio_to_video", {}).get("accuracy", {}).get("shape"),
        "seconds_per_clip": seconds,
        "maskgit_speedup": speedup,
        "targets": targets,
        "tokenizers": {k: stages.get(k, {}) for k in ("text", "video", "audio")},
        "tokenizer_round_trip": round_trip,
        "llm": {"steps": stages.get("llm", {}).get("step"), "loss_curve": loss_curve(out / "llm")},
        "stage_seconds": {k: v["seconds"] for k, v in stages.items()},
        "total_seconds": sum(v["seconds"] for v in stages.values()),
        "groups": scores,
        "contact_sheet": {"file": "contact_sheet.png", "rows": sheet_files},
    }
    (out / "report.json").write_text(json.dumps(report, indent=2) + "\n")
    (out / "report.md").write_text(format_markdown(report))
    return report


def format_markdown(report: dict[str, Any]) -> str:
    """The report as Markdown: the headline table first, then the details."""
    lines = ["# videopoet demo report", "", "## Prompt accuracy (color, shape and direction all right)", "",
             "| sampler | seen | held-out | seconds per clip |", "|---|---|---|---|"]
    for sampler, acc in report["prompt_accuracy"].items():
        lines.append(f"| {sampler} | {_pct(acc['seen'])} | {_pct(acc['heldout'])} | {report['seconds_per_clip'][sampler]:.2f} |")
    lines += ["", f"- MaskGIT speed-up over autoregressive: {report['maskgit_speedup']:.1f}x" if report["maskgit_speedup"] else "",
              f"- video-to-audio pitch accuracy: {_pct(report['video_to_audio_pitch_accuracy'])}",
              f"- audio-to-video shape accuracy: {_pct(report['audio_to_video_shape_accuracy'])}", "", "## Targets", ""]
    lines += [f"- {name}: {'met' if ok else 'NOT met'}" for name, ok in report["targets"].items()]
    lines += ["", "## Per group", "", "| group | samples | all | color | shape | direction | pitch |", "|---|---|---|---|---|---|---|"]
    for group, g in report["groups"].items():
        a = g["accuracy"]
        lines.append(f"| {group} | {g['samples']} | {_pct(a['all'])} | {_pct(a['color'])} | {_pct(a['shape'])} | {_pct(a['direction'])} | {_pct(a['pitch'])} |")
    lines += ["", "## Tokenizers (validation on held-out combinations)", ""]
    for kind, info in report["tokenizers"].items():
        metrics = ", ".join(f"{k} {v:.3g}" for k, v in (info.get("val") or {}).items())
        lines.append(f"- {kind}: " + (metrics or ", ".join(f"{k} {v}" for k, v in info.items() if k != "seconds")))
    if report.get("tokenizer_round_trip"):
        lines += ["", "Oracle on dataset clips after a tokenizer round trip (the ceiling for generated samples):", "",
                  "| split | clips | all | color | shape | direction | pitch |", "|---|---|---|---|---|---|---|"]
        for split, r in report["tokenizer_round_trip"].items():
            lines.append(f"| {split} | {r['clips']} | {_pct(r['all'])} | {_pct(r['color'])} | {_pct(r['shape'])} | "
                         f"{_pct(r['direction'])} | {_pct(r['pitch'])} |")
    curve = report["llm"]["loss_curve"]
    lines += ["", "## LLM", "", f"- steps: {report['llm']['steps']}"]
    if curve["train"]:
        pts = curve["train"][:: max(1, len(curve["train"]) // 10)] + curve["train"][-1:]
        lines.append("- train loss: " + ", ".join(f"{int(s)}: {v:.3f}" for s, v in pts))
    if curve["val"]:
        lines.append("- val loss: " + ", ".join(f"{int(s)}: {v:.3f}" for s, v in curve["val"]))
    lines += ["", "## Time", ""]
    lines += [f"- {k}: {v:.0f} s" for k, v in report["stage_seconds"].items()]
    lines += [f"- total: {report['total_seconds']:.0f} s", "", "## Contact sheet", "",
              "`contact_sheet.png`: one row per sample (frames at 0, 1/4, 1/2, 3/4 and the end), in this order: "
              + ", ".join(report["contact_sheet"]["rows"]), ""]
    return "\n".join(lines)
