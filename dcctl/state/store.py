"""The state store: one interface over two backends, SQLite (a file, the default) and PostgreSQL (a team's state).

The store is a record, not the truth: backends are observed on every plan and dcctl's own objects carry their keys.
State adds what observation cannot: who ran what and when, which resources dcctl made (so a missing one is drift, not
news), locks so two applies never touch one backend at once, the audit trail and the DR catalog.

Everything here is written once, in portable SQL, and runs unchanged on both backends: ``?`` placeholders, quoted
``"user"``, ``INSERT … ON CONFLICT``, ``INSERT … RETURNING id`` (``Db.insert``), and tables made by the versioned
migrations of ``dcctl/state/migrations``. What differs lives in ``sqlite.py`` and ``postgres.py``: connecting, how a
transaction begins, and ``serialize``: a named lock held until the transaction ends (SQLite's ``BEGIN IMMEDIATE``
already makes every writer exclusive; PostgreSQL takes a transaction-level advisory lock), which is what keeps lock
taking all-or-nothing across machines and the audit chain linear under concurrent writers. Every write is one short
transaction, so a kill -9 leaves the state consistent; a lock whose holder died is reported, and ``dcctl lock break``
clears it.
"""

from __future__ import annotations

import getpass
import os
import socket
import threading
from abc import ABC, abstractmethod
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, ClassVar

from dcctl.errors import DcctlError
from dcctl.state import migrations

#: the schema version this dcctl writes (``meta.schema_version``); older states are upgraded in place on open
SCHEMA_VERSION = migrations.latest()
#: every table of the schema with its columns, in the order a copy between backends writes them (parents first)
TABLES: dict[str, tuple[str, ...]] = {
    "meta": ("key", "value"),
    "runs": ("id", "command", "inventory", "plan_digest", "user", "host", "pid", "started_at", "finished_at", "status"),
    "journal": ("id", "run_id", "backend", "key", "kind", "name", "action", "phase", "error", "at"),
    "resources": ("backend", "key", "kind", "name", "digest", "applied_at", "run_id"),
    "audit": (
        "id", "at", "user", "host", "pid", "action", "target", "outcome", "plan_digest", "before_digest",
        "after_digest", "detail", "prev_hash", "hash",
    ),
    "dr_points": (
        "id", "point_set", "workload", "server", "disk", "kind", "parent_id", "checkpoint", "source_backend",
        "target_backend", "target_path", "taken_at", "verified_at", "status", "size_bytes", "changed_bytes",
        "shipped_bytes", "checksum", "run_id",
    ),
    "dr_drills": ("id", "workload", "kind", "point_set", "started_at", "finished_at", "rto_seconds", "ok", "detail"),
    "dr_placement": ("workload", "active_site", "since", "reason"),
    "locks": ("backend", "run_id", "user", "host", "pid", "command", "since"),
}  # fmt: skip
#: tables whose ids the store generates (identity columns in PostgreSQL); audit ids come from the chain itself
IDENTITY_TABLES = ("runs", "journal", "dr_points", "dr_drills")
#: meta key set on a state whose content was moved elsewhere by ``dcctl state migrate``
MIGRATED_TO_KEY = "migrated_to"
URL_SCHEMES = ("postgresql://", "postgres://")


def now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def is_url(location: str | Path) -> bool:
    """Whether a state location is a database URL (PostgreSQL) rather than a SQLite file."""
    return isinstance(location, str) and "://" in location


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


class StateError(DcctlError):
    """The state database cannot be reached, or holds a state this dcctl cannot use."""


@dataclass(frozen=True)
class AppliedResource:
    backend: str
    key: str
    kind: str
    name: str
    digest: str
    applied_at: str


@dataclass(frozen=True)
class StateInfo:
    """What ``dcctl state info`` shows."""

    backend: str  # sqlite | postgres
    location: str  # a path, or a URL without its password
    schema_version: int
    latest_version: int
    counts: dict[str, int]
    locks: dict[str, Holder] = field(default_factory=dict)
    migrated_to: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "backend": self.backend,
            "location": self.location,
            "schema_version": self.schema_version,
            "latest_version": self.latest_version,
            "counts": dict(self.counts),
            "locks": {b: {**h.__dict__, "describe": h.describe()} for b, h in sorted(self.locks.items())},
            "migrated_to": self.migrated_to,
        }


