"""videopoet.media.audio: reading sound (down-mix, resampling, lengths) and writing WAV and FLAC, on real media (../shared/media) and files written here."""


import av
import numpy as np
import pytest

from videopoet import media as io


def test_probe_real_audio(shared_media):
    audio = shared_media / "audio"
    expected = {
        "speech_librivox_0870.wav": ("wav", "pcm_s16le", 16000, 1, 7.1),
        "speech_librivox_0880.wav": ("wav", "pcm_s16le", 16000, 1, 2.99),
        "music_ambi_piano.flac": ("flac", "flac", 44100, 2, 2.81),
        "music_bass_voxy_c.flac": ("flac", "flac", 44100, 2, 6.23),
        "music_elec_bell.flac": ("flac", "flac", 44100, 1, 0.28),
    }
    for name, (container, codec, rate, channels, seconds) in expected.items():
        info = io.probe(audio / name)
        assert info.container == container and info.video == []
        (a,) = info.audio
        assert (a.codec, a.sample_rate, a.channels) == (codec, rate, channels), name
        assert info.duration_s == pytest.approx(seconds, abs=0.01), name


def test_read_audio_stereo_48k_to_16k_mono(shared_media):
    path = shared_media / "video" / "balle_jbart.mp4"  # AAC 48 kHz stereo
    wav = io.read_audio(path, start_s=1.0, duration_s=2.0, sample_rate=16000)
    assert wav.shape == (32000,) and wav.dtype == np.float32
    whole = io.read_audio(path)
    assert whole.dtype == np.float32 and whole.ndim == 1
    assert whole.shape[0] == pytest.approx(10.2 * 16000, rel=0.01)


def test_read_audio_downmixes_by_mean(tmp_path, sine, peak_hz):
    sr = 48000
    left = sine(440, 1.0, sr, amp=0.5)
    path = tmp_path / "stereo.wav"
    with av.open(str(path), "w", format="wav") as container:
        stream = container.add_stream("pcm_s16le", rate=sr, layout="stereo")
        data = np.stack([left, np.zeros_like(left)])  # right channel silent
        frame = av.AudioFrame.from_ndarray(
            np.round(data.T.reshape(1, -1) * 32767).astype(np.int16), format="s16", layout="stereo"
        )
        frame.sample_rate = sr
        container.mux(stream.encode(frame))
        container.mux(stream.encode(None))
    assert io.probe(path).audio[0].channels == 2
    wav = io.read_audio(path, sample_rate=16000)
    assert wav.shape == (16000,)
    assert np.abs(wav[1000:-1000]).max() == pytest.approx(0.25, abs=0.01)  # mean of 0.5 sine and silence
    assert peak_hz(wav, 16000) == pytest.approx(440, abs=2)


def test_read_audio_resampling_keeps_frequency(tmp_path, sine, peak_hz):
    path = tmp_path / "sine.wav"
    io.write_audio(path, sine(1000, 2.0, 44100), 44100)
    wav = io.read_audio(path, sample_rate=16000)
    assert wav.shape == (32000,)
    assert peak_hz(wav, 16000) == pytest.approx(1000, abs=2)
    assert np.abs(wav).max() == pytest.approx(0.5, abs=0.02)


def test_read_audio_ignores_a_callers_bf16_autocast(tmp_path, sine):
    """A tokenizer's training step reads audio under bf16 autocast: the samples stay float32 and exact."""
    import torch

    path = tmp_path / "sine.wav"
    io.write_audio(path, sine(1000, 1.0, 44100), 44100)
    plain = io.read_audio(path, sample_rate=16000)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        under = io.read_audio(path, sample_rate=16000)
    assert under.dtype == np.float32 and np.array_equal(under, plain)


def test_read_audio_real_files(shared_media):
    audio = shared_media / "audio"
    speech = io.read_audio(audio / "speech_librivox_0870.wav")
    assert speech.shape == (113600,) and np.abs(speech).max() > 0.05
    part = io.read_audio(audio / "speech_librivox_0870.wav", start_s=1.0, duration_s=0.5)
    assert np.array_equal(part, speech[16000:24000])  # 16 kHz source: no resampling, exact slice
    late = io.read_audio(audio / "speech_librivox_0870.wav", start_s=5.0, duration_s=1.0)  # seeks
    assert np.array_equal(late, speech[80000:96000])
    stereo = io.read_audio(shared_media / "video" / "balle_jbart.mp4", start_s=6.0, duration_s=1.0)
    assert stereo.shape == (16000,)
    music = io.read_audio(audio / "music_ambi_piano.flac", sample_rate=22050)
    assert music.shape[0] == pytest.approx(2.81 * 22050, rel=0.01)
    assert -1.0 <= music.min() and music.max() <= 1.0 and np.abs(music).max() > 0.05


def test_read_audio_too_short(shared_media):
    path = shared_media / "video" / "realshort.mp4"
    with pytest.raises(io.NotEnoughFramesError, match="realshort.mp4"):
        io.read_audio(path, duration_s=5.0)
    wav = io.read_audio(path, duration_s=5.0, pad=True)
    assert wav.shape == (80000,)
    assert np.all(wav[20000:] == 0) and np.abs(wav[:18000]).max() > 0.01


def test_read_audio_no_audio_stream(shared_media):
    with pytest.raises(io.NoAudioStreamError, match="city_cc0.mpg: no audio stream"):
        io.read_audio(shared_media / "video" / "city_cc0.mpg")


@pytest.mark.parametrize("ext", ["wav", "flac"])
def test_write_audio_round_trip(tmp_path, ext, sine):
    wav = sine(440, 0.5, 22050, amp=0.8)
    path = tmp_path / "sub" / f"tone.{ext}"
    io.write_audio(path, wav, 22050)
    (a,) = io.probe(path).audio
    assert (a.sample_rate, a.channels) == (22050, 1)
    assert a.codec == ("pcm_s16le" if ext == "wav" else "flac")
    back = io.read_audio(path, sample_rate=22050)
    assert back.shape == wav.shape
    assert np.abs(back - wav).max() < 1e-4  # 16-bit quantization only


def test_write_audio_rejects_other_extensions(tmp_path):
    with pytest.raises(io.MediaError, match=r"unsupported audio extension '\.mp3'"):
        io.write_audio(tmp_path / "tone.mp3", np.zeros(100, np.float32), 16000)
