"""The PostgreSQL backend: one state shared by a team's engineers and CI runners on many machines (psycopg 3).

``DCCTL_STATE=postgresql://user@host[:port]/database`` (or ``--state``) selects it; any libpq parameter may follow in
the query string, e.g. ``?passfile=/root/.pgpass`` so that no password is ever in the URL. What differs from SQLite:

- placeholders: the portable ``?`` becomes psycopg's ``%s`` (and a literal ``%`` becomes ``%%``);
- transactions are READ COMMITTED, and ``serialize(name)`` takes ``pg_advisory_xact_lock`` on a key derived from the
  name and the schema, released by COMMIT or ROLLBACK, also when the client dies: the read-then-write steps (taking
  locks all-or-nothing, appending to the audit chain, migrating the schema) run one at a time across machines;
- the connection is in autocommit mode outside transactions, waits at most 60 s for any lock (``lock_timeout``) and
  is closed by the server if it sits in an open transaction for 10 minutes.
"""

from __future__ import annotations

import contextlib
import functools
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from dcctl.state.store import Db, Rows, StateError, Store

LOCK_TIMEOUT = "60s"


@functools.lru_cache(maxsize=1024)
def pyformat(sql: str) -> str:
    """Portable SQL (``?`` placeholders) → psycopg's (``%s``); a ``?`` inside a quoted literal or name stays."""
    out: list[str] = []
    quote = ""
    for ch in sql:
        if ch == "%":
            out.append("%%")
        elif quote:
            out.append(ch)
            if ch == quote:
                quote = ""
        elif ch in "'\"":
            quote = ch
            out.append(ch)
        elif ch == "?":
            out.append("%s")
        else:
            out.append(ch)
    return "".join(out)


def redact(url: str) -> str:
    """The URL without its password (if it has one)."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    host = parts.hostname or ""
    netloc = f"{parts.username or ''}:***@{host}" + (f":{parts.port}" if parts.port else "")
    return urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))


class PostgresDb(Db):
    dialect = "postgres"

    def __init__(self, conn: Any, store: PostgresStore) -> None:
        super().__init__(store._mutex)
        self.conn = conn
        self.store = store

    def _execute(self, sql: str, args: tuple[Any, ...]) -> Rows:
        import psycopg

        try:
            cur = self.conn.execute(pyformat(sql), args)
            rows = cur.fetchall() if cur.description is not None else []
            return Rows([tuple(r) for r in rows], cur.rowcount)
        except psycopg.OperationalError as exc:
            raise self.store.error(exc) from exc

    def _executemany(self, sql: str, rows: list[tuple[Any, ...]]) -> None:
        import psycopg

        try:
            with self.conn.cursor() as cur:
                cur.executemany(pyformat(sql), rows)
        except psycopg.OperationalError as exc:
            raise self.store.error(exc) from exc

    def table_exists(self, table: str) -> bool:
        return bool(self.execute("SELECT to_regclass(?) IS NOT NULL", (table,)).scalar())

    def reset_identity(self, table: str) -> None:
        self.execute(
            f"SELECT setval(pg_get_serial_sequence(?, 'id'), (SELECT COALESCE(MAX(id), 0) + 1 FROM {table}), false)",
            (table,),
        )


class PostgresStore(Store):
    dialect = "postgres"

    @property
    def display(self) -> str:
        return redact(self.location)

    def _connect(self) -> Db:
        try:
            import psycopg
        except ImportError as exc:  # pragma: no cover - psycopg is a dependency of dcctl
            raise StateError(
                "a PostgreSQL state needs psycopg 3", hint="pip install 'psycopg[binary]' into dcctl's environment"
            ) from exc
        options: dict[str, Any] = {"autocommit": True}
        query = urlsplit(self.location).query
        if "connect_timeout=" not in query:
            options["connect_timeout"] = 10
        if "application_name=" not in query:
            options["application_name"] = "dcctl"
        try:
            conn = psycopg.connect(self.location, **options)
            conn.execute(f"SET lock_timeout = '{LOCK_TIMEOUT}'")
            conn.execute("SET idle_in_transaction_session_timeout = '10min'")
        except psycopg.Error as exc:
            raise StateError(
                f"cannot open the state database {self.display}: {_first_line(exc)}",
                hint="check the URL, that the server runs and lets this host in (pg_hba.conf), and the password "
                "(a passfile=… parameter, PGPASSFILE or ~/.pgpass); for the lab: scripts/postgres status",
            ) from exc
        self._conn = conn
        return PostgresDb(conn, self)

    def error(self, exc: Exception) -> StateError:
        """A psycopg failure of the connection or of a lock wait, said plainly."""
        import psycopg.errors

        if isinstance(exc, psycopg.errors.LockNotAvailable):
            return StateError(
                f"waited {LOCK_TIMEOUT} for a lock in the state database {self.display}, in vain",
                hint="another dcctl keeps a transaction open; see pg_stat_activity (application_name dcctl)",
            )
        return StateError(
            f"the state database {self.display} failed: {_first_line(exc)}",
            hint="check that the server still runs and is reachable, then run the command again",
        )

    def _begin(self, serialize: str | None) -> None:
        self.db.execute("BEGIN")
        if serialize:
            try:
                self._serialize(serialize)
            except BaseException:
                self._rollback()
                raise

    def _serialize(self, name: str) -> None:
        self.db.execute(
            "SELECT pg_advisory_xact_lock(hashtextextended('dcctl:' || COALESCE(current_schema(), '') || ':' || ?, 0))",
            (name,),
        )

    def _commit(self) -> None:
        self.db.execute("COMMIT")

    def _rollback(self) -> None:
        import psycopg

        with contextlib.suppress(psycopg.Error):  # a connection that is gone was rolled back by the server
            self._conn.execute("ROLLBACK")

    def close(self) -> None:
        self._conn.close()


def _first_line(exc: Exception) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


__all__ = ["PostgresDb", "PostgresStore", "pyformat", "redact"]
