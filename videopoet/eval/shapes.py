"""The shapes oracle: score clips against their metadata or a prompt.

Used to score generated videos against their prompts (and to check tokenizer reconstructions): the reader
(`videopoet.eval.shapes_reader`) reads color, shape, direction and pitch from pixels and samples; this
module parses prompts, matches readings with the expected values from a ``metadata.jsonl`` or a prompt,
and formats the report.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable, Sequence
from pathlib import Path

from videopoet.data.shapes_dataset import read_metadata
from videopoet.data.synthetic import COLORS, DIRECTIONS, PITCH_HZ, PITCH_TOLERANCE, SHAPES
from videopoet.errors import UserError
from videopoet.eval.shapes_reader import MEDIA_SUFFIXES, ShapesReading, analyze_file

__all__ = ["evaluate", "format_report", "parse_prompt"]


# ------------------------------------------------------------------------------------------------ prompts

_COLOR_WORDS = {c: c for c in COLORS}
_SHAPE_WORDS = {
    "circle": "circle",
    "circles": "circle",
    "disc": "circle",
    "disk": "circle",
    "ball": "circle",
    "square": "square",
    "squares": "square",
    "box": "square",
    "triangle": "triangle",
    "triangles": "triangle",
}
_DIRECTION_WORDS = {}
for _d in DIRECTIONS:
    for _form in (_d, _d + "ward", _d + "wards"):
        _DIRECTION_WORDS[_form] = _d
assert set(_SHAPE_WORDS.values()) == set(SHAPES)


def parse_prompt(text: str) -> dict:
    """Find the color, shape and direction a caption or prompt names.

    Returns ``{"color", "shape", "direction"}``, None for an attribute it does not name. Accepts the
    dataset's caption templates and simple variants ("moving left", "to the left", "leftwards", "upward",
    plural shapes, "disc"/"ball" for circle, "box" for square). A prompt that names none of them, or names
    two different values of one attribute, is a UserError.
    """
    if not isinstance(text, str):
        raise UserError(f"shapes oracle: prompt must be a string, got {type(text).__name__}")
    words = re.findall(r"[a-z]+", text.lower())
    found: dict[str, str | None] = {}
    for attr, table in (("color", _COLOR_WORDS), ("shape", _SHAPE_WORDS), ("direction", _DIRECTION_WORDS)):
        values = list(dict.fromkeys(table[w] for w in words if w in table))
        if len(values) > 1:
            raise UserError(f"shapes oracle: prompt {text!r} names more than one {attr}: {', '.join(values)}")
        found[attr] = values[0] if values else None
    if all(v is None for v in found.values()):
        raise UserError(
            f"shapes oracle: prompt {text!r} names no color ({', '.join(COLORS)}), shape ({', '.join(SHAPES)}) "
            f"or direction ({', '.join(DIRECTIONS)})"
        )
    return found


# --------------------------------------------------------------------------------------------- evaluation


def _expand_paths(paths) -> list[Path]:
    if isinstance(paths, (str, os.PathLike)):
        paths = [paths]
    out: list[Path] = []
    for p in paths:
        p = Path(p)
        if p.is_dir():
            found = sorted(q for q in p.rglob("*") if q.is_file() and q.suffix.lower() in MEDIA_SUFFIXES)
            if not found:
                raise UserError(f"shapes oracle: no media files in {p}")
            out.extend(found)
        elif p.is_file():
            out.append(p)
        else:
            raise UserError(f"shapes oracle: file not found: {p}")
    if not out:
        raise UserError("shapes oracle: no files to evaluate")
    return out


def _expected_from_row(row: dict, where: str) -> dict:
    exp = {k: row.get(k) for k in ("color", "shape", "direction")}
    if any(v is None for v in exp.values()):
        text = row.get("caption") or row.get("prompt")
        if text:
            parsed = parse_prompt(text)
            exp = {k: exp[k] if exp[k] is not None else parsed[k] for k in exp}
    if all(v is None for v in exp.values()):
        raise UserError(f"shapes oracle: {where} gives no color, shape, direction, caption or prompt")
    pitch = row.get("pitch_hz")
    if pitch is None and exp["shape"] is not None:
        pitch = PITCH_HZ[exp["shape"]]
    exp["pitch_hz"] = float(pitch) if pitch is not None else None
    return exp


class _MetadataIndex:
    def __init__(self, metadata: str | os.PathLike):
        meta_path = Path(metadata)
        if meta_path.is_dir():
            meta_path = meta_path / "metadata.jsonl"
        self.path = meta_path
        self.root = meta_path.parent.resolve()
        self.by_rel: dict[str, dict] = {}
        self.by_name: dict[str, list[dict]] = {}
        for n, row in enumerate(read_metadata(meta_path), 1):
            if not isinstance(row, dict) or not row.get("file"):
                raise UserError(f"{meta_path}:{n}: metadata row has no 'file'")
            rel = Path(row["file"]).as_posix()
            self.by_rel[rel] = row
            self.by_name.setdefault(Path(rel).name, []).append(row)

    def lookup(self, path: Path) -> dict:
        try:
            rel = path.resolve().relative_to(self.root).as_posix()
        except ValueError:
            rel = None
        if rel is not None and rel in self.by_rel:
            return self.by_rel[rel]
        rows = self.by_name.get(path.name, [])
        if len(rows) == 1:
            return rows[0]
        if len(rows) > 1:
            raise UserError(
                f"shapes oracle: {path} matches {len(rows)} rows of {self.path} by name; pass it inside the metadata's folder"
            )
        raise UserError(f"shapes oracle: {path} is not listed in {self.path}")


def _score(reading: ShapesReading, expected: dict | None) -> dict | None:
    if expected is None:
        return None
    correct: dict[str, bool | None] = {}
    for attr in ("color", "shape", "direction"):
        correct[attr] = None if expected[attr] is None else getattr(reading, attr) == expected[attr]
    # Pitch is scored on files that have an audio track (a video-only output has no tone to judge).
    if expected.get("pitch_hz") is not None and reading.has_audio:
        p = reading.pitch_hz
        correct["pitch"] = (
            p is not None and abs(p - expected["pitch_hz"]) <= PITCH_TOLERANCE * expected["pitch_hz"]
        )
    else:
        correct["pitch"] = None
    scored = [correct[a] for a in ("color", "shape", "direction") if correct[a] is not None]
    correct["all"] = all(scored) if scored else None
    return correct


def evaluate(
    paths: str | os.PathLike | Sequence[str | os.PathLike] | Iterable[str | os.PathLike],
    metadata: str | os.PathLike | None = None,
    prompt: str | None = None,
) -> dict:
    """Read each file with the oracle and score it against the expected attributes (JSON-able result).

    Expected values come from ``metadata`` (a ``metadata.jsonl``, or a folder holding one: files are
    matched by their path relative to its folder, else by a unique basename; rows give color/shape/
    direction/pitch_hz, or a caption/prompt to parse) or from one ``prompt`` for all files (pitch expected:
    the named shape's tone). Folders in ``paths`` expand to the media files under them.

    Scoring: color, shape and direction must match exactly; "all" = every expected one of them right; pitch
    is right within 2% and is scored only on files that have an audio track. Accuracies are over the files
    where the attribute is expected (None when there are none); without metadata or a prompt, only the
    readings are returned.
    """
    if metadata is not None and prompt is not None:
        raise UserError("shapes oracle: give metadata or a prompt, not both")
    files = _expand_paths(paths)
    index = _MetadataIndex(metadata) if metadata is not None else None
    prompt_expected = None
    if prompt is not None:
        prompt_expected = parse_prompt(prompt)
        shape = prompt_expected["shape"]
        prompt_expected["pitch_hz"] = PITCH_HZ[shape] if shape is not None else None

    results = []
    for f in files:
        if index is not None:
            row = index.lookup(f)
            expected = _expected_from_row(row, f"metadata row for {f}")
        else:
            expected = dict(prompt_expected) if prompt_expected is not None else None
        reading = analyze_file(f)
        results.append(
            {
                "file": str(f),
                "reading": reading.to_dict(),
                "expected": expected,
                "correct": _score(reading, expected),
            }
        )

    accuracy: dict[str, float | None] = {}
    counts: dict[str, int] = {}
    for attr in ("color", "shape", "direction", "pitch", "all"):
        vals = [
            r["correct"][attr] for r in results if r["correct"] is not None and r["correct"][attr] is not None
        ]
        counts[attr] = len(vals)
        accuracy[attr] = (sum(vals) / len(vals)) if vals else None
    return {
        "num_files": len(results),
        "source": "metadata" if index is not None else ("prompt" if prompt is not None else None),
        "metadata": str(index.path) if index is not None else None,
        "prompt": prompt,
        "accuracy": accuracy,
        "counts": counts,
        "pitch_tolerance": PITCH_TOLERANCE,
        "files": results,
    }


def format_report(result: dict) -> str:
    """`evaluate`'s result as a plain-text table: one line per file, then the accuracies."""
    lines = [f"{'file':<40} {'color':<7} {'shape':<9} {'direction':<9} {'pitch_hz':>8}  correct"]
    for entry in result["files"]:
        r = entry["reading"]
        pitch = f"{r['pitch_hz']:.1f}" if r["pitch_hz"] is not None else "-"
        correct = entry["correct"]
        verdict = "-" if correct is None else ("yes" if correct["all"] else "no")
        name = Path(entry["file"]).name
        lines.append(
            f"{name:<40} {r['color'] or '-':<7} {r['shape'] or '-':<9} {r['direction'] or '-':<9} {pitch:>8}  {verdict}"
        )
    scored = {k: v for k, v in result["accuracy"].items() if v is not None}
    if scored:
        lines.append("accuracy: " + ", ".join(f"{k} {v:.1%} ({result['counts'][k]})" for k, v in scored.items()))
    return "\n".join(lines)
