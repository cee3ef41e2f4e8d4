"""The queue and the generation thread: jobs wait in submission order; the thread takes the oldest and
every compatible job behind it (up to `max_batch` sampler rows) and runs them as one batch, so the event
loop never waits on the model. Live progress is kept in memory; states and results go to the store."""

from __future__ import annotations

import logging
import threading
import time
import traceback
from collections.abc import Callable
from typing import Any

from videopoet.errors import UserError
from videopoet.serve.engine import Cancelled, Engine, Job
from videopoet.serve.store import JobStore

log = logging.getLogger("videopoet.serve")


class QueueFull(UserError):
    """The queue holds `max_queue` jobs (HTTP 503)."""


class Worker:
    """One generation thread over one engine."""

    def __init__(self, engine: Engine, store: JobStore, max_queue: int = 64, max_batch: int = 8, batch_wait_s: float = 0.0) -> None:
        """`batch_wait_s`: under concurrent load (the last batch had several rows), how long the oldest job may
        wait for the queue to hold as many rows as that batch had, so that clients who submit again when
        their job ends share the next batch instead of splitting it into a lone job and the rest."""
        self.engine, self.store = engine, store
        self.max_queue, self.max_batch, self.batch_wait_s = max_queue, max_batch, batch_wait_s
        self._queue: list[str] = []
        self._cond = threading.Condition()
        self._live: dict[str, dict[str, Any]] = {}
        self._running: list[str] = []
        self._cancelled: set[str] = set()
        self._stopping = False
        self._thread: threading.Thread | None = None
        self.batches: list[list[str]] = []  # the ids of every batch run, in order (tests and the benchmark read it)
        self.version = 0  # moves on every change of a job's state, queue position or progress (event streams watch it)
        self._listeners: list[Callable[[], None]] = []
        self._last_rows = 0  # rows of the last batch run

    def add_listener(self, listener: Callable[[], None]) -> None:
        """Call `listener()` (from whichever thread made the change) whenever `version` moves."""
        self._listeners.append(listener)

    def _changed(self) -> None:
        self.version += 1
        for listener in self._listeners:
            listener()

    # ---- the queue -------------------------------------------------------------------------------------
    def start(self, run: bool = True) -> list[str]:
        """Re-queue the jobs the store holds as queued or running (after a restart); start the thread
        unless `run` is False. Returns the re-queued ids."""
        ids = self.store.requeue_unfinished()
        with self._cond:
            self._queue = ids + [i for i in self._queue if i not in ids]
        if run and self._thread is None:
            self._thread = threading.Thread(target=self._loop, name="videopoet-serve-worker", daemon=True)
            self._thread.start()
        return ids

    def submit(self, job_id: str) -> None:
        """Queue a job already in the store; `QueueFull` when `max_queue` jobs wait."""
        with self._cond:
            if len(self._queue) >= self.max_queue:
                raise QueueFull(f"the queue holds {len(self._queue)} jobs, its limit")
            self._queue.append(job_id)
            self._changed()
            self._cond.notify_all()

    def has_room(self) -> bool:
        with self._cond:
            return len(self._queue) < self.max_queue

    def queued(self) -> int:
        with self._cond:
            return len(self._queue)

    def running(self) -> list[str]:
        with self._cond:
            return list(self._running)

    def status(self, job_id: str) -> dict[str, Any]:
        """Live facts of a job: its queue position (1 = next) or its progress while running."""
        with self._cond:
            if job_id in self._queue:
                return {"queue_position": self._queue.index(job_id) + 1}
            return dict(self._live.get(job_id, {}))

    def cancel(self, job_id: str) -> bool:
        """Cancel a queued or running job; False when it is neither (finished, or unknown)."""
        with self._cond:
            if job_id in self._queue:
                self._queue.remove(job_id)
            elif job_id in self._running:
                self._cancelled.add(job_id)
            else:
                return False
            moved = self.store.set_state(job_id, "cancelled", only_from=("queued", "running"), finished=time.time())
            self._changed()
            return moved

    def stop(self, timeout_s: float = 120.0) -> bool:
        """Stop taking jobs and wait up to `timeout_s` for the running batch; True when it finished. Jobs
        still queued or running stay so in the store and are re-queued by the next start."""
        with self._cond:
            self._stopping = True
            self._cond.notify_all()
        if self._thread is not None:
            self._thread.join(timeout_s)
            return not self._thread.is_alive()
        return True

    # ---- the thread ------------------------------------------------------------------------------------
    def _take_batch(self) -> list[tuple[str, dict[str, Any]]]:
        """Remove the oldest job and the compatible ones behind it from the queue (called holding the lock)."""
        batch: list[tuple[str, dict[str, Any]]] = []
        key, rows = None, 0
        for job_id in list(self._queue):
            job = self.store.get(job_id)
            if job is None or job["state"] != "queued":
                self._queue.remove(job_id)
                continue
            params = job["params"]
            try:
                k = self.engine.batch_key(params)
            except Exception:  # noqa: BLE001 - a job the model can no longer run fails alone
                k = ("alone", job_id)
            n = int(params.get("num_samples", 1))
            if key is None:
                key, rows = k, n
            elif k != key or rows + n > self.max_batch:
                continue
            else:
                rows += n
            batch.append((job_id, params))
            self._queue.remove(job_id)
            if rows >= self.max_batch:
                break
        return batch

    def _wait_for_rows(self) -> None:
        """Under load, wait (holding the lock's condition) up to `batch_wait_s` for the queue to hold as many
        rows as the last batch had; alone (the last batch had one row) a job starts at once."""
        target = min(self.max_batch, self._last_rows)
        deadline = time.monotonic() + self.batch_wait_s
        while not self._stopping and target > 1 and self._queued_rows(target) < target:
            left = deadline - time.monotonic()
            if left <= 0:
                return
            self._cond.wait(left)

    def _queued_rows(self, enough: int) -> int:
        """Sampler rows the queue holds, counted up to `enough`."""
        rows = 0
        for job_id in self._queue:
            job = self.store.get(job_id)
            rows += int(job["params"].get("num_samples", 1)) if job else 0
            if rows >= enough:
                break
        return rows

    def _loop(self) -> None:
        while True:
            with self._cond:
                while not self._queue and not self._stopping:
                    self._cond.wait()
                if self._stopping:
                    return
                self._wait_for_rows()
                if self._stopping:
                    return
                batch = self._take_batch()
                if not batch:
                    continue
                now = time.time()
                with self.store.transaction():
                    for job_id, _ in batch:
                        created = (self.store.get(job_id) or {}).get("created", now)
                        self.store.set_state(job_id, "running", only_from=("queued",), started=now, queue_s=now - created,
                                             batch_size=len(batch))
                        self._live[job_id] = {"progress": 0.0, "step": 0, "steps": None}
                self._running = [j for j, _ in batch]
                self._last_rows = sum(int(params.get("num_samples", 1)) for _, params in batch)
                self._changed()
            self._run(batch)

    def _run(self, batch: list[tuple[str, dict[str, Any]]]) -> None:
        ids = [j for j, _ in batch]
        jobs = [Job(j, params, self.store.job_dir(j)) for j, params in batch]

        def progress(fraction: float, step: int, steps: int) -> None:
            for j in ids:
                self._live[j] = {"progress": round(fraction, 4), "step": step, "steps": steps}
            self._changed()

        def should_stop() -> bool:
            return all(j in self._cancelled for j in ids)

        started = time.perf_counter()
        try:
            results: dict[str, Any] = self.engine.run(jobs, progress, should_stop)
        except Cancelled:
            results = {}
        except Exception as e:  # noqa: BLE001 - a bug fails the batch, never the server
            log.error("batch %s failed:\n%s", ids, traceback.format_exc())
            results = {j: RuntimeError(f"internal error: {type(e).__name__}: {e}") for j in ids}
        run_s = time.perf_counter() - started
        finished = time.time()
        with self._cond, self.store.transaction():
            for j in ids:
                result = results.get(j)
                if j in self._cancelled:
                    pass
                elif isinstance(result, list):
                    self.store.set_state(j, "done", only_from=("running",), finished=finished, run_s=run_s,
                                         files=[s["file"] for s in result])
                else:
                    error = str(result) if result is not None else "no output"
                    self.store.set_state(j, "failed", only_from=("running",), finished=finished, run_s=run_s, error=error)
                self._live.pop(j, None)
                self._cancelled.discard(j)
            self._running = []
            self.batches.append(ids)
            self._changed()