class Rows:
    """A statement's result, fetched whole (so the connection is free again at once): iterate it, or
    ``fetchone``/``fetchall`` as with a DB-API cursor."""

    __slots__ = ("_rows", "rowcount")

    def __init__(self, rows: list[tuple[Any, ...]], rowcount: int = -1) -> None:
        self._rows = rows
        self.rowcount = rowcount

    def fetchone(self) -> tuple[Any, ...] | None:
        return self._rows[0] if self._rows else None

    def fetchall(self) -> list[tuple[Any, ...]]:
        return list(self._rows)

    def scalar(self) -> Any:
        """The first column of the first row (None without rows)."""
        return self._rows[0][0] if self._rows else None

    def __iter__(self) -> Iterator[tuple[Any, ...]]:
        return iter(self._rows)


class Db(ABC):
    """A store's connection, spoken to in portable SQL (``?`` placeholders). Statements of the threads sharing one
    store run one at a time; outside ``Store.transaction`` each statement commits on its own."""

    dialect: ClassVar[str]

    def __init__(self, mutex: threading.RLock) -> None:
        self._mutex = mutex

    def execute(self, sql: str, args: Sequence[Any] = ()) -> Rows:
        with self._mutex:
            return self._execute(sql, tuple(args))

    def executemany(self, sql: str, rows: Iterable[Sequence[Any]]) -> None:
        batch = [tuple(r) for r in rows]
        if batch:
            with self._mutex:
                self._executemany(sql, batch)

    def insert(self, sql: str, args: Sequence[Any] = ()) -> int:
        """Run an ``INSERT`` into a table with an ``id`` column; returns the id it got (``RETURNING id``)."""
        row = self.execute(f"{sql} RETURNING id", args).fetchone()
        if row is None:
            raise StateError(f"the state database returned no id for: {sql}")
        return int(row[0])

    @abstractmethod
    def _execute(self, sql: str, args: tuple[Any, ...]) -> Rows: ...

    @abstractmethod
    def _executemany(self, sql: str, rows: list[tuple[Any, ...]]) -> None: ...

    @abstractmethod
    def table_exists(self, table: str) -> bool: ...

    @abstractmethod
    def reset_identity(self, table: str) -> None:
        """After rows were written with explicit ids: make the next generated id follow the largest one."""


