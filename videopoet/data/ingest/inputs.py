"""What to ingest: media files of a folder, rows of a dataset or data file, and their captions."""

from __future__ import annotations

import csv
import hashlib
import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from videopoet.data.ingest.config import (
    AUDIO_EXTENSIONS,
    AUTO_CAPTION_FILES,
    CAPTION_COLUMNS,
    DATA_EXTENSIONS,
    KEY_COLUMNS,
    MEDIA_COLUMNS,
    VIDEO_EXTENSIONS,
    IngestConfig,
    Job,
)
from videopoet.errors import UserError
from videopoet.runs import atomic_write_bytes


def _media_files(root: Path) -> Iterator[Path]:
    exts = set(VIDEO_EXTENSIONS) | set(AUDIO_EXTENSIONS)
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        for name in sorted(filenames):
            if not name.startswith(".") and os.path.splitext(name)[1].lower() in exts:
                yield Path(dirpath) / name


def _pick(
    columns: list[str], wanted: str | None, candidates: tuple[str, ...], what: str, where: str
) -> str | None:
    if wanted is not None:
        if wanted not in columns:
            raise UserError(f"{where}: no column {wanted!r} for {what}; columns: {', '.join(columns)}")
        return wanted
    lowered = {c.lower(): c for c in columns}
    return next((lowered[c] for c in candidates if c in lowered), None)


def _read_table(path: Path) -> list[dict[str, Any]]:
    """Rows of a JSONL, CSV or JSON (list of objects, or object key -> caption) file."""
    try:
        if path.suffix.lower() == ".csv":
            with path.open(newline="", encoding="utf-8") as f:
                return list(csv.DictReader(f))
        text = path.read_text(encoding="utf-8")
        if path.suffix.lower() == ".json":
            data = json.loads(text)
            if isinstance(data, dict):
                return [{"file": k, "caption": v} for k, v in data.items()]
            return list(data)
        return [json.loads(line) for line in text.splitlines() if line.strip()]
    except (OSError, ValueError, UnicodeDecodeError) as e:
        raise UserError(f"cannot read captions file {path}: {e}") from None


def _caption_map(path: Path) -> dict[str, tuple[str | None, str | None]]:
    """key (relative path or file name) -> (caption, split) from a captions mapping file."""
    rows = [r for r in _read_table(path) if isinstance(r, dict)]
    columns = list(rows[0]) if rows else []
    key_col = _pick(columns, None, KEY_COLUMNS, "file names", str(path))
    cap_col = _pick(columns, None, CAPTION_COLUMNS, "captions", str(path))
    if rows and (key_col is None or cap_col is None):
        raise UserError(
            f"captions file {path} needs a file column ({', '.join(KEY_COLUMNS)}) and a caption column "
            f"({', '.join(CAPTION_COLUMNS)}); it has: {', '.join(columns)}"
        )
    mapping: dict[str, tuple[str | None, str | None]] = {}
    for r in rows:
        key = str(r.get(key_col) or "").replace("\\", "/").removeprefix("./")
        if not key:
            continue
        value = (_clean(r.get(cap_col)), _clean(r.get("split")))
        mapping.setdefault(key, value)
        mapping.setdefault(key.rsplit("/", 1)[-1], value)
    return mapping


def _clean(value: Any) -> str | None:
    if value is None:
        return None
    text = str(value).strip()
    return text or None


def _sidecar(path: Path) -> str | None:
    txt = path.with_suffix(".txt")
    try:
        return _clean(txt.read_text(encoding="utf-8", errors="replace")) if txt.is_file() else None
    except OSError:
        return None


def _is_saved_dataset(path: Path) -> bool:
    return path.is_dir() and (
        (path / "dataset_dict.json").is_file()
        or ((path / "state.json").is_file() and (path / "dataset_info.json").is_file())
    )


def _embedded(data: bytes, name: str | None, media_dir: Path) -> tuple[str, Path]:
    """Write media bytes embedded in a dataset to ``media_dir`` (once, named by content): key and path."""
    digest = hashlib.sha1(data).hexdigest()[:16]
    name = Path(name or "media").name
    path = media_dir / digest / name
    if not path.is_file() or path.stat().st_size != len(data):
        atomic_write_bytes(path, data)
    return f"embedded/{digest}/{name}", path.resolve()


