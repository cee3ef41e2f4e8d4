"""videopoet.media.container: probing real files (../shared/media) and the one-line MediaError every reader raises on a broken, empty, missing or non-media file."""

import json
from pathlib import Path

import av
import pytest

from videopoet import media as io


def test_probe_real_videos(shared_media):
    video = shared_media / "video"

    city = io.probe(video / "city_cc0.mpg")
    assert city.container == "mpeg"
    assert city.audio == []
    (v,) = city.video
    assert (v.codec, v.width, v.height, v.fps) == ("mpeg2video", 720, 405, 25.0)
    assert city.duration_s == pytest.approx(7.6, abs=0.05)

    short = io.probe(video / "realshort.mp4")
    assert "mp4" in short.container
    (v,) = short.video
    (a,) = short.audio
    assert (v.codec, v.width, v.height, v.num_frames) == ("h264", 320, 240, 36)
    assert v.fps == pytest.approx(30.0, abs=0.05)
    assert (a.codec, a.sample_rate, a.channels) == ("aac", 48000, 1)
    assert short.duration_s == pytest.approx(1.2, abs=0.05)

    balle = io.probe(video / "balle_jbart.mp4")
    (v,) = balle.video
    (a,) = balle.audio
    assert (v.codec, v.width, v.height, v.fps, v.num_frames) == ("h264", 720, 576, 25.0, 255)
    assert (a.codec, a.sample_rate, a.channels) == ("aac", 48000, 2)
    assert balle.duration_s == pytest.approx(10.2, abs=0.05)

    g1 = io.probe(video / "g1.avi")
    assert g1.container == "avi" and g1.audio == []
    (v,) = g1.video
    assert (v.codec, v.width, v.height, v.fps, v.num_frames) == ("mpeg4", 400, 300, 25.0, 16)
    assert g1.duration_s == pytest.approx(0.64, abs=0.01)

    ogv = io.probe(video / "force_magnetique.ogv")
    assert ogv.container == "ogg"
    (v,) = ogv.video
    assert (v.codec, v.width, v.height) == ("theora", 400, 304)
    assert v.fps is None  # the container reports no frame rate
    assert ogv.duration_s == pytest.approx(1.36, abs=0.05)


def test_media_info_to_dict_is_json(shared_media):
    data = io.probe(shared_media / "video" / "balle_jbart.mp4").to_dict()
    again = json.loads(json.dumps(data))
    assert again["video"][0]["width"] == 720
    assert again["audio"][0]["channels"] == 2


def _broken_files(shared_media: Path, tmp_path: Path) -> dict[str, Path]:
    truncated = tmp_path / "truncated.mp4"
    truncated.write_bytes((shared_media / "video" / "balle_jbart.mp4").read_bytes()[:20_000])
    empty = tmp_path / "empty.mp4"
    empty.write_bytes(b"")
    text = tmp_path / "notes.mp4"
    text.write_text("this is not a video\n")
    missing = tmp_path / "missing.mp4"
    return {"truncated": truncated, "empty": empty, "text": text, "missing": missing, "folder": tmp_path}


@pytest.mark.parametrize("kind", ["truncated", "empty", "text", "missing", "folder"])
def test_broken_inputs_raise_media_error(shared_media, tmp_path, kind):
    path = _broken_files(shared_media, tmp_path)[kind]
    readers = [
        lambda: io.probe(path),
        lambda: io.read_clip(path, 0.0, 17, 8),
        lambda: io.read_audio(path),
        lambda: io.read_image(path),
    ]
    for read in readers:
        with pytest.raises(io.MediaError) as info:
            read()
        message = str(info.value)
        assert str(path) in message and "\n" not in message
        assert not isinstance(info.value, av.FFmpegError)
