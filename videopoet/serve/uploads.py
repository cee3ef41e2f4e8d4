"""Uploaded media: saved with a size limit, then opened with the project's media I/O. A file that does not
decode is a broken upload (HTTP 400 with FFmpeg's reason); a file of the wrong kind or size is 422."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any, BinaryIO

from videopoet.serve.limits import FieldError

_CHUNK = 1 << 20
_SUFFIXES = {"image": ".png", "video": ".mp4", "audio": ".wav"}


def save_upload(src: BinaryIO, filename: str | None, field: str, folder: Path, max_bytes: int) -> Path:
    """Copy an upload to `folder/FIELD.EXT` (the extension of the client's name when it has a plain one),
    stopping with 422 past `max_bytes`."""
    suffix = Path(filename or "").suffix.lower()
    if not (2 <= len(suffix) <= 6 and suffix[1:].isalnum()):
        suffix = _SUFFIXES[field]
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{field}{suffix}"
    total = 0
    with path.open("wb") as out:
        while chunk := src.read(_CHUNK):
            total += len(chunk)
            if total > max_bytes:
                out.close()
                shutil.rmtree(folder, ignore_errors=True)
                raise FieldError(field, f"is over the upload limit of {max_bytes / 2**20:g} MB")
            out.write(chunk)
    if total == 0:
        shutil.rmtree(folder, ignore_errors=True)
        raise FieldError(field, "is an empty file", status=400)
    return path


def check_upload(path: Path, field: str, clip: dict[str, Any]) -> None:
    """Open the file as the `field` kind the model needs (`clip`: the model's geometry from `Engine.info`),
    decoding what generation will read: 400 when it does not decode, 422 when it is the wrong kind or size."""
    from videopoet import media as io

    try:
        info = io.probe(path)
    except io.MediaError as e:
        raise FieldError(field, f"cannot be read as media: {_reason(e, path)}", status=400) from None
    want = (clip["height"], clip["width"])
    try:
        if field in ("image", "video"):
            if not info.video:
                raise FieldError(field, f"has no picture (an {'image' if field == 'image' else 'video'} file is needed)")
            if field == "image":
                frames = io.read_image(path)
            else:
                frames = io.read_clip(path, 0.0, clip["frames"], clip["fps"], pad=False)
            size = tuple(frames.shape[1:3])
            if size != want:
                raise FieldError(field, f"is {size[1]}x{size[0]} but the model makes {want[1]}x{want[0]} clips; resize or crop it first")
        else:
            if not info.audio:
                raise FieldError(field, "has no sound stream")
            io.read_audio(path, 0.0, clip["seconds"], clip["sample_rate"] or 16000, pad=True)
    except io.NotEnoughFramesError as e:
        raise FieldError(field, f"is too short: {_reason(e, path)}") from None
    except io.MediaError as e:
        raise FieldError(field, f"does not decode: {_reason(e, path)}", status=400) from None


def _reason(error: Exception, path: Path) -> str:
    """The media error's message without the server's path of the file."""
    return str(error).replace(f"{path}: ", "").replace(str(path), field_name(path))


def field_name(path: Path) -> str:
    return path.name
