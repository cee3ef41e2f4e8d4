"""Ingest: real and broken files, the report's accounting, captions from every source, resumption."""

from __future__ import annotations

import csv
import json
import os
import shutil
from pathlib import Path

import av
import datasets
import numpy as np
import pytest

from videopoet import media as media_io
from videopoet.data.ingest import IngestConfig, clip_starts, ingest, load_clip_index
from videopoet.data.shapes_dataset import read_metadata, write_shapes_dataset
from videopoet.errors import UserError

SHORT = IngestConfig(frames=9)  # 1.125 s clips: the short real files fit, g1.avi (0.64 s) does not


def check_accounting(report: dict) -> None:
    assert report["files_ingested"] + report["files_skipped"] == report["files_seen"]
    assert len(report["skipped"]) == report["files_skipped"]
    assert report["clips"] == len(load_clip_index(report["out"]))


def reasons(report: dict) -> dict[str, str]:
    return {s["file"]: s["reason"] for s in report["skipped"]}


@pytest.fixture(scope="module")
def shapes(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_shapes_dataset(tmp_path_factory.mktemp("shapes"), num_clips=6, seed=0, progress=False)


def copy_shapes(shapes: Path, dest: Path, metadata: bool = False) -> Path:
    """The shapes clips in a fresh folder (optionally with their metadata.jsonl)."""
    shutil.copytree(shapes / "clips", dest / "clips")
    if metadata:
        shutil.copy(shapes / "metadata.jsonl", dest / "metadata.jsonl")
    return dest


def write_odd_size_video(path: Path, width: int = 33, height: int = 21, frames: int = 30) -> None:
    """A lossless FFV1 video of odd width and height (H.264 in yuv420p cannot store those)."""
    with av.open(str(path), "w") as c:
        s = c.add_stream("ffv1", rate=10)
        s.width, s.height, s.pix_fmt = width, height, "yuv444p"
        for i in range(frames):
            frame = av.VideoFrame.from_ndarray(np.full((height, width, 3), i * 8, np.uint8), format="rgb24")
            for p in s.encode(frame):
                c.mux(p)
        for p in s.encode():
            c.mux(p)


def write_faststart_truncated(src: Path, dest: Path, keep: float = 0.55) -> None:
    """A copy of ``src`` with its index up front, cut short: it opens and promises more than it holds."""
    full = dest.with_suffix(".full.mp4")
    with av.open(str(src)) as i, av.open(str(full), "w", options={"movflags": "faststart"}) as o:
        streams = {s.index: o.add_stream_from_template(s) for s in i.streams}
        for packet in i.demux():
            if packet.dts is not None:
                packet.stream = streams[packet.stream.index]
                o.mux(packet)
    data = full.read_bytes()
    dest.write_bytes(data[: int(len(data) * keep)])
    full.unlink()


def test_clip_starts() -> None:
    config = IngestConfig()
    assert clip_starts(2.125, config) == [0.0]
    assert clip_starts(2.0, config) == []
    assert clip_starts(10.2, config) == [0.0, 2.125, 4.25, 6.375]
    assert clip_starts(4.0, IngestConfig(stride_s=1.0)) == [0.0, 1.0]


def test_real_media_default_clips(shared_media: Path, tmp_path: Path) -> None:
    report = ingest(shared_media / "video", tmp_path / "out", progress=False)
    check_accounting(report)
    assert report["files_seen"] == 5 and report["files_ingested"] == 2
    assert reasons(report) == {
        "g1.avi": "too_short",
        "realshort.mp4": "too_short",
        "force_magnetique.ogv": "too_short",
    }
    g1 = next(s for s in report["skipped"] if s["file"] == "g1.avi")
    assert "shorter than one clip" in g1["detail"]
    clips = load_clip_index(tmp_path / "out")
    assert clips["clip_id"] == [f"balle_jbart.mp4#{s:.3f}" for s in (0, 2.125, 4.25, 6.375)] + [
        f"city_cc0.mpg#{s:.3f}" for s in (0, 2.125, 4.25)
    ]
    row = clips[3]
    assert (row["width"], row["height"], row["num_frames"], row["fps"]) == (720, 576, 17, 8.0)
    assert row["has_audio"] and not clips[4]["has_audio"] and row["caption"] is None
    last = clips[len(clips) - 1]
    frames = media_io.read_clip(last["source"], last["start_s"], last["num_frames"], last["fps"])
    assert frames.shape == (17, 405, 720, 3)
    assert json.loads((tmp_path / "out" / "report.json").read_text()) == report


def test_real_media_short_clips_and_sizes(shared_media: Path, tmp_path: Path) -> None:
    config = IngestConfig(frames=9, size=(64, 96), num_proc=2)
    report = ingest(shared_media, tmp_path / "out", config, progress=False)
    check_accounting(report)
    assert report["files_seen"] == 10 and report["files_ingested"] == 4
    assert reasons(report) == {
        **{f"audio/{p.name}": "no_video_stream" for p in (shared_media / "audio").iterdir()},
        "video/g1.avi": "too_short",
    }
    notes = {n["file"]: n["note"] for n in report["notes"]}
    assert "no frame rate" in notes["video/force_magnetique.ogv"]  # ingested by its timestamps
    clips = load_clip_index(tmp_path / "out").to_list()
    by_file: dict[str, list[dict]] = {}
    for c in clips:
        by_file.setdefault(c["clip_id"].split("#")[0], []).append(c)
    assert {k: len(v) for k, v in by_file.items()} == {
        "video/balle_jbart.mp4": 9, "video/city_cc0.mpg": 6, "video/force_magnetique.ogv": 1, "video/realshort.mp4": 1,
    }  # fmt: skip
    assert all((c["height"], c["width"]) == (64, 96) for c in clips)
    assert by_file["video/realshort.mp4"][0]["has_audio"]
    ogv = by_file["video/force_magnetique.ogv"][0]
    frames = media_io.read_clip(ogv["source"], ogv["start_s"], ogv["num_frames"], ogv["fps"], size=(64, 96))
    assert frames.shape == (9, 64, 96, 3)


def test_broken_files_never_stop_the_run(shared_media: Path, shapes: Path, tmp_path: Path) -> None:
    src = copy_shapes(shapes, tmp_path / "src")
    bad = src / "bad"
    bad.mkdir()
    balle = shared_media / "video" / "balle_jbart.mp4"
    (bad / "truncated.mp4").write_bytes(balle.read_bytes()[:400_000])
    (bad / "zero.mp4").write_bytes(b"")
    (bad / "notes.mp4").write_text("this is not a video\n")
    (bad / "readme.txt").write_text("not media by extension: never seen\n")
    shutil.copy(shared_media / "audio" / "speech_librivox_0880.wav", bad / "speech.wav")
    write_odd_size_video(bad / "odd.mkv")
    write_faststart_truncated(balle, bad / "cut.mp4")
    (bad / os.fsdecode(b"latin1_\xe9t\xe9.mp4")).write_bytes((src / "clips" / "clip_00000.mp4").read_bytes())
    report = ingest(src, tmp_path / "out", progress=False)
    check_accounting(report)
    assert report["files_seen"] == 6 + 7
    assert reasons(report) == {
        "bad/truncated.mp4": "unreadable",
        "bad/zero.mp4": "empty",
        "bad/notes.mp4": "unreadable",
        "bad/speech.wav": "no_video_stream",
        "bad/latin1_\ufffdt\ufffd.mp4": "bad_name",  # Arrow strings must be UTF-8
    }
    clips = load_clip_index(tmp_path / "out").to_list()
    odd = [c for c in clips if c["clip_id"].startswith("bad/odd.mkv#")]
    assert [(c["width"], c["height"]) for c in odd] == [(33, 21)]
    cut = [c for c in clips if c["clip_id"].startswith("bad/cut.mp4#")]
    assert 1 <= len(cut) < 4  # the header says 10.2 s; only the clips that are really there
    assert any("truncated" in n["note"] for n in report["notes"] if n["file"] == "bad/cut.mp4")
    for c in cut[-1:] + odd:
        media_io.read_clip(c["source"], c["start_s"], c["num_frames"], c["fps"])


def test_captions_sidecar_mapping_and_auto_metadata(shapes: Path, tmp_path: Path) -> None:
    meta = read_metadata(shapes)
    # metadata.jsonl at the folder root (HF folder convention) gives captions and splits
    src = copy_shapes(shapes, tmp_path / "auto", metadata=True)
    report = ingest(src, tmp_path / "out_auto", progress=False)
    assert report["captions_file"].endswith("metadata.jsonl") and report["files_captioned"] == 6
    rows = load_clip_index(tmp_path / "out_auto").to_list()
    assert [(r["caption"], r["split"]) for r in rows] == [(m["caption"], m["split"]) for m in meta]

    # a sidecar NAME.txt beats the auto-detected file; files without any caption stay usable
    (src / "clips" / "clip_00001.txt").write_text("  a sidecar caption \n")
    (src / "metadata.jsonl").write_text(
        json.dumps({"file_name": "clip_00000.mp4", "text": "from metadata"}) + "\n"
    )
    ingest(src, tmp_path / "out_side", progress=False)
    rows = load_clip_index(tmp_path / "out_side").to_list()
    assert [r["caption"] for r in rows[:3]] == ["from metadata", "a sidecar caption", None]

    # an explicit mapping file (JSONL keyed by file name, or CSV keyed by relative path) beats both
    jsonl = tmp_path / "captions.jsonl"
    jsonl.write_text(
        "".join(
            json.dumps({"file": Path(m["file"]).name, "caption": f"j{i}"}) + "\n" for i, m in enumerate(meta)
        )
    )
    ingest(src, tmp_path / "out_jsonl", captions=jsonl, progress=False)
    assert load_clip_index(tmp_path / "out_jsonl")["caption"] == [f"j{i}" for i in range(6)]
    table = tmp_path / "captions.csv"
    with table.open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["path", "caption"])
        w.writerows([[m["file"], f"c{i}"] for i, m in enumerate(meta[:4])])
    report = ingest(src, tmp_path / "out_csv", captions=table, progress=False)
    caps = load_clip_index(tmp_path / "out_csv")["caption"]
    assert caps[:4] == ["c0", "c1", "c2", "c3"] and caps[4] is None and report["files_captioned"] == 4


