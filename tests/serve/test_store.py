"""The jobs table: states move only from where they may, lists are per owner, a reopened store re-queues
what was queued or running, the per-owner quota holds under concurrent adds, and pruning deletes old
finished jobs with their files."""

from __future__ import annotations

import threading
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


def test_quota_is_atomic_under_concurrent_adds(tmp_path: Path) -> None:
    store, other = JobStore(tmp_path), JobStore(tmp_path)  # two connections to one file, as well as threads
    start, accepted = threading.Barrier(16), []

    def submit(i: int) -> None:
        s = store if i % 2 else other
        start.wait()
        if s.add(s.new_id(), "alice", {"i": i}, max_active=3) is not None:
            accepted.append(i)

    threads = [threading.Thread(target=submit, args=(i,)) for i in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(accepted) == 3 and store.count("alice") == 3
    assert store.add(store.new_id(), "bob", {}, max_active=3) is not None  # the quota is per owner
    done = store.list("alice")[0]["id"]
    store.set_state(done, "done")
    assert store.add(store.new_id(), "alice", {}, max_active=3) is not None  # a finished job frees its place
    store.close()
    other.close()


def test_prune_deletes_old_finished_jobs_and_their_files(tmp_path: Path) -> None:
    store = JobStore(tmp_path)
    ids = {}
    for name, state, finished in [("old", "done", 100.0), ("old_failed", "failed", 150.0), ("new", "done", 900.0),
                                  ("newer", "cancelled", 950.0), ("queued", "queued", None), ("running", "running", None)]:
        ids[name] = store.new_id() + name
        store.add(ids[name], "alice", {})
        store.set_state(ids[name], state, finished=finished)
        (store.job_dir(ids[name]) / "inputs").mkdir(parents=True)
        (store.job_dir(ids[name]) / "clip.mp4").write_bytes(b"x")
    store.update(ids["queued"], created=0.0)  # old, but not finished: kept
    assert store.prune(keep_s=500, now=1000.0) == sorted([ids["old"], ids["old_failed"]])
    assert store.get(ids["old"]) is None and not store.job_dir(ids["old"]).exists()
    assert store.get(ids["new"])["state"] == "done" and (store.job_dir(ids["new"]) / "clip.mp4").is_file()
    assert store.prune(max_finished=1, skip=[ids["new"]]) == []  # beyond the cap, but its batch still runs
    assert store.prune(max_finished=1) == [ids["new"]]  # the newest finished job stays
    assert {j["id"] for j in store.list()} == {ids["newer"], ids["queued"], ids["running"]}
    assert store.prune(keep_s=None, max_finished=None) == []
    store.close()
