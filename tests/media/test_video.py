"""videopoet.media.video: reading clips at a frame rate and size (by presentation time, with seeking), stills, and writing MP4 and PNG, on real media (../shared/media) and files written here."""

from pathlib import Path

import av
import numpy as np
import pytest

from videopoet import media as io
from videopoet.errors import UserError
from videopoet.media import container as media_container


def _gray_ramp(num_frames: int, step: int = 6, h: int = 32, w: int = 48) -> np.ndarray:
    """Frames whose brightness encodes their index: frame k is uniform gray k * step."""
    frames = np.zeros((num_frames, h, w, 3), np.uint8)
    for k in range(num_frames):
        frames[k] = k * step
    return frames


def _frame_index(frame: np.ndarray, step: int = 6) -> int:
    return int(round(float(frame.mean()) / step))


def _reference_frames(path: Path, times: list[float]) -> list[np.ndarray]:
    """Decode the whole file with plain PyAV and pick, for each time, the last frame shown by then."""
    with av.open(str(path)) as container:
        origin = container.start_time / av.time_base if container.start_time is not None else 0.0
        decoded = [(f.time - origin, f.to_ndarray(format="rgb24")) for f in container.decode(video=0)]
    return [[a for t, a in decoded if t <= when + 1e-6][-1] for when in times]


@pytest.fixture(scope="module")
def ramp_video(tmp_path_factory) -> Path:
    """A 40-frame 25 fps H.264 clip written with write_video; frame k is gray 6k."""
    path = tmp_path_factory.mktemp("ramp") / "ramp.mp4"
    io.write_video(path, _gray_ramp(40), fps=25)
    return path


@pytest.mark.parametrize(
    ("name", "height", "width"),
    [("city_cc0.mpg", 405, 720), ("balle_jbart.mp4", 576, 720), ("realshort.mp4", 240, 320)],
)
def test_read_clip_shape_and_dtype(shared_media, name, height, width):
    clip = io.read_clip(shared_media / "video" / name, start_s=0.0, num_frames=9, fps=8)
    assert clip.shape == (9, height, width, 3)
    assert clip.dtype == np.uint8
    assert clip.std() > 1  # real picture content, not a blank


def test_read_clip_size_and_crop(shared_media):
    clip = io.read_clip(shared_media / "video" / "balle_jbart.mp4", 0.0, 5, 8, size=(128, 224))
    assert clip.shape == (5, 128, 224, 3) and clip.dtype == np.uint8
    portrait = io.read_clip(shared_media / "video" / "city_cc0.mpg", 1.0, 3, 8, size=(224, 128))
    assert portrait.shape == (3, 224, 128, 3)


def test_read_clip_without_container_frame_rate(shared_media):
    path = shared_media / "video" / "force_magnetique.ogv"
    clip = io.read_clip(path, 0.0, 9, 8)  # 1.36 s holds 11 frames at 8 fps
    assert clip.shape == (9, 304, 400, 3)
    expected = _reference_frames(path, [i / 8 for i in range(9)])
    assert all(np.array_equal(a, b) for a, b in zip(clip, expected, strict=True))
    with pytest.raises(io.NotEnoughFramesError, match="only 11 are available"):
        io.read_clip(path, 0.0, 17, 8)


def test_read_clip_short_file_needs_pad(shared_media):
    path = shared_media / "video" / "g1.avi"  # 0.64 s: 6 frames at 8 fps
    with pytest.raises(io.NotEnoughFramesError) as info:
        io.read_clip(path, 0.0, 17, 8)
    message = str(info.value)
    assert "g1.avi" in message and "17" in message and "only 6" in message
    assert isinstance(info.value, io.MediaError) and isinstance(info.value, UserError)

    clip = io.read_clip(path, 0.0, 17, 8, pad=True)
    assert clip.shape == (17, 300, 400, 3)
    assert all(np.array_equal(clip[i], clip[5]) for i in range(6, 17))  # last frame repeated
    assert not np.array_equal(clip[0], clip[5])


