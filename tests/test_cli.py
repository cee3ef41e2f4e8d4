"""The `videopoet` command: help, version, one-line user errors with exit status 2, --debug."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from videopoet import __version__
from videopoet.cli import main


def run(*args: str) -> subprocess.CompletedProcess[str]:
    """The console script as a user runs it (installed beside this Python)."""
    script = Path(sys.executable).with_name("videopoet")
    cmd = [str(script)] if script.exists() else [sys.executable, "-m", "videopoet.cli"]
    return subprocess.run([*cmd, *args], capture_output=True, text=True, timeout=120)


def test_help_and_version() -> None:
    out = run("--help")
    assert out.returncode == 0
    for group in ("media", "config", "tokenizer", "data", "eval"):
        assert group in out.stdout
    version = run("--version")
    assert version.returncode == 0 and version.stdout.strip() == f"videopoet {__version__}"


@pytest.mark.parametrize(
    "argv",
    [
        ["bogus"],
        ["media", "probe"],
        ["data", "shapes", "--out", "x", "--num-clips", "many"],
        ["tokenizer"],
        ["eval", "shapes", "--inputs", "a.mp4", "--metadata", "m.jsonl", "--prompt", "p"],
    ],
)
def test_usage_errors_are_one_line_exit_2(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        main(argv)
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and "error:" in err


@pytest.mark.slow  # whole commands
def test_user_error_one_line_and_debug_traceback(tmp_path: Path) -> None:
    missing = tmp_path / "missing.mp4"
    out = run("media", "probe", str(missing))
    assert out.returncode == 2
    assert out.stderr.count("\n") == 1 and str(missing) in out.stderr and "Traceback" not in out.stderr
    debug = run("--debug", "media", "probe", str(missing))
    assert debug.returncode == 2 and "Traceback" in debug.stderr


def test_config_show_and_errors(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = Path(__file__).resolve().parents[1] / "configs" / "tiny.yaml"
    assert main(["config", "show", "--config", str(config), "text_tokenizer.vocab_size=777"]) == 0
    assert "vocab_size: 777" in capsys.readouterr().out
    assert main(["config", "show", "--config", str(config), "text_tokenizer.vocab_sise=1"]) == 2
    err = capsys.readouterr().err
    assert "text_tokenizer.vocab_sise" in err and "vocab_size" in err and len(err.splitlines()) == 1
    assert main(["config", "show", "--config", str(tmp_path / "nope.yaml")]) == 2


def test_media_probe_json(shared_media: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["media", "probe", str(shared_media / "video" / "city_cc0.mpg")]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["video"][0]["width"] == 720 and info["video"][0]["height"] == 405 and info["audio"] == []


@pytest.mark.slow  # whole commands
def test_shapes_pipeline_from_the_command_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "shapes"
    assert main(["data", "shapes", "--out", str(out), "--num-clips", "4", "--seed", "1", "--size", "48"]) == 0
    clips = sorted((out / "clips").glob("*.mp4"))
    assert len(clips) == 4 and (out / "metadata.jsonl").is_file()
    capsys.readouterr()

    assert main(["eval", "shapes", "--inputs", *map(str, clips), "--metadata", str(out / "metadata.jsonl"), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["accuracy"]["all"] == 1.0 and report["num_files"] == 4

    assert main(["eval", "shapes", "--inputs", str(clips[0]), "--prompt", "a purple hexagon"]) == 2
    assert "error" in capsys.readouterr().err

    assert main(["data", "ingest", "--src", str(out), "--out", str(tmp_path / "index"), "--size", "48x48"]) == 0
    assert "4 files seen, 4 ingested, 4 clips; 0 skipped" in capsys.readouterr().out
    with pytest.raises(SystemExit) as exc:
        main(["data", "ingest", "--src", str(out), "--out", str(tmp_path / "index2"), "--size", "48"])
    assert exc.value.code == 2 and "size must be HxW" in capsys.readouterr().err

    assert main(["tokenizer", "train", "text", "--input", str(out / "metadata.jsonl"), "--vocab-size", "300", "--out", str(tmp_path / "text")]) == 0
    from videopoet.tokenizers.text import TextTokenizer

    tok = TextTokenizer.load(tmp_path / "text")
    caption = json.loads((out / "metadata.jsonl").read_text().splitlines()[0])["caption"]
    assert tok.decode(tok.encode(caption)) == caption


def test_data_shapes_bad_values_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["data", "shapes", "--out", str(tmp_path / "x"), "--num-clips", "0"]) == 2
    assert main(["data", "shapes", "--out", str(tmp_path / "x"), "--num-clips", "2", "--size", "3"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 2 and all(line.startswith("videopoet: error:") for line in err)


def test_tokenizer_eval_x264_sweep_option() -> None:
    from videopoet.cli.commands import family_tools
    from videopoet.cli.parser import build_parser

    parser = build_parser()
    base = ["tokenizer", "eval", "video", "--ckpt", "t", "--inputs", "a.mp4", "--frames", "9"]
    assert family_tools(parser.parse_args([*base, "--x264-sweep"]), "eval")[1] == {"frames": 9, "x264_sweep": True}
    assert family_tools(parser.parse_args(base), "eval")[1] == {"frames": 9}  # left out: the tool's default
    with pytest.raises(SystemExit):  # audio has no x264
        parser.parse_args(["tokenizer", "eval", "audio", "--ckpt", "t", "--inputs", "a.wav", "--x264-sweep"])


@pytest.mark.slow  # whole commands
def test_video_tokenizer_from_the_command_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from videopoet.tokenizers.checkpoint import latest_checkpoint

    config = Path(__file__).resolve().parents[1] / "configs" / "tiny.yaml"
    small = ["model.channels=8", "model.norm_groups=4", "model.frames=9", "model.height=32", "model.width=32",
             "discriminator.channels=8", "discriminator.norm_groups=4", "train.batch_size=2", "train.num_workers=0", "val_clips=2"]
    ckpt = tmp_path / "video"
    assert main(["tokenizer", "train", "video", "--config", str(config), "--data", "shapes", "--out", str(ckpt), "--steps", "2", *small, "--nproc", "0"]) == 2
    assert "--nproc" in capsys.readouterr().err
    assert main(["tokenizer", "train", "video", "--config", str(config), "--data", "shapes", "--out", str(ckpt), "--steps", "2", *small, "--nproc", "3"]) == 2
    assert "must divide train.batch_size (2)" in capsys.readouterr().err  # the ranks split the config's batch
    # two data-parallel ranks: the command relaunches itself under torchrun (its output is the ranks')
    assert main(["tokenizer", "train", "video", "--config", str(config), "--data", "shapes", "--out", str(ckpt), "--steps", "2", *small, "--nproc", "2"]) == 0
    assert latest_checkpoint(ckpt).name == "step_0000002"
    assert main(["tokenizer", "train", "video", "--config", str(config), "--data", "shapes", "--out", str(ckpt), "--steps", "2", *small]) == 2
    assert "--resume" in capsys.readouterr().err  # the folder holds a run: nothing is overwritten
    assert main(["data", "shapes", "--out", str(tmp_path / "s"), "--num-clips", "1", "--size", "32", "--frames", "9"]) == 0
    clip = str(tmp_path / "s" / "clips" / "clip_00000.mp4")
    assert main(["tokenizer", "encode", "video", "--ckpt", str(ckpt), "--input", clip, "--out", str(tmp_path / "t.npz")]) == 0
    assert main(["tokenizer", "decode", "video", "--ckpt", str(ckpt), "--tokens", str(tmp_path / "t.npz"), "--out", str(tmp_path / "r.mp4")]) == 0
    assert (tmp_path / "r.mp4").is_file()
    capsys.readouterr()
    assert main(["tokenizer", "eval", "video", "--ckpt", str(ckpt), "--inputs", clip, "--frames", "9", "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["mean"]["tokens_per_clip"] == 3 * 8 * 8 and "h264_psnr" in result["mean"]
    assert main(["tokenizer", "eval", "video", "--ckpt", str(ckpt), "--inputs", clip, "--frames", "9", "--x264-sweep", "--json"]) == 0
    row = json.loads(capsys.readouterr().out)["inputs"][0]
    assert row["x264_curve"][0]["crf"] == 51 and isinstance(row["x264_reachable"], bool) and "h264_psnr" in row
    assert main(["tokenizer", "encode", "video", "--ckpt", str(ckpt), "--input", clip, "--frames", "8", "--out", str(tmp_path / "u.npz")]) == 2
    assert "1 + k*4" in capsys.readouterr().err


@pytest.mark.slow  # whole commands
def test_audio_tokenizer_from_the_command_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = Path(__file__).resolve().parents[1] / "configs" / "tiny.yaml"
    ckpt = tmp_path / "audio"
    args = ["tokenizer", "train", "audio", "--config", str(config), "--data", "shapes", "--out", str(ckpt), "--steps", "2",
            "train.batch_size=2", "train.num_workers=0", "val_clips=2"]
    assert main(args) == 0
    assert "trained the audio tokenizer to step 2" in capsys.readouterr().out
    assert main(["data", "shapes", "--out", str(tmp_path / "s"), "--num-clips", "1", "--size", "32"]) == 0
    clip = str(tmp_path / "s" / "clips" / "clip_00000.mp4")
    assert main(["tokenizer", "encode", "audio", "--ckpt", str(ckpt), "--input", clip, "--out", str(tmp_path / "a.npz")]) == 0
    assert main(["tokenizer", "decode", "audio", "--ckpt", str(ckpt), "--tokens", str(tmp_path / "a.npz"), "--out", str(tmp_path / "a.wav")]) == 0
    from videopoet.media import probe

    assert probe(tmp_path / "a.wav").audio[0].sample_rate == 16000
    capsys.readouterr()
    assert main(["tokenizer", "eval", "audio", "--ckpt", str(ckpt), "--inputs", clip, "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert "si_sdr" in json.dumps(result) and "opus_si_sdr" in json.dumps(result)
    assert main(["data", "shapes", "--out", str(tmp_path / "v"), "--num-clips", "1", "--size", "32"]) == 0
    silent = tmp_path / "silent.mp4"
    from videopoet.media import read_clip, write_video

    write_video(silent, read_clip(clip, 0.0, 9, 8.0), 8.0)
    assert main(["tokenizer", "encode", "audio", "--ckpt", str(ckpt), "--input", str(silent), "--out", str(tmp_path / "b.npz")]) == 2
    assert "no audio" in capsys.readouterr().err
