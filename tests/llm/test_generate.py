"""`videopoet generate` on a tiny exported model (random weights, small random media tokenizers): every task
with both samplers, the sidecars, the command line and the input errors."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from videopoet.vocab import TASKS

pytestmark = pytest.mark.slow  # every task with both samplers; `make test-fast` leaves it out


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A random exported model folder (`serve.tiny`: the layout `videopoet export` writes, with real small
    tokenizers and shapes clips beside it). Training and exporting on the way here is `tests/test_demo.py`'s
    end-to-end run; this module tests what `videopoet generate` does with any exported model."""
    from videopoet.serve.tiny import make_tiny_model

    return make_tiny_model(tmp_path_factory.mktemp("gen"), frames=9, size=32)


@pytest.fixture(scope="module")
def generator(model_dir: Path):
    from videopoet.llm.generate import Generator

    return Generator(model_dir)


def request(task: str, inputs: Path, sampler: str = "maskgit", **kw):
    from videopoet.llm.generate import GenerateRequest
    from videopoet.llm.sampling import SamplingConfig

    clip = next((inputs.parent / "shapes" / "clips").glob("*.mp4"))
    extra = {"image_to_video": {"image": str(inputs / "first.png")}, "audio_to_video": {"audio": str(clip)}}.get(task, {})
    if task in ("video_continuation", "video_inpainting", "video_outpainting", "video_to_audio"):
        extra = {"video": str(clip)}
    kw = {"prompt": "a red circle moving left", **extra, **kw}
    return GenerateRequest(task=task, sampler=sampler, sampling=SamplingConfig(steps=2, cfg_scale=2.0, top_k=20), **kw)


@pytest.fixture(scope="module")
def inputs(model_dir: Path) -> Path:
    from videopoet import media as io

    folder = model_dir.parent / "inputs"
    clip = next((model_dir.parent / "shapes" / "clips").glob("*.mp4"))
    io.write_image(folder / "first.png", io.read_clip(clip, 0.0, 1, 8.0)[0])
    return folder


@pytest.mark.parametrize("task", TASKS)
def test_every_task_writes_media_and_sidecar(generator, inputs: Path, tmp_path: Path, task: str) -> None:
    from videopoet import media as io

    results = generator.generate(request(task, inputs), tmp_path)
    assert len(results) == 1
    sidecar = json.loads((tmp_path / results[0]["file"]).with_suffix(".json").read_text())
    for key in ("prompt", "task", "sampler", "settings", "seed", "timings"):
        assert key in sidecar
    path = tmp_path / results[0]["file"]
    info = io.probe(path)
    if task == "video_to_audio":
        assert path.suffix == ".wav" and info.audio[0].sample_rate == 16000
    elif task == "text_to_image":
        assert path.suffix == ".png" and (info.video[0].width, info.video[0].height) == (32, 32)
    else:
        assert path.suffix == ".mp4" and (info.video[0].width, info.video[0].height) == (32, 32)
        assert bool(info.audio) == (task == "text_to_video_audio")
        assert io.read_clip(path, 0.0, 9, 8.0).shape == (9, 32, 32, 3)


def test_ar_sampler_and_seeds(generator, inputs: Path, tmp_path: Path) -> None:
    from videopoet import media as io

    # (same seed, same ids is tested on the samplers themselves, tests/llm/test_sampling.py)
    a = generator.generate(request("text_to_video_audio", inputs, sampler="ar", num_samples=2), tmp_path / "a")
    assert [r["seed"] for r in a] == [0, 1] and all(r["sampler"] == "ar" for r in a)
    clips = [io.read_clip(tmp_path / "a" / r["file"], 0.0, 9, 8.0) for r in a]
    assert not np.array_equal(*clips)  # another seed, another sample


@pytest.mark.parametrize("sampler", ["ar", "maskgit"])
def test_seconds_extends_by_continuation(generator, inputs: Path, tmp_path: Path, sampler: str) -> None:
    from videopoet import media as io

    # one clip is 9 frames (1.125 s at 8 fps); 3 s takes two continuation rounds of 8 new frames each
    result = generator.generate(request("text_to_video_audio", inputs, sampler=sampler, seconds=3.0), tmp_path, name="long")
    path = tmp_path / result[0]["file"]
    assert path.name == "long_000.mp4"
    info = io.probe(path)
    assert info.video[0].num_frames == 24 and info.audio and abs(info.duration_s - 3.0) < 0.2
    frames = io.read_clip(path, 0.0, 24, 8.0)
    assert frames.shape == (24, 32, 32, 3)


def test_bad_inputs(generator, inputs: Path, model_dir: Path, tmp_path: Path) -> None:
    from videopoet import media as io
    from videopoet.llm.generate import GenerateError, Generator

    with pytest.raises(GenerateError, match="text budget"):
        generator.generate(request("text_to_video", inputs, prompt="red " * 200), tmp_path)
    io.write_image(tmp_path / "big.png", np.zeros((48, 48, 3), np.uint8))
    with pytest.raises(GenerateError, match="48x48 but the model makes 32x32"):
        generator.generate(request("image_to_video", inputs, image=str(tmp_path / "big.png")), tmp_path)
    with pytest.raises(GenerateError, match="no vocab.json"):
        Generator(tmp_path)
    with pytest.raises(GenerateError, match="--seconds"):
        generator.generate(request("text_to_image", inputs, seconds=3.0), tmp_path)
    generator.tasks.mixture["video_outpainting"] = 0.0
    try:
        with pytest.raises(GenerateError, match="not trained on video_outpainting"):
            generator.generate(request("video_outpainting", inputs), tmp_path)
    finally:
        generator.tasks.mixture["video_outpainting"] = 1.0


def test_command_line(model_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from videopoet.cli import main

    assert main(["generate", "--model", str(model_dir), "--task", "text_to_video", "--prompt", "a blue square moves up",
                 "--steps", "2", "--cfg", "1.5", "--out", str(tmp_path)]) == 0
    assert (tmp_path / "text_to_video_maskgit_000.mp4").is_file() and "sampling" in capsys.readouterr().out
    assert main(["generate", "--model", str(tmp_path), "--task", "text_to_video", "--out", str(tmp_path)]) == 2
    assert main(["generate", "--model", str(model_dir), "--task", "text_to_poem", "--out", str(tmp_path)]) == 2
    assert "unknown task" in capsys.readouterr().err
