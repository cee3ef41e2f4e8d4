"""The engine on the tiny model: what it tells about the model, request checks, and a batched run whose
rows decode and write like `videopoet generate`."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from videopoet.serve.engine import Cancelled, Job
from videopoet.serve.limits import FieldError


def params(**kw) -> dict:
    return {"task": "text_to_video", "prompt": "a red circle", "sampler": "maskgit", "num_samples": 1, **kw}


def test_info_and_checks(engine) -> None:
    info = engine.info()
    assert set(info["tasks"]) == set(engine.tasks()) and "text_to_video_audio" in info["tasks"]
    assert info["vocabulary"]["total"] == sum(info["vocabulary"][k] for k in ("special", "text", "video", "audio"))
    assert engine.needs("image_to_video") == "image" and engine.needs("text_to_video") is None
    engine.check(params())
    for bad, field in [(params(task="x"), "task"), (params(sampler="beam"), "sampler"),
                       (params(prompt="word " * 200), "prompt"), (params(task="video_to_audio", seconds=3.0), "seconds")]:
        with pytest.raises(FieldError) as e:
            engine.check(bad)
        assert e.value.field == field
    # batch keys: the seed does not matter, the sampler, steps and length do
    assert engine.batch_key(params(seed=1)) == engine.batch_key(params(seed=2, prompt="other"))
    assert engine.batch_key(params()) != engine.batch_key(params(steps=5))
    assert engine.batch_key(params()) != engine.batch_key(params(sampler="ar"))
    assert engine.batch_key(params()) != engine.batch_key(params(seconds=3.0))


@pytest.mark.parametrize("sampler", ["maskgit", "ar"])
def test_batched_run_writes_every_row(engine, tmp_path: Path, sampler: str) -> None:
    jobs = [Job("a", params(sampler=sampler, seed=4, num_samples=2), tmp_path / "a"),
            Job("b", params(sampler=sampler, prompt="a blue square"), tmp_path / "b")]
    seen = []
    results = engine.run(jobs, progress=lambda f, s, n: seen.append((f, s, n)), should_stop=lambda: False)
    assert [r["file"] for r in results["a"]] == [f"text_to_video_{sampler}_000.mp4", f"text_to_video_{sampler}_001.mp4"]
    assert len(results["b"]) == 1
    sidecar = json.loads((tmp_path / "a" / f"text_to_video_{sampler}_001.json").read_text())
    assert sidecar["batch"] == {"jobs": 2, "rows": 3, "row": 1, "seed": 4} and sidecar["job"] == "a"
    fractions = [f for f, _, _ in seen]
    assert fractions == sorted(fractions) and fractions[-1] == 1.0 and seen[0][1] == 1
    assert max(s for _, s, _ in seen) >= (4 if sampler == "maskgit" else seen[0][2] - 2)  # one step per model call


def test_cancel_stops_the_sampler(engine, tmp_path: Path) -> None:
    with pytest.raises(Cancelled):
        engine.run([Job("a", params(), tmp_path / "a")], should_stop=lambda: True)


def test_a_bad_input_fails_only_its_job(engine, tmp_path: Path) -> None:
    bad = Job("bad", params(task="image_to_video", inputs={"image": str(tmp_path / "missing.png")}), tmp_path / "bad")
    results = engine.run([bad, Job("ok", params(), tmp_path / "ok")])
    assert isinstance(results["bad"], Exception) and len(results["ok"]) == 1


@pytest.mark.parametrize("task", ["text_to_video_audio", "text_to_image", "video_to_audio"])
def test_batch_decoding_matches_generate_row_by_row(engine, tiny_model: Path, tmp_path: Path, task: str) -> None:
    """The batched decode gives the frames and sound `Generator.write` decodes for each row (to a rounding
    step), and the same kind of file. The decoded arrays are compared, not the files read back: frames one
    level apart can come out of H.264 many levels apart."""
    import torch

    g = engine.generator
    clip = next((tiny_model.parent / "shapes" / "clips").glob("*.mp4"))
    req = engine.request(params(task=task, inputs={"video": str(clip)} if task == "video_to_audio" else {}))
    cond, _ = g.prefixes(req, req.sampling)
    layout = g.builder.output_layout(task, g.latent, g.audio_shape())
    content = g.sample("maskgit", [torch.tensor(cond)] * 3, layout, req.sampling)
    frames, audio = engine.decode_batch(req, content, layout)
    for r in range(3):
        ours = engine.write(task, None if frames is None else frames[r], None if audio is None else audio[r], tmp_path / f"ours{r}")
        theirs = g.write(req, content[r], layout, tmp_path / f"theirs{r}", req.sampling)
        assert ours.suffix == theirs.suffix
        row_frames, row_audio = g._decode(req, content[r], layout)
        assert (frames is None) == (row_frames is None) and (audio is None) == (row_audio is None)
        if frames is not None:
            assert frames[r].shape == row_frames.shape
            assert np.abs(frames[r].astype(int) - row_frames.astype(int)).max() <= 2
        if audio is not None:
            assert np.abs(np.asarray(audio[r]) - row_audio).max() < 1e-3
    assert engine.decode_batch(engine.request(params(seconds=2.0)), content, layout) is None  # extension: row by row


def test_the_box_reaches_the_prefix(engine, tiny_model: Path) -> None:
    """The in/outpainting box masks the input video's latent grid where it says, as `generate --box` does."""
    from videopoet.llm.generate import GenerateRequest

    g, mask = engine.generator, engine.generator.vocab.token_id("<mask>")
    clip = str(next((tiny_model.parent / "shapes" / "clips").glob("*.mp4")))
    base = params(task="video_inpainting", prompt="", inputs={"video": clip})
    default, moved = engine.request(base), engine.request({**base, "box": [0.0, 0.0, 0.5, 0.5]})
    assert default.box == g.builder.default_box("video_inpainting") and moved.box == (0.0, 0.0, 0.5, 0.5)
    (a, _), (b, _) = (g.prefixes(r, r.sampling) for r in (default, moved))
    cli, _ = g.prefixes(GenerateRequest("video_inpainting", video=clip, box=(0.0, 0.0, 0.5, 0.5)), moved.sampling)
    assert a != b and a.count(mask) == b.count(mask) > 0 and b == cli
    assert engine.request(params()).box is None
    with pytest.raises(FieldError) as e:
        engine.check(params(box=[0.0, 0.0, 0.5, 0.5]))
    assert e.value.field == "box"
