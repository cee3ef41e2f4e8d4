"""The clip index on disk: load it, merge a re-run into it, and the `ingest` driver."""

from __future__ import annotations

import json
import multiprocessing as mp
import os
import shutil
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from videopoet.data.ingest.config import (
    CLIPS,
    FILES,
    MEDIA,
    REPORT,
    IngestConfig,
    Job,
    clip_features,
    file_features,
)
from videopoet.data.ingest.cut import init_worker, process_file
from videopoet.data.ingest.inputs import collect_jobs
from videopoet.errors import UserError
from videopoet.runs import atomic_write_text


@contextmanager
def _datasets_bars(enabled: bool) -> Iterator[None]:
    """Silence the `datasets` progress bars (saving, loading) unless ``enabled``."""
    import datasets

    was = datasets.is_progress_bar_enabled()
    if not enabled:
        datasets.disable_progress_bars()
    try:
        yield
    finally:
        if was and not enabled:
            datasets.enable_progress_bars()


def load_clip_index(out: str | os.PathLike) -> Any:
    """The clip index written by `ingest` (a ``datasets.Dataset``)."""
    import datasets

    path = Path(out) / CLIPS
    if not path.is_dir():
        raise UserError(f"{out} holds no clip index (no {CLIPS}/); make one with `videopoet data ingest`")
    return datasets.load_from_disk(str(path))


def _recover(out: Path) -> None:
    """Finish or undo a swap an interrupted run left half done."""
    for name in (CLIPS, FILES):
        old, new = out / f".{name}.old", out / f".{name}.new"
        if not (out / name).exists() and old.exists():
            old.rename(out / name)
        for leftover in (old, new):
            if leftover.exists():
                shutil.rmtree(leftover)


def _replace(ds: Any, out: Path, name: str) -> None:
    """Save ``ds`` as ``out/name``, replacing it only once the new copy is complete."""
    final, new, old = out / name, out / f".{name}.new", out / f".{name}.old"
    ds.save_to_disk(str(new))
    if final.exists():
        final.rename(old)
    new.rename(final)
    if old.exists():
        shutil.rmtree(old)


def _previous(out: Path, src: Path, config: IngestConfig) -> dict[str, dict[str, Any]]:
    """Records of the files a previous run on ``out`` processed (empty when there was none)."""
    import datasets

    report = out / REPORT
    if not (out / FILES).is_dir() or not (out / CLIPS).is_dir() or not report.is_file():
        return {}
    try:
        before = json.loads(report.read_text())
    except (OSError, ValueError):
        before = {}
    if before.get("settings") != config.settings():
        raise UserError(
            f"{out} holds clips made with other settings ({before.get('settings')}); ingest with the same "
            f"settings to add new files, or choose another --out"
        )
    if before.get("src") != str(src.resolve()):
        raise UserError(f"{out} holds clips of another source ({before.get('src')}); choose another --out")
    files = datasets.load_from_disk(str(out / FILES))
    return {r["key"]: r for r in files}


def _unchanged(job: Job, record: dict[str, Any] | None) -> bool:
    """True when a previous run processed this very file with this caption."""
    if record is None or record["source"] != job.path:
        return False
    return all(record[k] == getattr(job, k) for k in ("size", "mtime_ns", "caption", "split"))


def _merge(
    out: Path, rows: list[dict[str, Any]], kept: dict[str, dict[str, Any]], before: dict[str, Any]
) -> Any:
    """The previous run's rows of unchanged files followed by the new rows."""
    import datasets
    import pyarrow as pa
    import pyarrow.compute as pc

    features = clip_features()
    new = (
        datasets.Dataset.from_list(rows, features=features)
        if rows
        else datasets.Dataset.from_dict({k: [] for k in features}, features=features)
    )
    if not before or not (out / CLIPS).is_dir():
        return new
    old = datasets.load_from_disk(str(out / CLIPS))
    keep = pa.array(sorted({r["source"] for r in kept.values()}), pa.string())
    mask = pc.is_in(old.data.column("source"), value_set=keep).to_numpy(zero_copy_only=False)
    return datasets.concatenate_datasets([old.select(mask.nonzero()[0]).flatten_indices(), new])


