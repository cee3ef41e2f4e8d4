"""`videopoet serve`: the service (model, store, queue, keys, limits) and uvicorn around the app.

The model is loaded once, before the server listens; the worker thread starts with the app and, on
shutdown (Ctrl-C, SIGTERM), finishes its running batch within `--drain` seconds; whatever is still queued
or running then is re-queued at the next start on the same `--out`."""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from videopoet.errors import UserError
from videopoet.serve.engine import Engine
from videopoet.serve.keys import KeyStore
from videopoet.serve.limits import Limits, RateLimiter
from videopoet.serve.store import JobStore
from videopoet.serve.worker import Worker

LOOPBACK = ("127.0.0.1", "localhost", "::1")
log = logging.getLogger("videopoet.serve")


@dataclass
class Retention:
    """How long finished jobs (rows and files) are kept; the server deletes older ones every `every_s`."""

    keep_days: float = 30.0  # delete finished jobs this many days after they finished (0: keep them forever)
    max_jobs: int = 0  # keep at most this many finished jobs, the newest (0: no limit)
    every_s: float = 3600.0  # how often to look (and once at start)

    def __post_init__(self) -> None:
        if self.keep_days < 0 or self.max_jobs < 0 or not self.every_s > 0:
            raise UserError("--keep-days and --max-jobs must be 0 or more (0: no limit)")

    @property
    def active(self) -> bool:
        return self.keep_days > 0 or self.max_jobs > 0


class Service:
    """Everything the routes use: one engine, the job store in `out`, the worker, keys and limits."""

    def __init__(self, engine: Engine, out: str | Path, keys: KeyStore | None = None, limits: Limits | None = None,
                 run_worker: bool = True, batch_wait_s: float = 0.0, drain_s: float = 120.0, model_name: str = "",
                 retention: Retention | None = None) -> None:
        self.engine, self.keys = engine, keys
        self.retention = retention or Retention()
        self._pruner: threading.Thread | None = None
        self._stop_pruning = threading.Event()
        self.limits = limits or Limits()
        self.store = JobStore(out)
        self.worker = Worker(engine, self.store, self.limits.max_queue, self.limits.max_batch, batch_wait_s)
        self.rate = RateLimiter(self.limits.rate_per_minute)
        self.run_worker, self.drain_s, self.model_name = run_worker, drain_s, model_name
        self.started_at = time.time()
        self._info: dict[str, Any] | None = None

    def info(self) -> dict[str, Any]:
        """The model's description (computed once)."""
        if self._info is None:
            self._info = {"name": self.model_name, **self.engine.info()}
        return self._info

    def start(self) -> list[str]:
        """Re-queue unfinished jobs, start the worker and the periodic pruning; returns the re-queued ids."""
        requeued = self.worker.start(run=self.run_worker)
        if requeued:
            log.info("re-queued %d unfinished jobs", len(requeued))
        if self.retention.active and self._pruner is None:
            self._pruner = threading.Thread(target=self._prune_loop, name="videopoet-serve-prune", daemon=True)
            self._pruner.start()
        return requeued

    def prune(self) -> list[str]:
        """Delete the finished jobs the retention settings no longer keep; returns their ids."""
        r = self.retention
        deleted = self.store.prune(r.keep_days * 86400 if r.keep_days > 0 else None, r.max_jobs or None, skip=self.worker.running())
        if deleted:
            log.info("deleted %d finished jobs (--keep-days %g, --max-jobs %d)", len(deleted), r.keep_days, r.max_jobs)
        return deleted

    def _prune_loop(self) -> None:
        while True:
            try:
                self.prune()
            except Exception:  # noqa: BLE001 - a failed pruning (a file in use, say) is tried again next time
                log.exception("pruning old jobs failed")
            if self._stop_pruning.wait(self.retention.every_s):
                return

    def stop(self) -> None:
        """Let the running batch finish (up to `drain_s`), then close the store."""
        self._stop_pruning.set()
        if self._pruner is not None:
            self._pruner.join(30)
        if not self.worker.stop(self.drain_s):
            log.warning("the running batch did not finish in %.0f s; it is re-queued at the next start", self.drain_s)
            return  # the worker thread still writes to the store: leave it open
        self.store.close()


def serve(model: str | Path, host: str = "127.0.0.1", port: int = 8000, keys: str | Path | None = None,
          out: str | Path = "serve-out", max_queue: int = 64, max_batch: int = 8, batch_wait_s: float = 0.05, device: str = "cpu",
          limits: Limits | None = None, log_level: str = "info", retention: Retention | None = None) -> None:
    """Load the model and serve it until interrupted."""
    import uvicorn

    from videopoet.serve.app import create_app

    model = Path(model)
    if not model.is_dir():
        raise UserError(f"--model {model} is not a folder (give the folder `videopoet export` wrote)")
    key_store = KeyStore(keys) if keys is not None else None
    if key_store is None and host not in LOOPBACK:
        print(f"videopoet serve: no --keys, so anyone who reaches the server could use it: binding to 127.0.0.1 only, not {host}")
        host = "127.0.0.1"
    elif key_store is None:
        print("videopoet serve: no --keys: listening on 127.0.0.1 only, without authentication")
    limits = limits or Limits()
    limits.max_queue, limits.max_batch = max_queue, max_batch
    Limits.__post_init__(limits)
    print(f"videopoet serve: loading {model} ...", flush=True)
    engine = Engine.load(model, device=device)
    service = Service(engine, out, key_store, limits, batch_wait_s=batch_wait_s, model_name=model.name, retention=retention)
    print(f"videopoet serve: {len(engine.tasks())} tasks; jobs and results in {Path(out).resolve()}; "
          f"open http://{'[' + host + ']' if ':' in host else host}:{port}/ (API docs at /docs)", flush=True)
    uvicorn.run(create_app(service), host=host, port=port, log_level=log_level, timeout_graceful_shutdown=5)
