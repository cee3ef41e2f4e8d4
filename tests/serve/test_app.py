"""The API in process (Starlette's TestClient) on a tiny exported model: every state, every error code,
cancel, batching, and a restart on the same `--out`."""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import pytest
from fastapi.testclient import TestClient

from videopoet.errors import UserError
from videopoet.serve.app import create_app


def submit(client: TestClient, **fields):
    files = fields.pop("files", None)
    data = {"task": "text_to_video", "prompt": "a red circle moving left", **fields}
    return client.post("/v1/generations", data={k: str(v) for k, v in data.items()}, files=files)


@pytest.fixture
def client(make_service):
    with TestClient(create_app(make_service())) as c:
        yield c


def test_health_and_model(client: TestClient) -> None:
    assert client.get("/v1/health").json()["status"] == "ok"
    model = client.get("/v1/model").json()
    assert "text_to_video" in model["tasks"] and model["tasks"]["image_to_video"]["input"] == "image"
    assert model["clip"]["frames"] == 9 and model["clip"]["height"] == 32 and model["clip"]["fps"] == 8.0
    assert set(model["samplers"]) == {"ar", "maskgit"} and model["samplers"]["maskgit"]["steps"] == 3
    assert model["vocabulary"]["video"] > 0 and model["vocabulary"]["text"] == 300
    assert "/v1/generations" in client.get("/openapi.json").json()["paths"]
    assert "<title>" in client.get("/").text


def test_generation_runs_to_done_with_files_and_events(client: TestClient, wait, tmp_path: Path) -> None:
    from videopoet import media

    r = submit(client, task="text_to_video_audio", seed=3)
    assert r.status_code == 202, r.text
    job = r.json()
    assert job["state"] in ("queued", "running") and r.headers["location"] == f"/v1/generations/{job['id']}"
    done = wait(client, job["id"])
    assert done["state"] == "done", done
    assert done["progress"]["fraction"] == 1.0 and done["timings"]["run_s"] > 0 and done["timings"]["queue_s"] >= 0
    (result,) = done["files"]
    assert result["kind"] == "video" and result["name"].endswith(".mp4")
    video = client.get(result["url"])
    assert video.status_code == 200 and video.headers["content-type"] == "video/mp4"
    (tmp_path / "got.mp4").write_bytes(video.content)
    info = media.probe(tmp_path / "got.mp4")
    assert (info.video[0].width, info.video[0].height) == (32, 32) and info.audio  # video with sound
    sidecar = client.get(result["sidecar"]).json()
    assert sidecar["seed"] == 3 and sidecar["task"] == "text_to_video_audio" and sidecar["job"] == job["id"]
    events = client.get(job["links"]["events"]).text
    assert "event: done" in events and json.loads(events.strip().splitlines()[-1][len("data: "):])["state"] == "done"
    listed = client.get("/v1/generations").json()["generations"]
    assert [g["id"] for g in listed] == [job["id"]]
    assert client.get(f"{job['links']['self']}/files/../../jobs.sqlite").status_code == 404
    assert client.delete(job["links"]["self"]).status_code == 409  # done: nothing to cancel


@pytest.mark.parametrize("task", ["text_to_image", "image_to_video", "video_to_audio", "audio_to_video"])
def test_every_input_kind_over_http(client: TestClient, wait, tiny_model: Path, task: str) -> None:
    from videopoet import media

    clip = next((tiny_model.parent / "shapes" / "clips").glob("*.mp4"))
    files = None
    if task == "image_to_video":
        buf = io.BytesIO()
        from PIL import Image

        Image.fromarray(media.read_clip(clip, 0.0, 1, 8.0)[0]).save(buf, format="PNG")
        files = {"image": ("first.png", buf.getvalue(), "image/png")}
    elif task in ("video_to_audio", "audio_to_video"):
        files = {"video" if task == "video_to_audio" else "audio": ("clip.mp4", clip.read_bytes(), "video/mp4")}
    r = submit(client, task=task, files=files)
    assert r.status_code == 202, r.text
    done = wait(client, r.json()["id"])
    assert done["state"] == "done", done
    kind = {"text_to_image": "image", "video_to_audio": "audio"}.get(task, "video")
    assert done["files"][0]["kind"] == kind and done["inputs"] == ([] if files is None else list(files))