def ingest(
    src: str | os.PathLike,
    out: str | os.PathLike,
    config: IngestConfig | None = None,
    captions: str | os.PathLike | None = None,
    progress: bool = True,
) -> dict[str, Any]:
    """Cut every media file of ``src`` into clips and save the clip index to ``out`` (module docstring).

    Returns the report, also written to ``out/report.json``. Re-running on the same ``out`` processes only
    new or changed files. Raises `UserError` for a source that is missing, empty, or a dataset without a
    media column, and for an ``out`` made from another source or with other clip settings.
    """
    import datasets
    from tqdm.auto import tqdm

    config = config or IngestConfig()
    started = time.perf_counter()
    src, out = Path(src), Path(out)
    if not src.exists():
        raise UserError(f"source {src} does not exist")
    caption_path = Path(captions) if captions is not None else None
    if caption_path is not None and not caption_path.is_file():
        raise UserError(f"captions file {caption_path} does not exist")
    if out.exists() and not out.is_dir():
        raise UserError(f"output {out} exists and is not a folder")
    out.mkdir(parents=True, exist_ok=True)
    _recover(out)
    jobs, facts = collect_jobs(src, config, caption_path, out / MEDIA)
    before = _previous(out, src, config)

    todo = [j for j in jobs if not _unchanged(j, before.get(j.key))]
    todo_keys = {j.key for j in todo}
    kept = {j.key: before[j.key] for j in jobs if j.key not in todo_keys}
    records: list[dict[str, Any]] = []
    rows: list[dict[str, Any]] = []
    skips = 0
    bar = tqdm(total=len(todo), desc="ingest", unit="file", disable=not progress, dynamic_ncols=True)
    work = [(j, config) for j in todo]
    pool = None
    if config.num_proc > 1 and len(todo) > 1:
        pool = mp.get_context().Pool(min(config.num_proc, len(todo)), initializer=init_worker)
    try:
        results = pool.imap(process_file, work, chunksize=1) if pool else map(process_file, work)
        for record, file_rows in results:
            records.append(record)
            rows.extend(file_rows)
            bar.update(1)
            skips += record["status"] == "skipped"
            bar.set_postfix(clips=len(rows), skipped=skips, refresh=False)
    finally:
        bar.close()
        if pool is not None:
            pool.close()
            pool.join()

    with _datasets_bars(progress):
        clips = _merge(out, rows, kept, before)
        by_key = {**kept, **{r["key"]: r for r in records}}
        all_records = [by_key[j.key] for j in jobs]
        # Clips first, then files: after a crash in between, the files record is the old one, so the
        # files processed now are processed again and their rows replaced, never lost or doubled.
        _replace(clips, out, CLIPS)
        _replace(datasets.Dataset.from_list(all_records, features=file_features()), out, FILES)

    skipped = [r for r in all_records if r["status"] == "skipped"]
    report = {
        "src": str(src.resolve()),
        "out": str(out.resolve()),
        **facts,
        "settings": config.settings(),
        "files_seen": len(jobs),
        "files_ingested": len(jobs) - len(skipped),
        "files_skipped": len(skipped),
        "files_processed": len(todo),
        "files_unchanged": len(kept),
        "files_removed": len(set(before) - {j.key for j in jobs}),
        "files_captioned": sum(1 for r in all_records if r["caption"]),
        "clips": len(clips),
        "clips_added": len(rows),
        "skipped": [{"file": r["key"], "reason": r["reason"], "detail": r["detail"]} for r in skipped],
        "notes": [
            {"file": r["key"], "note": r["detail"]}
            for r in all_records
            if r["status"] == "ingested" and r["detail"]
        ],
        "num_proc": config.num_proc,
        "seconds": round(time.perf_counter() - started, 3),
    }
    atomic_write_text(out / REPORT, json.dumps(report, indent=2, ensure_ascii=False) + "\n")
    return report
