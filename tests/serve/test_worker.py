"""The queue and generation thread on a stand-in engine: batching by key and rows, progress, cancelling
queued and running jobs, failures, a full queue, and a graceful stop."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest

from videopoet.serve.engine import Cancelled
from videopoet.serve.store import JobStore
from videopoet.serve.worker import QueueFull, Worker


class FakeEngine:
    """Runs a batch in `ticks` steps of `tick_s`; a job whose prompt is `fail` fails, `crash` crashes the batch."""

    def __init__(self, ticks: int = 5, tick_s: float = 0.02) -> None:
        self.ticks, self.tick_s = ticks, tick_s
        self.release = threading.Event()
        self.release.set()

    def batch_key(self, params: dict) -> tuple:
        return (params["task"],)

    def run(self, jobs, progress, should_stop):
        self.release.wait(10)
        for step in range(self.ticks):
            if should_stop():
                raise Cancelled()
            progress((step + 1) / self.ticks, step + 1, self.ticks)
            time.sleep(self.tick_s)
        if any(j.params.get("prompt") == "crash" for j in jobs):
            raise RuntimeError("boom")
        return {j.id: ValueError("bad input") if j.params.get("prompt") == "fail" else [{"file": f"{j.id}.mp4"}] for j in jobs}


def add(store: JobStore, worker: Worker, task: str = "t2v", **params) -> str:
    job_id = store.new_id()
    store.add(job_id, "me", {"task": task, "num_samples": 1, **params})
    worker.submit(job_id)
    return job_id


def wait_state(store: JobStore, job_id: str, states: tuple[str, ...], timeout_s: float = 10) -> dict:
    deadline = time.monotonic() + timeout_s
    while (job := store.get(job_id))["state"] not in states:
        assert time.monotonic() < deadline, job
        time.sleep(0.01)
    return job


@pytest.fixture
def store(tmp_path: Path):
    s = JobStore(tmp_path)
    yield s
    s.close()


def test_batches_by_key_and_rows(store: JobStore) -> None:
    worker = Worker(FakeEngine(ticks=1), store, max_queue=10, max_batch=3)
    a, b = add(store, worker), add(store, worker, num_samples=2)
    c = add(store, worker, task="t2i")
    d = add(store, worker)  # would make 4 rows with a and b: next batch
    worker.start()
    for j in (a, b, c, d):
        assert wait_state(store, j, ("done",))["files"] == [f"{j}.mp4"]
    assert worker.batches == [[a, b], [c], [d]]
    assert worker.stop()


def test_under_load_a_batch_waits_to_fill_as_the_last_one_did(store: JobStore) -> None:
    """Clients that submit again when their job ends reach the queue a little apart: after a batch of two,
    the first newcomer waits (up to `batch_wait_s`) for a second instead of running alone; after a lone job,
    a newcomer starts at once. Every change reaches the listeners."""
    worker = Worker(FakeEngine(ticks=1), store, max_batch=4, batch_wait_s=1.0)
    changes = []
    worker.add_listener(lambda: changes.append(worker.version))
    a, b = add(store, worker), add(store, worker)
    worker.start()
    wait_state(store, b, ("done",))
    assert worker.batches == [[a, b]]
    c = add(store, worker)
    time.sleep(0.2)
    d = add(store, worker)
    wait_state(store, d, ("done",))
    assert worker.batches[-1] == [c, d]  # c waited 0.2 s for d
    e = add(store, worker)  # the last batch had two rows: e waits for one more, then runs alone
    job = wait_state(store, e, ("done",))
    assert worker.batches[-1] == [e] and job["queue_s"] >= 0.9
    f = add(store, worker)  # after a lone job nothing waits
    assert wait_state(store, f, ("done",))["queue_s"] < 0.5
    assert worker.stop()
    assert changes == list(range(1, worker.version + 1))


def test_progress_and_cancel_running(store: JobStore) -> None:
    engine = FakeEngine(ticks=400, tick_s=0.01)
    worker = Worker(engine, store, max_batch=1)
    worker.start()
    a, b = add(store, worker), add(store, worker)
    wait_state(store, a, ("running",))
    assert worker.status(b) == {"queue_position": 1}
    deadline = time.monotonic() + 5
    while not worker.status(a).get("step"):
        assert time.monotonic() < deadline
        time.sleep(0.01)
    assert 0 < worker.status(a)["progress"] <= 1 and worker.status(a)["steps"] == 400
    assert worker.cancel(a)
    assert wait_state(store, a, ("cancelled",))["state"] == "cancelled"
    assert worker.cancel(b) and store.get(b)["state"] == "cancelled"  # queued: just removed
    assert not worker.cancel(b)
    engine.ticks = 1
    c = add(store, worker)
    assert wait_state(store, c, ("done",))["state"] == "done"  # the worker goes on
    assert worker.stop()


def test_failures(store: JobStore) -> None:
    worker = Worker(FakeEngine(ticks=1), store, max_batch=4)
    ok, bad = add(store, worker), add(store, worker, prompt="fail")
    worker.start()
    assert wait_state(store, ok, ("done",))["state"] == "done"
    assert wait_state(store, bad, ("failed",))["error"] == "bad input"
    crash = add(store, worker, prompt="crash")
    assert "internal error: RuntimeError: boom" in wait_state(store, crash, ("failed",))["error"]
    assert worker.stop()


def test_full_queue_and_graceful_stop(store: JobStore) -> None:
    engine = FakeEngine(ticks=5)
    engine.release.clear()
    worker = Worker(engine, store, max_queue=2, max_batch=1)
    worker.start()
    running = add(store, worker)
    wait_state(store, running, ("running",))
    queued = [add(store, worker), add(store, worker)]
    assert not worker.has_room()
    with pytest.raises(QueueFull):
        add(store, worker)
    engine.release.set()
    assert worker.stop(timeout_s=10)  # the running batch finishes
    assert store.get(running)["state"] == "done"
    assert all(store.get(j)["state"] == "queued" for j in queued)  # left for the next start