def test_field_errors_name_the_field(make_service, tiny_model: Path) -> None:
    service = make_service(max_prompt_chars=50, max_num_samples=2, max_steps=8, max_seconds=4, max_upload_mb=0.01)
    clip = next((tiny_model.parent / "shapes" / "clips").glob("*.mp4"))
    with TestClient(create_app(service)) as client:
        cases = [
            ({"prompt": "x" * 51}, 422, "prompt"),
            ({"num_samples": 3}, 422, "num_samples"),
            ({"steps": 9}, 422, "steps"),
            ({"steps": "many"}, 422, "steps"),
            ({"seconds": 5}, 422, "seconds"),
            ({"task": "text_to_image", "seconds": 2}, 422, "seconds"),
            ({"task": "dance"}, 422, "task"),
            ({"sampler": "beam"}, 422, "sampler"),
            ({"task": "image_to_video"}, 422, "image"),
            ({"files": {"image": ("a.png", b"x", "image/png")}}, 422, "image"),
            ({"task": "image_to_video", "files": {"image": ("a.png", b"not an image at all", "image/png")}}, 400, "image"),
            ({"task": "image_to_video", "files": {"image": ("a.png", b"\x89PNG\r\n\x1a\n" + bytes(100), "image/png")}}, 400, "image"),
            ({"task": "image_to_video", "files": {"image": ("a.png", bytes(20000), "image/png")}}, 422, "image"),  # over 0.01 MB
            ({"task": "video_to_audio", "files": {"video": ("a.mp4", clip.read_bytes()[:2000], "video/mp4")}}, 400, "video"),
            ({"task": "audio_to_video", "files": {"audio": ("a.png", _png(8, 8), "image/png")}}, 422, "audio"),
        ]
        for fields, status, field in cases:
            r = submit(client, **fields)
            assert r.status_code == status, (fields.keys(), r.text)
            body = r.json()
            assert body["field"] == field and body["detail"].startswith(field), body
        assert client.get("/v1/generations").json()["generations"] == []  # nothing was queued
        assert client.get("/v1/generations/nope").status_code == 404
        assert not any((service.store.out / "jobs").glob("*")) if (service.store.out / "jobs").exists() else True


def test_inpainting_and_outpainting_take_a_box(client: TestClient, wait, tiny_model: Path) -> None:
    """Every option of `videopoet generate` is a field: the in/outpainting box (and top-k/p, choice temperature)."""
    model = client.get("/v1/model").json()
    assert model["tasks"]["video_inpainting"]["box"] == [0.25, 0.25, 0.5, 0.5] and model["tasks"]["text_to_video"]["box"] is None
    clip = next((tiny_model.parent / "shapes" / "clips").glob("*.mp4"))
    video = {"video": ("clip.mp4", clip.read_bytes(), "video/mp4")}
    inpaint = submit(client, task="video_inpainting", box="0, 0.5, 0.5, 0.5", top_k=50, top_p=0.9, choice_temperature=2.0, files=video)
    outpaint = submit(client, task="video_outpainting", files=video)  # no box: the task's default
    assert inpaint.status_code == 202 and outpaint.status_code == 202, (inpaint.text, outpaint.text)
    for r, box in ((inpaint, [0.0, 0.5, 0.5, 0.5]), (outpaint, None)):
        done = wait(client, r.json()["id"])
        assert done["state"] == "done" and done["params"]["box"] == box and done["files"][0]["kind"] == "video", done
        sidecar = client.get(done["files"][0]["sidecar"]).json()
        assert sidecar["box"] == (box or model["tasks"]["video_outpainting"]["box"])
    settings = client.get(wait(client, inpaint.json()["id"])["files"][0]["sidecar"]).json()["settings"]
    assert (settings["top_k"], settings["top_p"], settings["choice_temperature"]) == (50, 0.9, 2.0)
    for fields, message in [({"box": "0,0,0.5,0.5"}, "text_to_video takes no box"),
                            ({"task": "video_inpainting", "box": "0.5,0.5", "files": video}, "four numbers"),
                            ({"task": "video_inpainting", "box": "0.6,0,0.5,0.5", "files": video}, "inside the frame"),
                            ({"top_p": 2}, "top_p: must be in (0, 1]")]:
        r = submit(client, **fields)
        assert r.status_code == 422 and r.json()["field"] == next(k for k in ("box", "top_p") if k in fields), r.text
        assert message in r.json()["detail"], r.text