def test_dataset_sources(shapes: Path, tmp_path: Path) -> None:
    meta = read_metadata(shapes)
    # a JSONL file with a media column (relative paths, resolved from the file's folder) and captions
    index = shapes / "index.jsonl"
    index.write_text("".join(json.dumps({"video": m["file"], "text": m["caption"]}) + "\n" for m in meta))
    report = ingest(index, tmp_path / "out_jsonl", progress=False)
    check_accounting(report)
    rows = load_clip_index(tmp_path / "out_jsonl").to_list()
    assert report["source_kind"] == "dataset" and [r["caption"] for r in rows] == [m["caption"] for m in meta]
    assert rows[0]["clip_id"] == "clips/clip_00000.mp4#0.000" and Path(rows[0]["source"]).is_absolute()

    # a DatasetDict saved to disk, absolute paths in a custom column; the split name fills `split`
    def part(ms: list[dict]) -> datasets.Dataset:
        return datasets.Dataset.from_dict(
            {"clip": [str(shapes / m["file"]) for m in ms], "caption": [m["caption"] for m in ms]}
        )

    saved = tmp_path / "hf"
    datasets.DatasetDict({"train": part(meta[:4]), "val": part(meta[4:])}).save_to_disk(str(saved))
    report = ingest(saved, tmp_path / "out_hf", IngestConfig(media_column="clip"), progress=False)
    rows = load_clip_index(tmp_path / "out_hf").to_list()
    assert report["clips"] == 6 and [r["split"] for r in rows] == ["train"] * 4 + ["val"] * 2
    assert rows[5]["caption"] == meta[5]["caption"]

    # a Video feature saved to disk embeds the files' bytes: they are written once to out/media
    videos = datasets.Dataset.from_dict({"video": [str(shapes / m["file"]) for m in meta[:2]]})
    videos.cast_column("video", datasets.Video()).save_to_disk(str(tmp_path / "hfv"))
    report = ingest(tmp_path / "hfv", tmp_path / "out_hfv", progress=False)
    rows = load_clip_index(tmp_path / "out_hfv").to_list()
    assert report["clips"] == 2 and rows[0]["clip_id"].startswith("embedded/")
    assert Path(rows[0]["source"]).parent.parent == (tmp_path / "out_hfv" / "media").resolve()
    assert ingest(tmp_path / "hfv", tmp_path / "out_hfv", progress=False)["files_processed"] == 0

    # a row whose file is missing is a skip, not a failure
    datasets.Dataset.from_dict(
        {"path": [str(shapes / meta[0]["file"]), str(shapes / "gone.mp4")]}
    ).save_to_disk(str(tmp_path / "hf2"))
    report = ingest(tmp_path / "hf2", tmp_path / "out_hf2", progress=False)
    check_accounting(report)
    assert list(reasons(report).values()) == ["missing"] and report["clips"] == 1