class Store:
    """The state: ``Store(location)`` opens a SQLite file (a path) or a PostgreSQL database (a
    ``postgresql://`` URL), upgrading its schema in place if it is older than this dcctl's."""

    dialect: ClassVar[str]
    db: Db

    def __new__(cls, location: str | Path) -> Store:
        """``Store(location)`` is the backend's store: SQLite for a path, PostgreSQL for a URL."""
        backend: type[Store] = cls
        if cls is Store:
            backend = _backend_for(location)
        return super().__new__(backend)

    def __init__(self, location: str | Path) -> None:
        self.location = str(location)
        self._mutex = threading.RLock()
        self._depth = 0  # transactions opened (and joined) by the thread holding the mutex
        self.db = self._connect()
        try:
            self._migrate()
        except BaseException:
            self.close()
            raise

    # ------------------------------------------------------------------------------------------ backend hooks
    def _connect(self) -> Db:
        raise NotImplementedError

    def _begin(self, serialize: str | None) -> None:
        """Start a transaction; with ``serialize``, also take that named lock until it ends."""
        raise NotImplementedError

    def _serialize(self, name: str) -> None:
        """Inside a transaction: take the named lock until it ends (no other writer holds it meanwhile)."""
        raise NotImplementedError

    def _commit(self) -> None:
        raise NotImplementedError

    def _rollback(self) -> None:
        raise NotImplementedError

    def close(self) -> None:
        raise NotImplementedError

    @property
    def display(self) -> str:
        """Where the state is, fit to print (a URL loses its password)."""
        return self.location

    # ------------------------------------------------------------------------------------------- transactions
    @contextmanager
    def transaction(self, serialize: str | None = None) -> Iterator[Db]:
        """All or nothing: commits at the end of the block, rolls back if it raises. ``serialize`` names a lock
        (e.g. ``"audit"``, ``"locks"``) held until the end, so a read-then-write on shared rows sees no other
        writer in between, on any machine. A transaction opened inside another one (same thread) joins it."""
        with self._mutex:
            if self._depth:
                self._depth += 1
                try:
                    if serialize:
                        self._serialize(serialize)
                    yield self.db
                finally:
                    self._depth -= 1
                return
            self._begin(serialize)
            self._depth = 1
            try:
                yield self.db
            except BaseException:
                self._depth = 0
                self._rollback()
                raise
            self._depth = 0
            self._commit()

    # --------------------------------------------------------------------------------------------- migrations
    def schema_version(self) -> int:
        if not self.db.table_exists("meta"):
            return 0
        row = self.db.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()
        return int(row[0]) if row else 0

    def _migrate(self) -> None:
        if self._check_version(self.schema_version()) == SCHEMA_VERSION:
            return
        with self.transaction(serialize="schema") as db:
            current = self._check_version(self.schema_version())  # again, now that no other writer migrates
            for migration in migrations.pending(self.dialect, current):
                for statement in migration.statements():
                    db.execute(statement)
                db.execute(
                    "INSERT INTO meta(key, value) VALUES ('schema_version', ?) "
                    "ON CONFLICT(key) DO UPDATE SET value = excluded.value",
                    (str(migration.version),),
                )

    def _check_version(self, version: int) -> int:
        if version > SCHEMA_VERSION:
            raise StateError(
                f"the state at {self.display} has schema version {version}, newer than this dcctl knows "
                f"({SCHEMA_VERSION})",
                hint="upgrade dcctl: every engineer and CI runner sharing a state needs this dcctl version or newer",
            )
        return version

    # ------------------------------------------------------------------------------------------------ meta
    def meta(self, key: str) -> str | None:
        row = self.db.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return str(row[0]) if row else None

    def set_meta(self, key: str, value: str) -> None:
        with self.transaction() as db:
            db.execute(
                "INSERT INTO meta(key, value) VALUES (?, ?) ON CONFLICT(key) DO UPDATE SET value = excluded.value",
                (key, value),
            )

    def counts(self) -> dict[str, int]:
        """Rows per table (``meta`` left out)."""
        return {t: int(self.db.execute(f"SELECT COUNT(*) FROM {t}").scalar()) for t in TABLES if t != "meta"}

    def info(self) -> StateInfo:
        return StateInfo(
            self.dialect,
            self.display,
            self.schema_version(),
            SCHEMA_VERSION,
            self.counts(),
            self.locks(),
            self.meta(MIGRATED_TO_KEY),
        )

    # ---------------------------------------------------------------------------------------------------- runs
    def start_run(self, command: str, inventory: str, plan_digest: str | None, holder: Holder) -> int:
        with self.transaction() as db:
            return db.insert(
                'INSERT INTO runs(command, inventory, plan_digest, "user", host, pid, started_at, status) '
                "VALUES (?, ?, ?, ?, ?, ?, ?, 'running')",
                (command, inventory, plan_digest, holder.user, holder.host, holder.pid, now()),
            )

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

    def last_step_of_a_dead_run(self) -> str | None:
        """When (ISO time) the newest journal entry of a run that never finished, and whose process is gone or on
        another machine, was written: its last requests may still be landing on a backend. None if there is none."""
        rows = self.db.execute(
            'SELECT r."user", r.host, r.pid, r.command, MAX(j.at) FROM runs r JOIN journal j ON j.run_id = r.id '
            'WHERE r.finished_at IS NULL GROUP BY r.id, r."user", r.host, r.pid, r.command '
            "ORDER BY MAX(j.at) DESC LIMIT 20"
        )
        dead = [r[4] for r in rows if Holder(str(r[0]), str(r[1]), int(r[2]), str(r[3])).alive() is not True]
        return max(dead, default=None)

    def journal_of(self, run_id: int) -> list[tuple[str, str, str, str]]:
        rows = self.db.execute(
            "SELECT key, action, phase, COALESCE(error, '') FROM journal WHERE run_id = ? ORDER BY id", (run_id,)
        )
        return [(r[0], r[1], r[2], r[3]) for r in rows]

    def last_run(self) -> dict[str, object] | None:
        row = self.db.execute(
            'SELECT id, command, status, started_at, finished_at, "user", host FROM runs ORDER BY id DESC LIMIT 1'
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
        """Take every backend's lock, or none (all-or-nothing: two runs can never deadlock on half each).

        The check and the take are one transaction under the ``locks`` lock, so of two runs on two machines that
        want overlapping backends at the same moment, exactly one gets them all and the other is told who holds them.
        """
        names = sorted(set(backends))
        with self.transaction(serialize="locks") as db:
            moved = self.meta(MIGRATED_TO_KEY)
            if moved:
                raise StateLockedError(
                    f"the state at {self.display} was moved to {moved} by 'dcctl state migrate': it is kept only "
                    "for reference",
                    hint=f"use --state {moved} (or DCCTL_STATE={moved})",
                )
            held = self._holders(db, names)
            foreign = {b: h for b, h in held.items() if (h.host, h.pid) != (holder.host, holder.pid)}
            if foreign:
                backend, h = next(iter(sorted(foreign.items())))
                raise StateLockedError(
                    f"{lock_subject(backend)} is locked by {h.describe()}"
                    + (f" and {len(foreign) - 1} more" if len(foreign) > 1 else ""),
                    hint=_locked_hint(backend, h),
                )
            db.executemany(
                'INSERT INTO locks(backend, run_id, "user", host, pid, command, since) VALUES (?, ?, ?, ?, ?, ?, ?) '
                'ON CONFLICT(backend) DO UPDATE SET run_id = excluded.run_id, "user" = excluded."user", '
                "host = excluded.host, pid = excluded.pid, command = excluded.command, since = excluded.since",
                [(b, run_id, holder.user, holder.host, holder.pid, holder.command, now()) for b in names],
            )

    def unlock(self, backends: Iterable[str], holder: Holder) -> None:
        with self.transaction(serialize="locks") as db:
            db.executemany(
                "DELETE FROM locks WHERE backend = ? AND host = ? AND pid = ?",
                [(b, holder.host, holder.pid) for b in backends],
            )

    def locks(self) -> dict[str, Holder]:
        return self._holders(self.db, None)

    def break_lock(self, backend: str, *, force: bool = False) -> Holder:
        """Clear a lock whose holder is gone (or any lock with ``force``); returns who held it.

        Gone means: a process of this machine that no longer runs. A holder on another machine is never judged
        dead from here (its host may only be unreachable): clear it on that machine, or with ``force``.
        """
        with self.transaction(serialize="locks") as db:
            holder = self._holders(db, [backend]).get(backend)
            if holder is None:
                raise DcctlError(f"backend '{backend}' is not locked")
            alive = holder.alive()
            if alive is not False and not force:
                raise DcctlError(
                    f"backend '{backend}' is locked by {holder.describe()}",
                    hint=(
                        f"dcctl cannot tell from here whether a process on {holder.host} still runs: run "
                        f"'dcctl lock break {backend}' on {holder.host}, or add --force if you are sure it is gone"
                        if alive is None
                        else "dcctl breaks only locks whose holder is gone; add --force if you are sure it is"
                    ),
                )
            db.execute("DELETE FROM locks WHERE backend = ?", (backend,))
            return holder

    @staticmethod
    def _holders(db: Db, backends: list[str] | None) -> dict[str, Holder]:
        rows = db.execute('SELECT backend, "user", host, pid, command, since, run_id FROM locks').fetchall()
        return {
            r[0]: Holder(r[1], r[2], int(r[3]), r[4], r[5], r[6]) for r in rows if backends is None or r[0] in backends
        }


def lock_subject(name: str) -> str:
    """What a lock guards, for people: a backend (apply, destroy) or a workload's DR work (``dr:<workload>``)."""
    return f"DR work on workload '{name[3:]}'" if name.startswith("dr:") else f"backend '{name}'"


def _locked_hint(backend: str, holder: Holder) -> str:
    alive = holder.alive()
    if alive is False:
        return f"its holder is gone: clear it with 'dcctl lock break {backend}'"
    if alive is None:
        return (
            f"it runs on another machine ({holder.host}): wait for it to finish; if it is gone, clear the lock with "
            f"'dcctl lock break {backend}' on {holder.host}, or with --force from anywhere"
        )
    return "wait for that run to finish (dcctl waits for no one), then run again"


def _backend_for(location: str | Path) -> type[Store]:
    if is_url(location):
        if str(location).startswith(URL_SCHEMES):
            from dcctl.state.postgres import PostgresStore

            return PostgresStore
        scheme = str(location).split("://", 1)[0]
        raise StateError(
            f"unsupported state URL scheme '{scheme}://'",
            hint="a state is a SQLite file path or a postgresql://user@host[:port]/database URL",
        )
    from dcctl.state.sqlite import SqliteStore

    return SqliteStore


__all__ = [
    "IDENTITY_TABLES",
    "MIGRATED_TO_KEY",
    "SCHEMA_VERSION",
    "TABLES",
    "AppliedResource",
    "Db",
    "Holder",
    "Rows",
    "StateError",
    "StateInfo",
    "StateLockedError",
    "Store",
    "is_url",
    "now",
]