def test_docs_need_no_cdn(client: TestClient) -> None:
    """/docs (Swagger UI) and /redoc load their scripts and styles from the app itself: they work offline."""
    import re

    for page in ("/docs", "/redoc"):
        html = client.get(page).text
        refs = re.findall(r"""(?:src|href)=["']([^"']+)""", html)
        assert refs and all(ref.startswith("/") and not ref.startswith("//") for ref in refs), (page, refs)
        assert "http://" not in html and "https://" not in html, page
        for ref in refs:
            r = client.get(ref)
            assert r.status_code == 200 and len(r.content) > 1000, ref
    assert '"validatorUrl": null' in client.get("/docs").text  # nothing is sent to validator.swagger.io


def test_wrong_image_size_is_422(client: TestClient) -> None:
    r = submit(client, task="image_to_video", files={"image": ("big.png", _png(64, 48), "image/png")})
    assert r.status_code == 422 and r.json()["field"] == "image" and "48x64" in r.json()["detail"]


def _png(h: int, w: int) -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(np.full((h, w, 3), 128, np.uint8)).save(buf, format="PNG")
    return buf.getvalue()


def test_keys_rate_quota_and_full_queue(make_service, tmp_path: Path) -> None:
    from videopoet.serve.keys import KeyStore, add_key

    alice, bob = add_key(tmp_path / "keys.json", "alice"), add_key(tmp_path / "keys.json", "bob")
    service = make_service(keys=KeyStore(tmp_path / "keys.json"), run_worker=False, rate_per_minute=3, max_active_per_key=2, max_queue=3)
    a, b = {"Authorization": f"Bearer {alice}"}, {"X-API-Key": bob}
    with TestClient(create_app(service)) as client:
        assert client.get("/v1/model").status_code == 401
        r = client.post("/v1/generations", data={"task": "text_to_video"}, headers={"Authorization": "Bearer vp_wrong"})
        assert r.status_code == 401 and r.json()["field"] == "key" and r.headers["www-authenticate"] == "Bearer"
        assert client.get("/v1/health").status_code == 200  # health needs no key
        first = client.post("/v1/generations", data={"task": "text_to_video"}, headers=a)
        assert first.status_code == 202
        assert client.get(f"/v1/generations/{first.json()['id']}", headers=b).status_code == 404  # another key's job
        assert client.get("/v1/generations", headers=b).json()["generations"] == []
        assert client.post("/v1/generations", data={"task": "text_to_video"}, headers=a).status_code == 202
        quota = client.post("/v1/generations", data={"task": "text_to_video"}, headers=a)
        assert quota.status_code == 429 and "quota" in quota.json()["detail"] and int(quota.headers["retry-after"]) > 0
        rate = client.post("/v1/generations", data={"task": "text_to_video"}, headers=a)
        assert rate.status_code == 429 and "rate" in rate.json()["detail"] and int(rate.headers["retry-after"]) > 0
        client.cookies.set("videopoet_key", bob)  # the page's way
        assert client.post("/v1/generations", data={"task": "text_to_video"}).status_code == 202
        client.cookies.clear()
        full = client.post("/v1/generations", data={"task": "text_to_video"}, headers=b)
        assert full.status_code == 503 and int(full.headers["retry-after"]) > 0


def test_cancel_queued_job(make_service) -> None:
    with TestClient(create_app(make_service(run_worker=False))) as client:
        job = submit(client).json()
        assert job["queue_position"] == 1
        r = client.delete(job["links"]["self"])
        assert r.status_code == 200 and r.json()["state"] == "cancelled"
        assert client.delete(job["links"]["self"]).status_code == 409
        assert "event: cancelled" in client.get(job["links"]["events"]).text