def test_bad_sources(tmp_path: Path) -> None:
    with pytest.raises(UserError, match="does not exist"):
        ingest(tmp_path / "nope", tmp_path / "out", progress=False)
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "notes.txt").write_text("hi")
    with pytest.raises(UserError, match="no media files"):
        ingest(tmp_path / "empty", tmp_path / "out", progress=False)
    datasets.Dataset.from_dict({"caption": ["a"], "url": ["x"]}).save_to_disk(str(tmp_path / "hf"))
    with pytest.raises(UserError, match="no column of media paths"):
        ingest(tmp_path / "hf", tmp_path / "out", progress=False)
    with pytest.raises(UserError, match="no column 'movie'"):
        ingest(tmp_path / "hf", tmp_path / "out", IngestConfig(media_column="movie"), progress=False)
    with pytest.raises(ValueError, match="fps must be > 0"):
        IngestConfig(fps=0)


def test_resume_processes_only_what_is_new(shared_media: Path, shapes: Path, tmp_path: Path) -> None:
    src = copy_shapes(shapes, tmp_path / "src", metadata=True)
    (src / "zero.mp4").write_bytes(b"")
    out = tmp_path / "out"
    first = ingest(src, out, IngestConfig(num_proc=2), progress=False)
    assert first["files_processed"] == 7 and first["clips"] == 6
    ingest(src, tmp_path / "serial", progress=False)  # the same rows with one process
    assert load_clip_index(out).to_list() == load_clip_index(tmp_path / "serial").to_list()

    again = ingest(src, out, progress=False)
    check_accounting(again)
    assert again["files_processed"] == 0 and again["files_unchanged"] == 7 and again["clips_added"] == 0
    assert load_clip_index(out).to_list() == load_clip_index(tmp_path / "serial").to_list()
    assert reasons(again) == {"zero.mp4": "empty"}  # known skips are reported again, not retried

    (src / "new").mkdir()
    shutil.copy(shared_media / "video" / "city_cc0.mpg", src / "new" / "city.mpg")
    (src / "clips" / "clip_00002.txt").write_text("a new caption")  # a caption change reprocesses its file
    os.remove(src / "clips" / "clip_00005.mp4")
    third = ingest(src, out, progress=False)
    check_accounting(third)
    assert third["files_processed"] == 2 and third["files_removed"] == 1 and third["files_seen"] == 7
    ids = load_clip_index(out)["clip_id"]
    assert len(ids) == len(set(ids)) == 5 + 3
    assert "clips/clip_00005.mp4#0.000" not in ids and "new/city.mpg#4.250" in ids
    caps = dict(zip(ids, load_clip_index(out)["caption"], strict=True))
    assert caps["clips/clip_00002.mp4#0.000"] == "a new caption"

    with pytest.raises(UserError, match="other settings"):
        ingest(src, out, IngestConfig(frames=9), progress=False)
    with pytest.raises(UserError, match="another source"):
        ingest(shared_media / "video", out, progress=False)