def _dataset_rows(
    src: Path, config: IngestConfig, media_dir: Path
) -> tuple[list[tuple[str, Path | None, str | None, str | None]], Path]:
    """(key, path, caption, split) of each row of a dataset source, and the folder relative paths start
    from. Media stored in the dataset as bytes (a ``Video`` feature saved with ``save_to_disk`` embeds its
    files) are written to ``media_dir`` first."""
    import datasets

    try:
        if src.is_dir():
            loaded = datasets.load_from_disk(str(src))
            base = src.parent
        else:
            loaded = datasets.load_dataset(
                DATA_EXTENSIONS[src.suffix.lower()], data_files=str(src), split="train"
            )
            base = src.parent
    except Exception as e:  # datasets raises many kinds; all mean "cannot read this"
        raise UserError(f"cannot load the dataset {src}: {type(e).__name__}: {e}") from None
    parts = list(loaded.items()) if isinstance(loaded, datasets.DatasetDict) else [(None, loaded)]
    out = []
    for split_name, ds in parts:
        media = _pick(ds.column_names, config.media_column, MEDIA_COLUMNS, "media paths", str(src))
        if media is None:
            raise UserError(
                f"dataset {src} has no column of media paths (looked for {', '.join(MEDIA_COLUMNS)}); "
                f"its columns are {', '.join(ds.column_names)}: name one with media_column"
            )
        feature = ds.features[media]
        if isinstance(feature, (datasets.Video, datasets.Image, datasets.Audio)):
            ds = ds.cast_column(media, type(feature)(decode=False))
        caption = _pick(ds.column_names, config.caption_column, CAPTION_COLUMNS, "captions", str(src))
        split_col = "split" if "split" in ds.column_names else None
        columns = [c for c in (media, caption, split_col) if c]
        for i, row in enumerate(ds.select_columns(columns)):
            value = row[media]
            caption_text = _clean(row[caption]) if caption else None
            split = _clean(row[split_col]) if split_col else split_name
            if isinstance(value, dict) and value.get("bytes"):
                out.append((*_embedded(value["bytes"], value.get("path"), media_dir), caption_text, split))
                continue
            if isinstance(value, dict):
                value = value.get("path")
            key = str(value) if value else f"<row {i}: no path>"
            out.append((key, Path(str(value)) if value else None, caption_text, split))
    return out, base


def _utf8(text: str) -> bool:
    try:
        text.encode("utf-8")
        return True
    except UnicodeEncodeError:
        return False


def _printable(text: str) -> str:
    return text.encode("utf-8", "surrogateescape").decode("utf-8", "replace")


def _resolve(path: Path | None, base: Path) -> Path | None:
    if path is None or path.is_absolute():
        return path
    for root in (base, Path.cwd()):
        if (root / path).exists():
            return (root / path).resolve()
    return (base / path).resolve()


def collect_jobs(
    src: Path, config: IngestConfig, captions: Path | None, media_dir: Path
) -> tuple[list[Job], dict[str, Any]]:
    """The jobs of every file in ``src`` (captions resolved) and facts for the report."""
    mapping = _caption_map(captions) if captions is not None else {}
    facts: dict[str, Any] = {"captions_file": str(captions) if captions else None}
    entries: list[tuple[str, Path | None, str | None, str | None]] = []
    auto: dict[str, tuple[str | None, str | None]] = {}
    if src.is_file() and src.suffix.lower() in DATA_EXTENSIONS or _is_saved_dataset(src):
        rows, base = _dataset_rows(src, config, media_dir)
        facts["source_kind"] = "dataset"
        entries = [(key, _resolve(p, base), cap, split) for key, p, cap, split in rows]
    elif src.is_file():
        facts["source_kind"] = "file"
        entries = [(src.name, src.resolve(), None, None)]
    elif src.is_dir():
        facts["source_kind"] = "folder"
        entries = [(p.relative_to(src).as_posix(), p.resolve(), None, None) for p in _media_files(src)]
        if not entries:
            exts = ", ".join(VIDEO_EXTENSIONS)
            raise UserError(f"no media files in {src} (searched recursively for {exts} and audio files)")
        if captions is None:
            found = next((src / n for n in AUTO_CAPTION_FILES if (src / n).is_file()), None)
            if found is not None:
                auto = _caption_map(found)
                facts["captions_file"] = str(found)
    else:
        raise UserError(f"source {src} does not exist")
    if not entries:
        raise UserError(f"source {src} lists no media files")

    jobs: list[Job] = []
    seen: set[str] = set()
    for key, path, cap, split in entries:
        if key in seen:
            continue  # the same file listed twice is one file
        seen.add(key)
        name = key.rsplit("/", 1)[-1]
        mapped = mapping.get(key) or mapping.get(name)
        automapped = auto.get(key) or auto.get(name)
        sidecar = _sidecar(path) if path is not None else None
        caption = (mapped and mapped[0]) or cap or sidecar or (automapped and automapped[0]) or None
        split = split or (mapped and mapped[1]) or (automapped and automapped[1]) or None
        try:
            stat = path.stat() if path is not None else None
        except OSError:
            stat = None
        size, mtime = (stat.st_size, stat.st_mtime_ns) if stat else (-1, -1)
        source, problem = str(path) if path is not None else "", None
        if not _utf8(key) or not _utf8(source):
            # Arrow strings are UTF-8: keep the file in the report under a readable name, and skip it.
            key, source = _printable(key), _printable(source)
            problem = f"{source}: the file name is not valid UTF-8; rename the file"
        jobs.append(Job(key, source, caption, split, size, mtime, problem))
    return jobs, facts