def test_compatible_jobs_share_a_batch(make_service, wait) -> None:
    service = make_service(run_worker=False, max_batch=4)
    with TestClient(create_app(service)) as client:
        a = submit(client, seed=1).json()["id"]
        b = submit(client, prompt="a blue square", seed=2).json()["id"]
        c = submit(client, sampler="ar").json()["id"]  # another sampler: its own batch
        d = submit(client, steps=2).json()["id"]  # other steps: its own batch
        service.worker.start()
        jobs = {j: wait(client, j) for j in (a, b, c, d)}
    assert all(j["state"] == "done" for j in jobs.values())
    assert service.worker.batches == [[a, b], [c], [d]]
    assert jobs[a]["batch_size"] == 2 and jobs[c]["batch_size"] == 1


def test_restart_keeps_results_and_finishes_queued_jobs(make_service, tmp_path: Path, wait) -> None:
    out = tmp_path / "same-out"
    with TestClient(create_app(make_service(out=out))) as client:
        done = wait(client, submit(client).json()["id"])
    assert done["state"] == "done"
    service = make_service(out=out, run_worker=False)
    with TestClient(create_app(service)) as client:
        queued = submit(client, seed=5).json()["id"]
        interrupted = submit(client, seed=6).json()["id"]
        service.store.set_state(interrupted, "running")  # as if the server died while running it
    with TestClient(create_app(make_service(out=out))) as client:
        listed = [g["id"] for g in client.get("/v1/generations").json()["generations"]]
        assert set(listed) == {done["id"], queued, interrupted}
        assert client.get(done["files"][0]["url"]).status_code == 200
        for job_id in (queued, interrupted):
            assert wait(client, job_id)["state"] == "done"


def test_quota_holds_under_concurrent_submits(make_service, monkeypatch) -> None:
    """Submits of one key at once: the quota check and the insert are one transaction, so no more than the
    quota get in, even while each request spends time between the early check and the insert."""
    import threading
    import time

    service = make_service(run_worker=False, max_active_per_key=2)
    check = service.engine.check
    monkeypatch.setattr(service.engine, "check", lambda params: (time.sleep(0.3), check(params)))  # a slow upload probe, say
    with TestClient(create_app(service)) as client:
        start, codes = threading.Barrier(6), []

        def one(i: int) -> None:
            start.wait()
            codes.append(submit(client, seed=i).status_code)

        threads = [threading.Thread(target=one, args=(i,)) for i in range(6)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert sorted(codes) == [202, 202, 429, 429, 429, 429]
        assert len(client.get("/v1/generations").json()["generations"]) == 2
        assert not [p for p in (service.store.out / "jobs").glob("*")] if (service.store.out / "jobs").exists() else True


def test_retention_deletes_old_finished_jobs(make_service, wait, tmp_path: Path) -> None:
    """The server prunes periodically: a job that finished longer than --keep-days ago goes, rows and files."""
    import time

    from videopoet.serve.server import Retention

    service = make_service(retention=Retention(keep_days=2, every_s=0.05))
    with TestClient(create_app(service)) as client:
        old, new = (wait(client, submit(client, seed=i).json()["id"]) for i in (1, 2))
        assert service.store.job_dir(old["id"]).is_dir()
        service.store.update(old["id"], finished=old["timings"]["finished"] - 3 * 86400)  # as if 3 days ago
        deadline = time.monotonic() + 10
        while client.get(old["links"]["self"]).status_code != 404:
            assert time.monotonic() < deadline, "the old job was not pruned"
            time.sleep(0.05)
        assert not service.store.job_dir(old["id"]).exists()
        assert client.get(new["files"][0]["url"]).status_code == 200
        service.retention = Retention(keep_days=0, max_jobs=1)
        assert service.prune() == []  # one finished job left: within --max-jobs 1
    assert not Retention(keep_days=0, max_jobs=0).active
    with pytest.raises(UserError):
        Retention(keep_days=-1)
