"""Uploads: the size limit while copying, and what opening them says: 400 for a file that does not
decode, 422 for the wrong kind or size."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest

from videopoet.serve.limits import FieldError
from videopoet.serve.uploads import check_upload, save_upload

CLIP = {"frames": 9, "fps": 8.0, "height": 32, "width": 32, "seconds": 9 / 8, "sample_rate": 16000}


def test_save_keeps_a_plain_suffix_and_enforces_the_limit(tmp_path: Path) -> None:
    path = save_upload(io.BytesIO(b"abc"), "photo.JPG", "image", tmp_path / "a", 10)
    assert path == tmp_path / "a" / "image.jpg" and path.read_bytes() == b"abc"
    assert save_upload(io.BytesIO(b"abc"), "../../evil name.p/ng", "audio", tmp_path / "b", 10).name == "audio.wav"
    with pytest.raises(FieldError) as e:
        save_upload(io.BytesIO(bytes(11)), "x.png", "image", tmp_path / "c", 10)
    assert e.value.status == 422 and "upload limit" in str(e.value) and not (tmp_path / "c").exists()
    with pytest.raises(FieldError) as e:
        save_upload(io.BytesIO(b""), "x.png", "image", tmp_path / "d", 10)
    assert e.value.status == 400 and "empty" in str(e.value)


def test_check(tmp_path: Path) -> None:
    from videopoet import media

    good = tmp_path / "good.png"
    media.write_image(good, np.zeros((32, 32, 3), np.uint8))
    check_upload(good, "image", CLIP)
    wrong = tmp_path / "wrong.png"
    media.write_image(wrong, np.zeros((16, 24, 3), np.uint8))
    clip = tmp_path / "clip.mp4"
    media.write_video(clip, np.zeros((9, 32, 32, 3), np.uint8), 8.0, audio=np.zeros(18000, np.float32), sample_rate=16000)
    check_upload(clip, "video", CLIP)
    check_upload(clip, "audio", CLIP)
    short = tmp_path / "short.mp4"
    media.write_video(short, np.zeros((2, 32, 32, 3), np.uint8), 8.0)
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(64))
    for path, field, status, words in [(wrong, "image", 422, "is 24x16"), (good, "audio", 422, "no sound"),
                                       (short, "video", 422, "too short"), (broken, "image", 400, ""),
                                       (tmp_path / "good.png", "video", 422, "too short")]:
        with pytest.raises(FieldError) as e:
            check_upload(path, field, CLIP)
        assert e.value.status == status and e.value.field == field and words in str(e.value), str(e.value)
        assert str(tmp_path) not in str(e.value)  # the server's paths stay private
