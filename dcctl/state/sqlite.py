"""The SQLite backend: the state in one file (WAL mode), for one operator or one CI runner.

Every transaction is ``BEGIN IMMEDIATE``: it takes the database's single write lock at once, so writers of all
threads and processes of this machine run one after another, and ``serialize`` has nothing left to add. SQLite's
locks hold only on one machine's filesystem: a team shares a PostgreSQL state instead.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from dcctl.state.store import Db, Rows, Store


def _when_unlocked(statement: Callable[[], object], timeout: float = 30.0) -> None:
    """Run a statement that SQLite may refuse at once with "database is locked" (rather than wait in its busy
    handler) while another connection writes: again every 50 ms, for at most ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            statement()
            return
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or time.monotonic() > deadline:
                raise
            time.sleep(0.05)


class SqliteDb(Db):
    dialect = "sqlite"

    def __init__(self, conn: sqlite3.Connection, store: SqliteStore) -> None:
        super().__init__(store._mutex)
        self.conn = conn

    def _execute(self, sql: str, args: tuple[Any, ...]) -> Rows:
        cur = self.conn.execute(sql, args)
        return Rows(cur.fetchall(), cur.rowcount)

    def _executemany(self, sql: str, rows: list[tuple[Any, ...]]) -> None:
        self.conn.executemany(sql, rows)

    def table_exists(self, table: str) -> bool:
        row = self.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?", (table,)).fetchone()
        return row is not None

    def reset_identity(self, table: str) -> None:
        """An INTEGER PRIMARY KEY always continues after the largest id."""


class SqliteStore(Store):
    dialect = "sqlite"
    path: Path

    def _connect(self) -> Db:
        self.path = Path(self.location)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        conn = sqlite3.connect(str(self.path), timeout=30, isolation_level=None, check_same_thread=False)
        _when_unlocked(lambda: conn.execute("PRAGMA journal_mode=WAL"))  # a new file opened by many at once
        conn.execute("PRAGMA synchronous=NORMAL")
        conn.execute("PRAGMA foreign_keys=ON")
        self._conn = conn
        return SqliteDb(conn, self)

    def _begin(self, serialize: str | None) -> None:
        _when_unlocked(lambda: self._conn.execute("BEGIN IMMEDIATE"))

    def _serialize(self, name: str) -> None:
        """BEGIN IMMEDIATE already holds the database's only write lock."""

    def _commit(self) -> None:
        self._conn.execute("COMMIT")

    def _rollback(self) -> None:
        self._conn.execute("ROLLBACK")

    def close(self) -> None:
        self._conn.close()


__all__ = ["SqliteDb", "SqliteStore"]