def test_read_clip_resamples_by_presentation_time(ramp_video):
    clip = io.read_clip(ramp_video, 0.0, 13, 8)  # 0 .. 1.5 s of a 25 fps clip
    assert [_frame_index(f) for f in clip] == [i * 25 // 8 for i in range(13)]
    full = io.read_clip(ramp_video, 0.0, 40, 25)
    assert [_frame_index(f) for f in full] == list(range(40))
    # Upsampling repeats frames: at 50 fps each source frame shows twice.
    double = io.read_clip(ramp_video, 0.0, 10, 50)
    assert [_frame_index(f) for f in double] == [i // 2 for i in range(10)]


def test_read_clip_start_offset(ramp_video):
    clip = io.read_clip(ramp_video, 0.5, 9, 8)
    assert [_frame_index(f) for f in clip] == [int((0.5 + i / 8) * 25 + 1e-9) for i in range(9)]
    with pytest.raises(io.NotEnoughFramesError):
        io.read_clip(ramp_video, 1.0, 6, 8)  # needs up to 1.625 s; the clip ends at 1.6 s


@pytest.mark.parametrize(("name", "start"), [("balle_jbart.mp4", 6.0), ("city_cc0.mpg", 5.0)])
def test_read_clip_seek_matches_sequential_decode(shared_media, name, start):
    """Seeking far into a file gives exactly the frames a decode from the beginning gives."""
    path = shared_media / "video" / name
    clip = io.read_clip(path, start, 5, 8)
    expected = _reference_frames(path, [start + i / 8 for i in range(5)])
    assert all(np.array_equal(a, b) for a, b in zip(clip, expected, strict=True))


def test_read_clip_seek_past_target_falls_back_to_start(shared_media, monkeypatch):
    """If a seek lands after the wanted time (imprecise demuxer), decoding restarts from the beginning."""
    monkeypatch.setattr(media_container, "_SEEK_MARGIN_S", -1.5)  # seek deliberately 1.5 s too far
    path = shared_media / "video" / "city_cc0.mpg"
    clip = io.read_clip(path, 3.0, 3, 8)
    expected = _reference_frames(path, [3.0 + i / 8 for i in range(3)])
    assert all(np.array_equal(a, b) for a, b in zip(clip, expected, strict=True))


def test_resize_center_crop_covers_then_crops():
    frames = np.zeros((2, 100, 200, 3), np.uint8)
    frames[:, :, :50] = (255, 0, 0)  # left quarter red
    frames[:, :, 50:150] = (0, 255, 0)  # middle half green
    frames[:, :, 150:] = (0, 0, 255)  # right quarter blue
    out = io.resize_center_crop(frames, (50, 50))  # scale 0.5 -> 50x100, keep the middle 50 columns
    assert out.shape == (2, 50, 50, 3) and out.dtype == np.uint8
    inner = out[:, :, 1:-1]  # the antialiasing filter blends one edge column with its neighbours
    assert np.all(inner[..., 1] == 255) and np.all(inner[..., 0] == 0) and np.all(inner[..., 2] == 0)
    assert np.all(out[..., 1] >= 200)
    up = io.resize_center_crop(frames, (300, 300))  # upscale to cover 300 rows -> 300x600
    assert up.shape == (2, 300, 300, 3)
    assert io.resize_center_crop(frames, (100, 200)) is frames


def test_read_image_png_and_jpeg(tmp_path):
    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, (30, 40, 3), dtype=np.uint8)
    png = tmp_path / "a.png"
    with av.open(str(png), "w", format="image2") as container:
        stream = container.add_stream("png", rate=1)
        stream.width, stream.height, stream.pix_fmt = 40, 30, "rgb24"
        container.mux(stream.encode(av.VideoFrame.from_ndarray(image, format="rgb24")))
        container.mux(stream.encode(None))
    got = io.read_image(png)
    assert got.shape == (1, 30, 40, 3) and got.dtype == np.uint8
    assert np.array_equal(got[0], image)  # PNG is lossless
    assert io.read_image(png, size=(16, 16)).shape == (1, 16, 16, 3)

    smooth = np.broadcast_to(np.linspace(0, 255, 40, dtype=np.uint8)[None, :, None], (30, 40, 3)).copy()
    jpg = tmp_path / "b.jpg"
    with av.open(str(jpg), "w", format="image2") as container:
        stream = container.add_stream("mjpeg", rate=1)
        stream.width, stream.height, stream.pix_fmt = 40, 30, "yuvj444p"
        frame = av.VideoFrame.from_ndarray(smooth, format="rgb24").reformat(format="yuvj444p")
        container.mux(stream.encode(frame))
        container.mux(stream.encode(None))
    got = io.read_image(jpg)
    assert got.shape == (1, 30, 40, 3)
    assert np.abs(got[0].astype(int) - smooth).mean() < 4


def test_read_clip_no_video_stream(shared_media):
    with pytest.raises(io.NoVideoStreamError, match="no video stream"):
        io.read_clip(shared_media / "audio" / "speech_librivox_0880.wav", 0.0, 1, 8)


def test_write_video_round_trip_with_audio(tmp_path, sine, peak_hz):
    # moving colour gradients: smooth content, as 4:2:0 chroma keeps no sharp colour edges
    y, x = np.mgrid[0:64, 0:96]
    frames = np.stack(
        [
            np.stack([(2 * x + 3 * k) % 256, (3 * y + k) % 256, (1.3 * (x + y)) % 256], axis=-1)
            for k in range(9)
        ]
    ).astype(np.uint8)
    audio = sine(440, 9 / 8, 16000)
    path = tmp_path / "nested" / "dir" / "out.mp4"  # parents are created
    io.write_video(path, frames, fps=8, audio=audio, sample_rate=16000)

    info = io.probe(path)
    (v,) = info.video
    (a,) = info.audio
    assert (v.codec, v.width, v.height, v.fps, v.num_frames) == ("h264", 96, 64, 8.0, 9)
    assert (a.codec, a.sample_rate, a.channels) == ("aac", 16000, 1)

    back = io.read_clip(path, 0.0, 9, 8)
    assert back.shape == frames.shape
    assert np.abs(back.astype(np.float32) - frames).mean() < 4
    sound = io.read_audio(path, sample_rate=16000)
    assert sound.shape[0] == pytest.approx(len(audio), abs=1100)
    assert peak_hz(sound, 16000) == pytest.approx(440, abs=10)


def test_write_video_is_deterministic(tmp_path, sine):
    frames = _gray_ramp(12)
    frames[:, 8:16, 10:30] = 200
    audio = sine(300, 1.5, 16000)
    first, second = tmp_path / "a.mp4", tmp_path / "b.mp4"
    io.write_video(first, frames, fps=8, audio=audio, sample_rate=16000)
    io.write_video(second, frames, fps=8, audio=audio, sample_rate=16000)
    assert first.read_bytes() == second.read_bytes()


def test_write_video_odd_size(tmp_path):
    frames = np.full((3, 33, 47, 3), 120, np.uint8)
    path = tmp_path / "odd.mp4"
    io.write_video(path, frames, fps=8)
    (v,) = io.probe(path).video
    assert (v.height, v.width) == (34, 48)  # padded by one edge pixel to even
    back = io.read_clip(path, 0.0, 3, 8)
    assert np.abs(back[:, :33, :47].astype(int) - 120).max() <= 3


def test_write_image_round_trip(tmp_path) -> None:
    frame = (np.random.default_rng(0).random((24, 40, 3)) * 255).astype(np.uint8)
    io.write_image(tmp_path / "a.png", frame)
    assert np.array_equal(io.read_image(tmp_path / "a.png")[0], frame)
    with pytest.raises(ValueError, match="uint8"):
        io.write_image(tmp_path / "b.png", frame.astype(np.float32))
