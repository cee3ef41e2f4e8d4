"""The jobs table: states move only from where they may, lists are per owner, and a reopened store
re-queues what was queued or running."""

from __future__ import annotations

from pathlib import Path

from videopoet.serve.store import JobStore


def test_states_listing_and_restart(tmp_path: Path) -> None:
    store = JobStore(tmp_path)
    ids = [store.new_id() for _ in range(3)]
    assert len(set(ids)) == 3
    for i, job_id in enumerate(ids):
        store.add(job_id, "alice" if i < 2 else "bob", {"task": "text_to_video", "n": i})
    assert store.get(ids[0])["state"] == "queued" and store.get(ids[0])["params"]["n"] == 0
    assert store.set_state(ids[0], "running", only_from=("queued",), started=1.0)
    assert store.set_state(ids[0], "done", only_from=("running",), files=["a.mp4"])
    assert not store.set_state(ids[0], "cancelled", only_from=("queued", "running"))  # done stays done
    assert store.get(ids[0])["files"] == ["a.mp4"]
    store.set_state(ids[1], "running")
    assert [j["id"] for j in store.list("alice")] == [ids[1], ids[0]]
    assert store.count("alice") == 1 and store.count() == 2 and store.count("bob", ("queued",)) == 1
    assert store.get("missing") is None
    store.close()

    again = JobStore(tmp_path)
    assert again.requeue_unfinished() == [ids[1], ids[2]]
    job = again.get(ids[1])
    assert job["state"] == "queued" and job["restarts"] == 1 and job["started"] is None
    assert again.get(ids[0])["state"] == "done"
    assert again.job_dir(ids[0]) == tmp_path / "jobs" / ids[0]
    again.close()
