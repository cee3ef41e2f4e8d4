"""`videopoet demo` end to end at toy sizes: every stage runs, the report is written, a re-run skips."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import yaml

pytestmark = pytest.mark.slow  # every demo stage at toy sizes; `make test-fast` leaves it out

ROOT = Path(__file__).resolve().parents[1]

TOY = {
    "clip": {"frames": 9, "fps": 8.0, "height": 32, "width": 32},
    "shapes": {"shape_width": 0.35, "background_levels": [20, 20], "jitter": 0.5},
    "text_tokenizer": {"vocab_size": 300},
    "video_tokenizer": {
        "model": {"channels": 8, "channel_mult": [1, 2, 4, 4], "norm_groups": 4, "bits": 10, "group_bits": 5},
        "discriminator": {"channels": 8, "norm_groups": 4},
        "train": {"steps": 2, "batch_size": 2, "val_every": 2, "sample_every": 2, "save_every": 2, "log_every": 1,
                  "num_workers": 0, "precision": "fp32"},
        "val_clips": 2,
    },
    "audio_tokenizer": {"model": {"strides": [4, 4, 4, 5], "channels": 4, "latent_dim": 16, "levels": 2, "codebook_size": 64},
                        "segment_seconds": 0.5, "train": {"steps": 2, "batch_size": 2, "val_every": 2, "sample_every": 2, "save_every": 2,
                                  "log_every": 1, "num_workers": 0}, "val_clips": 2},
    "tasks": {"max_text_tokens": 32},
    "llm": {"hidden_size": 32, "num_layers": 1, "num_heads": 2, "intermediate_size": 64, "max_position_embeddings": 512},
    "llm_train": {"steps": 2, "micro_batch_size": 2, "val_every": 2, "save_every": 2, "log_every": 1, "precision": "fp32",
                  "deepspeed": str(ROOT / "deploy/deepspeed/zero0.json")},
    "demo": {"clips": 20, "nproc": 1, "prompts_per_split": 1, "cross_modal_clips": 1, "contact_sheet_samples": 1},
    "sampling": {"ar": {"cfg_scale": 2.5, "temperature": 0.0, "top_p": 0.95},
                 "maskgit": {"steps": 2, "choice_temperature": 2.0, "top_p": 0.95}},
}  # fmt: skip


@pytest.fixture(scope="module")
def demo_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    from videopoet.demo import run_demo

    root = tmp_path_factory.mktemp("demo")
    (root / "toy.yaml").write_text(yaml.safe_dump(TOY))
    cwd = os.getcwd()
    os.chdir(root)  # relative paths, as `make demo` passes them
    try:
        report = run_demo(Path("out"), Path("toy.yaml"), log=lambda _: None)
    finally:
        os.chdir(cwd)
    return root, report


def test_demo_writes_report_samples_and_sheet(demo_run: tuple[Path, dict]) -> None:
    root, report = demo_run
    out = root / "out"
    assert json.loads((out / "report.json").read_text()) == report
    assert set(report["prompt_accuracy"]) == {"ar", "maskgit"}
    for sampler in ("ar", "maskgit"):
        for split in ("seen", "heldout"):
            acc = report["prompt_accuracy"][sampler][split]
            assert acc is not None and 0 <= acc <= 1
            videos = list((out / "samples" / sampler / split).glob("*.mp4"))
            assert len(videos) == 1 and videos[0].with_suffix(".json").is_file()
        assert report["seconds_per_clip"][sampler] > 0
    settings = json.loads(next((out / "samples" / "maskgit" / "seen").glob("*.json")).read_text())["settings"]
    assert settings["steps"] == 2 and settings["choice_temperature"] == 2.0 and settings["cfg_scale"] == 1.0
    assert settings["temperature"] == 1.0 and settings["top_p"] == 0.95
    ar_settings = json.loads(next((out / "samples" / "ar" / "seen").glob("*.json")).read_text())["settings"]
    assert ar_settings["cfg_scale"] == 2.5 and ar_settings["temperature"] == 0.0  # AR's own guidance and temperature
    assert ar_settings["top_p"] == 0.95
    shapes = json.loads((out / "data" / "shapes" / "dataset.json").read_text())["config"]
    assert shapes["background_levels"] == [20, 20] and shapes["shape_width"] == 0.35 and shapes["jitter"] == 0.5
    assert list((out / "samples" / "video_to_audio").glob("*.wav")) and list((out / "samples" / "audio_to_video").glob("*.mp4"))
    assert report["video_to_audio_pitch_accuracy"] is not None and report["audio_to_video_shape_accuracy"] is not None
    assert report["llm"]["steps"] == 2 and report["llm"]["loss_curve"]["train"]
    assert (out / "contact_sheet.png").stat().st_size > 0 and len(report["contact_sheet"]["rows"]) == 4
    md = (out / "report.md").read_text()
    assert "Prompt accuracy" in md and "maskgit" in md
    assert "psnr" in report["tokenizers"]["video"]["val"]
    round_trip = report["tokenizer_round_trip"]
    assert set(round_trip) == {"val", "heldout"}
    for split in round_trip.values():
        assert split["clips"] > 0
        assert all(0 <= split[k] <= 1 for k in ("color", "shape", "direction", "all", "pitch"))
        assert split["all"] <= min(split["color"], split["shape"], split["direction"])
    assert "tokenizer round trip" in md


def test_demo_rerun_skips_finished_stages(demo_run: tuple[Path, dict]) -> None:
    from videopoet.demo import STAGES, run_demo

    root, report = demo_run
    lines: list[str] = []
    again = run_demo(root / "out", root / "toy.yaml", log=lines.append)
    assert again == report
    assert len(lines) == len(STAGES) and all("skipped" in line for line in lines)


def test_demo_refuses_another_config(demo_run: tuple[Path, dict]) -> None:
    from videopoet.demo import run_demo
    from videopoet.errors import UserError

    root, _ = demo_run
    with pytest.raises(UserError, match="holds a demo made with sampling = .*use a new --out folder or the same config"):
        run_demo(root / "out", root / "toy.yaml", ["sampling.maskgit.steps=3"], log=lambda _: None)


def test_demo_takes_one_clip_geometry(tmp_path: Path) -> None:
    from videopoet.config import ConfigError
    from videopoet.demo import Demo, DemoError

    (tmp_path / "toy.yaml").write_text(yaml.safe_dump(TOY))
    demo = Demo(tmp_path / "out", tmp_path / "toy.yaml", ["clip.fps=4"])  # one key moves every part
    assert demo.sections["shapes"].fps == demo.sections["ingest"].fps == demo.sections["video_tokenizer"].fps == 4
    with pytest.raises(ConfigError, match="disagrees with the clip section"):
        Demo(tmp_path / "out", tmp_path / "toy.yaml", ["shapes.size=64"])
    without = {k: v for k, v in TOY.items() if k != "clip"}
    without["shapes"] = {**TOY["shapes"], "size": 32, "frames": 9}
    (tmp_path / "loose.yaml").write_text(yaml.safe_dump(without))
    with pytest.raises(DemoError, match="set them once, in the config's clip section"):
        Demo(tmp_path / "out2", tmp_path / "loose.yaml")
