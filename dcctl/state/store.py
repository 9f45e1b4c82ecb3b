"""The state store (SQLite): runs, a journal of every step, what dcctl applied, and one lock per backend.

The store is a record, not the truth: backends are observed on every plan and dcctl's own objects carry their keys.
State adds what observation cannot: who ran what and when, which resources dcctl made (so a missing one is drift, not
news), and locks so two applies never touch one backend at once. Every write is one short transaction (WAL mode), so a
kill -9 leaves the database consistent; a lock whose holder died is reported, and ``dcctl lock break`` clears it.
"""

from __future__ import annotations

import getpass
import os
import socket
import sqlite3
import threading
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from dcctl.errors import DcctlError

SCHEMA_VERSION = 1
SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS runs (
    id INTEGER PRIMARY KEY,
    command TEXT NOT NULL,
    inventory TEXT NOT NULL,
    plan_digest TEXT,
    user TEXT NOT NULL,
    host TEXT NOT NULL,
    pid INTEGER NOT NULL,
    started_at TEXT NOT NULL,
    finished_at TEXT,
    status TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS journal (
    id INTEGER PRIMARY KEY,
    run_id INTEGER NOT NULL REFERENCES runs(id),
    backend TEXT NOT NULL,
    key TEXT NOT NULL,
    kind TEXT NOT NULL,
    name TEXT NOT NULL,
    action TEXT NOT NULL,
    phase TEXT NOT NULL,
    error TEXT,
    at TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS resources (
    backend TEXT NOT NULL,
    key TEXT NOT NULL,
    kind TEXT NOT NULL,
    name TEXT NOT NULL,
    digest TEXT NOT NULL,
    applied_at TEXT NOT NULL,
    run_id INTEGER,
    PRIMARY KEY (backend, key)
);
-- the audit trail: append-only, each entry hash-chained to the one before (dcctl/state/audit.py)
CREATE TABLE IF NOT EXISTS audit (
    id INTEGER PRIMARY KEY,
    at TEXT NOT NULL,
    user TEXT NOT NULL,
    host TEXT NOT NULL,
    pid INTEGER NOT NULL,
    action TEXT NOT NULL,
    target TEXT NOT NULL,
    outcome TEXT NOT NULL,
    plan_digest TEXT NOT NULL DEFAULT '',
    before_digest TEXT NOT NULL DEFAULT '',
    after_digest TEXT NOT NULL DEFAULT '',
    detail TEXT NOT NULL DEFAULT '{}',
    prev_hash TEXT NOT NULL,
    hash TEXT NOT NULL UNIQUE
);
-- the DR catalog (dcctl/dr/catalog.py): one row per replicated disk per point; a workload's consistent point is
-- the set of rows sharing point_set
CREATE TABLE IF NOT EXISTS dr_points (
    id INTEGER PRIMARY KEY,
    point_set TEXT NOT NULL,
    workload TEXT NOT NULL,
    server TEXT NOT NULL,
    disk TEXT NOT NULL,
    kind TEXT NOT NULL,                 -- full | incremental
    parent_id INTEGER REFERENCES dr_points(id),
    checkpoint TEXT NOT NULL,           -- libvirt checkpoint (or cinder snapshot) the point was taken at
    source_backend TEXT NOT NULL,
    target_backend TEXT NOT NULL,
    target_path TEXT NOT NULL,
    taken_at TEXT NOT NULL,
    verified_at TEXT,
    status TEXT NOT NULL,               -- pending | good | failed | expired
    size_bytes INTEGER NOT NULL DEFAULT 0,
    changed_bytes INTEGER NOT NULL DEFAULT 0,
    shipped_bytes INTEGER NOT NULL DEFAULT 0,
    checksum TEXT NOT NULL DEFAULT '',
    run_id INTEGER
);
CREATE INDEX IF NOT EXISTS dr_points_workload ON dr_points(workload, taken_at);
CREATE TABLE IF NOT EXISTS dr_drills (
    id INTEGER PRIMARY KEY,
    workload TEXT NOT NULL,
    kind TEXT NOT NULL,                 -- drill | failover | failback
    point_set TEXT NOT NULL,
    started_at TEXT NOT NULL,
    finished_at TEXT,
    rto_seconds REAL,
    ok INTEGER NOT NULL DEFAULT 0,
    detail TEXT NOT NULL DEFAULT '{}'
);
CREATE TABLE IF NOT EXISTS dr_placement (
    workload TEXT PRIMARY KEY,
    active_site TEXT NOT NULL,          -- production | dr
    since TEXT NOT NULL,
    reason TEXT NOT NULL DEFAULT ''
);
CREATE TABLE IF NOT EXISTS locks (
    backend TEXT PRIMARY KEY,
    run_id INTEGER,
    user TEXT NOT NULL,
    host TEXT NOT NULL,
    pid INTEGER NOT NULL,
    command TEXT NOT NULL,
    since TEXT NOT NULL
);
"""


def now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


@dataclass(frozen=True)
class Holder:
    """Who holds (or would hold) a lock."""

    user: str
    host: str
    pid: int
    command: str
    since: str = ""
    run_id: int | None = None

    @classmethod
    def me(cls, command: str) -> Holder:
        try:
            user = getpass.getuser()
        except (KeyError, OSError):
            user = str(os.getuid())
        return cls(user, socket.gethostname(), os.getpid(), command, now())

    def alive(self) -> bool | None:
        """Whether the holder process still runs (None: it runs on another machine, dcctl cannot tell)."""
        if self.host != socket.gethostname():
            return None
        try:
            os.kill(self.pid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            return True
        return True

    def describe(self) -> str:
        state = {True: "running", False: "gone", None: "on another machine"}[self.alive()]
        return f"{self.user}@{self.host} pid {self.pid} ({self.command}, since {self.since}, holder {state})"


class StateLockedError(DcctlError):
    """Another run holds a lock on a backend this run needs."""


@dataclass(frozen=True)
class AppliedResource:
    backend: str
    key: str
    kind: str
    name: str
    digest: str
    applied_at: str


class Store:
    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._mutex = threading.RLock()
        self.db = sqlite3.connect(str(self.path), timeout=30, isolation_level=None, check_same_thread=False)
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute("PRAGMA synchronous=NORMAL")
        self.db.execute("PRAGMA foreign_keys=ON")
        self.db.executescript(SCHEMA)
        self.db.execute("INSERT OR IGNORE INTO meta(key, value) VALUES ('schema_version', ?)", (str(SCHEMA_VERSION),))

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """BEGIN IMMEDIATE … COMMIT: one writer at a time (threads of this process, and other processes), all or
        nothing."""
        with self._mutex:
            for attempt in range(200):
                try:
                    self.db.execute("BEGIN IMMEDIATE")
                    break
                except sqlite3.OperationalError as exc:
                    if "locked" not in str(exc) or attempt == 199:
                        raise
                    time.sleep(0.05)
            try:
                yield self.db
            except BaseException:
                self.db.execute("ROLLBACK")
                raise
            self.db.execute("COMMIT")

    def close(self) -> None:
        self.db.close()

    # ---------------------------------------------------------------------------------------------------- runs
    def start_run(self, command: str, inventory: str, plan_digest: str | None, holder: Holder) -> int:
        with self.transaction() as db:
            cur = db.execute(
                "INSERT INTO runs(command, inventory, plan_digest, user, host, pid, started_at, status) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, 'running')",
                (command, inventory, plan_digest, holder.user, holder.host, holder.pid, now()),
            )
            return int(cur.lastrowid or 0)

    def finish_run(self, run_id: int, status: str) -> None:
        with self.transaction() as db:
            db.execute("UPDATE runs SET status = ?, finished_at = ? WHERE id = ?", (status, now(), run_id))

    def journal(
        self, run_id: int, backend: str, key: str, kind: str, name: str, action: str, phase: str, error: str = ""
    ) -> None:
        with self.transaction() as db:
            db.execute(
                "INSERT INTO journal(run_id, backend, key, kind, name, action, phase, error, at) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (run_id, backend, key, kind, name, action, phase, error or None, now()),
            )

    def journal_of(self, run_id: int) -> list[tuple[str, str, str, str]]:
        rows = self.db.execute(
            "SELECT key, action, phase, COALESCE(error, '') FROM journal WHERE run_id = ? ORDER BY id", (run_id,)
        )
        return [(r[0], r[1], r[2], r[3]) for r in rows]

    def last_run(self) -> dict[str, object] | None:
        row = self.db.execute(
            "SELECT id, command, status, started_at, finished_at, user, host FROM runs ORDER BY id DESC LIMIT 1"
        ).fetchone()
        if row is None:
            return None
        return dict(zip(("id", "command", "status", "started_at", "finished_at", "user", "host"), row, strict=True))

    # ----------------------------------------------------------------------------------------------- resources
    def record_applied(self, run_id: int, backend: str, key: str, kind: str, name: str, digest: str) -> None:
        self.record_many(run_id, [(backend, key, kind, name, digest)])

    def record_many(self, run_id: int, rows: Iterable[tuple[str, str, str, str, str]]) -> None:
        """Record (backend, key, kind, name, spec digest) rows as applied, in one transaction."""
        stamp = now()
        with self.transaction() as db:
            db.executemany(
                "INSERT INTO resources(backend, key, kind, name, digest, applied_at, run_id) "
                "VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT(backend, key) DO UPDATE SET "
                "kind = excluded.kind, name = excluded.name, digest = excluded.digest, "
                "applied_at = excluded.applied_at, run_id = excluded.run_id",
                [(b, k, kind, n, d, stamp, run_id) for b, k, kind, n, d in rows],
            )

    def forget(self, backend: str, key: str) -> None:
        with self.transaction() as db:
            db.execute("DELETE FROM resources WHERE backend = ? AND key = ?", (backend, key))

    def applied(self, backends: Iterable[str] | None = None) -> dict[tuple[str, str], AppliedResource]:
        rows = self.db.execute("SELECT backend, key, kind, name, digest, applied_at FROM resources")
        wanted = set(backends) if backends is not None else None
        return {(r[0], r[1]): AppliedResource(*r) for r in rows if wanted is None or r[0] in wanted}

    # --------------------------------------------------------------------------------------------------- locks
    def lock(self, backends: Iterable[str], holder: Holder, run_id: int | None) -> None:
        """Take every backend's lock, or none (all-or-nothing: two runs can never deadlock on half each)."""
        names = sorted(set(backends))
        with self.transaction() as db:
            held = self._holders(db, names)
            foreign = {b: h for b, h in held.items() if (h.host, h.pid) != (holder.host, holder.pid)}
            if foreign:
                backend, h = next(iter(sorted(foreign.items())))
                gone = h.alive() is False
                raise StateLockedError(
                    f"backend '{backend}' is locked by {h.describe()}"
                    + (f" and {len(foreign) - 1} more" if len(foreign) > 1 else ""),
                    hint=(
                        f"its holder is gone: clear it with 'dcctl lock break {backend}'"
                        if gone
                        else "wait for that run to finish (dcctl waits for no one), then run again"
                    ),
                )
            db.executemany(
                "INSERT OR REPLACE INTO locks(backend, run_id, user, host, pid, command, since) "
                "VALUES (?, ?, ?, ?, ?, ?, ?)",
                [(b, run_id, holder.user, holder.host, holder.pid, holder.command, now()) for b in names],
            )

    def unlock(self, backends: Iterable[str], holder: Holder) -> None:
        with self.transaction() as db:
            db.executemany(
                "DELETE FROM locks WHERE backend = ? AND host = ? AND pid = ?",
                [(b, holder.host, holder.pid) for b in backends],
            )

    def locks(self) -> dict[str, Holder]:
        return self._holders(self.db, None)

    def break_lock(self, backend: str, *, force: bool = False) -> Holder:
        """Clear a lock whose holder is gone (or any lock with ``force``); returns who held it."""
        with self.transaction() as db:
            holder = self._holders(db, [backend]).get(backend)
            if holder is None:
                raise DcctlError(f"backend '{backend}' is not locked")
            if holder.alive() is not False and not force:
                raise DcctlError(
                    f"backend '{backend}' is locked by {holder.describe()}",
                    hint="dcctl breaks only locks whose holder is gone; add --force if you are sure it is",
                )
            db.execute("DELETE FROM locks WHERE backend = ?", (backend,))
            return holder

    @staticmethod
    def _holders(db: sqlite3.Connection, backends: list[str] | None) -> dict[str, Holder]:
        rows = db.execute("SELECT backend, user, host, pid, command, since, run_id FROM locks").fetchall()
        return {
            r[0]: Holder(r[1], r[2], int(r[3]), r[4], r[5], r[6]) for r in rows if backends is None or r[0] in backends
        }
