"""Jobs on disk: one SQLite file (`jobs.sqlite` in `--out`, stdlib `sqlite3`), results beside it in
`jobs/ID/`. A job's parameters are stored when it is accepted, its state on every change, so a restart
lists finished jobs and re-queues the ones that were queued or running. Finished jobs are deleted after
`--keep-days` (and beyond `--max-jobs`) by `prune`, which the server runs periodically."""

from __future__ import annotations

import json
import shutil
import sqlite3
import threading
import time
import uuid
from collections.abc import Collection, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

STATES = ("queued", "running", "done", "failed", "cancelled")
FINAL = ("done", "failed", "cancelled")
DB_FILE = "jobs.sqlite"

_SCHEMA = """
CREATE TABLE IF NOT EXISTS jobs (
    id TEXT PRIMARY KEY,
    owner TEXT NOT NULL,
    state TEXT NOT NULL,
    params TEXT NOT NULL,
    created REAL NOT NULL,
    started REAL,
    finished REAL,
    queue_s REAL,
    run_s REAL,
    batch_size INTEGER,
    error TEXT,
    files TEXT NOT NULL DEFAULT '[]',
    restarts INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS jobs_owner ON jobs (owner, created);
CREATE INDEX IF NOT EXISTS jobs_state ON jobs (state, created);
"""
_JSON = ("params", "files")


class JobStore:
    """The jobs table, safe to use from the event loop and the worker thread at once."""

    def __init__(self, out: str | Path) -> None:
        self.out = Path(out)
        self.out.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(self.out / DB_FILE, check_same_thread=False, isolation_level=None)
        self._db.row_factory = sqlite3.Row
        self._lock = threading.RLock()  # one statement, or one `transaction`, at a time
        with self._lock:
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.executescript(_SCHEMA)

    def job_dir(self, job_id: str) -> Path:
        return self.out / "jobs" / job_id

    def new_id(self) -> str:
        return time.strftime("%Y%m%d-%H%M%S", time.gmtime()) + "-" + uuid.uuid4().hex[:10]

    def add(self, job_id: str, owner: str, params: dict[str, Any], max_active: int | None = None) -> dict[str, Any] | None:
        """Store a new queued job; with `max_active`, only while the owner has fewer queued or running
        jobs (None, nothing stored, when not). The count and the insert are one transaction, so two
        submits at once cannot both take the last free place."""
        with self.transaction():
            if max_active is not None and self.count(owner) >= max_active:
                return None
            self._db.execute("INSERT INTO jobs (id, owner, state, params, created) VALUES (?, ?, 'queued', ?, ?)",
                             (job_id, owner, json.dumps(params), time.time()))
        return self.get(job_id)

    @contextmanager
    def transaction(self) -> Iterator[None]:
        """The store's calls inside are one transaction: all or nothing, no other thread's call in between,
        and one disk sync instead of one per change (the worker moves a whole batch's jobs at once)."""
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                yield
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")

    def delete(self, job_id: str) -> None:
        """Forget a job: its row and its folder (inputs, results)."""
        with self._lock:
            self._db.execute("DELETE FROM jobs WHERE id = ?", (job_id,))
        shutil.rmtree(self.job_dir(job_id), ignore_errors=True)

    def prune(self, keep_s: float | None = None, max_finished: int | None = None, now: float | None = None,
              skip: Collection[str] = ()) -> list[str]:
        """Delete finished jobs (done, failed, cancelled; rows and folders) that finished more than `keep_s`
        seconds ago, and beyond the newest `max_finished`; None keeps them, and the ids in `skip` (a
        cancelled job whose batch still runs) stay. Returns the deleted ids."""
        now = time.time() if now is None else now
        final = f"state IN ({', '.join('?' * len(FINAL))})"
        ids: set[str] = set()
        with self._lock:
            if keep_s is not None:
                rows = self._db.execute(f"SELECT id FROM jobs WHERE {final} AND COALESCE(finished, created) < ?", (*FINAL, now - keep_s))
                ids.update(r[0] for r in rows.fetchall())
            if max_finished is not None:
                rows = self._db.execute(f"SELECT id FROM jobs WHERE {final} ORDER BY COALESCE(finished, created) DESC, id DESC "
                                        "LIMIT -1 OFFSET ?", (*FINAL, max_finished))
                ids.update(r[0] for r in rows.fetchall())
        ids -= set(skip)
        for job_id in sorted(ids):
            self.delete(job_id)
        return sorted(ids)

    def update(self, job_id: str, **fields: Any) -> None:
        """Set columns of a job (`params` and `files` as Python values)."""
        if not fields:
            return
        values = [json.dumps(v) if k in _JSON else v for k, v in fields.items()]
        with self._lock:
            self._db.execute(f"UPDATE jobs SET {', '.join(f'{k} = ?' for k in fields)} WHERE id = ?", (*values, job_id))

    def set_state(self, job_id: str, state: str, only_from: tuple[str, ...] | None = None, **fields: Any) -> bool:
        """Move a job to `state` (only from one of `only_from`, when given); False when it was not moved."""
        assert state in STATES
        values = [json.dumps(v) if k in _JSON else v for k, v in fields.items()]
        sets = ", ".join(["state = ?", *(f"{k} = ?" for k in fields)])
        where, args = "id = ?", [job_id]
        if only_from:
            where += f" AND state IN ({', '.join('?' * len(only_from))})"
            args += list(only_from)
        with self._lock:
            cur = self._db.execute(f"UPDATE jobs SET {sets} WHERE {where}", (state, *values, *args))
        return cur.rowcount == 1

    def get(self, job_id: str) -> dict[str, Any] | None:
        with self._lock:
            row = self._db.execute("SELECT * FROM jobs WHERE id = ?", (job_id,)).fetchone()
        return _row(row) if row is not None else None

    def list(self, owner: str | None = None, limit: int = 50, states: tuple[str, ...] | None = None) -> list[dict[str, Any]]:
        """Jobs, newest first (of one owner, in some states, when given)."""
        where, args = [], []
        if owner is not None:
            where.append("owner = ?")
            args.append(owner)
        if states:
            where.append(f"state IN ({', '.join('?' * len(states))})")
            args += list(states)
        sql = "SELECT * FROM jobs" + (" WHERE " + " AND ".join(where) if where else "") + " ORDER BY created DESC, id DESC LIMIT ?"
        with self._lock:
            rows = self._db.execute(sql, (*args, limit)).fetchall()
        return [_row(r) for r in rows]

    def count(self, owner: str | None = None, states: tuple[str, ...] = ("queued", "running")) -> int:
        sql = f"SELECT COUNT(*) FROM jobs WHERE state IN ({', '.join('?' * len(states))})"
        args: list[Any] = list(states)
        if owner is not None:
            sql += " AND owner = ?"
            args.append(owner)
        with self._lock:
            return int(self._db.execute(sql, args).fetchone()[0])

    def requeue_unfinished(self) -> list[str]:
        """After a restart: running jobs go back to queued; returns every queued job's id, oldest first."""
        with self._lock:
            self._db.execute("UPDATE jobs SET state = 'queued', started = NULL, restarts = restarts + 1 WHERE state = 'running'")
            rows = self._db.execute("SELECT id FROM jobs WHERE state = 'queued' ORDER BY created, id").fetchall()
        return [r[0] for r in rows]

    def close(self) -> None:
        with self._lock:
            self._db.close()


def _row(row: sqlite3.Row) -> dict[str, Any]:
    job = dict(row)
    for k in _JSON:
        job[k] = json.loads(job[k]) if job[k] is not None else None
    return job
