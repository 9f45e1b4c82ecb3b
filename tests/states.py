"""The state backend the suite runs against: SQLite files (the default) or PostgreSQL (``DCCTL_TEST_STATE=postgresql``).

``scripts/test`` runs pytest once per backend. With ``DCCTL_TEST_STATE=postgresql`` every test gets a fresh, empty
schema on the test server (``scripts/postgres up``), named by its URL (``?options=-csearch_path=…``, so the same URL
works in child processes and, by the lab's address, on the lab's namespace hosts), and ``DCCTL_STATE`` names it for
the test and every dcctl it starts; the schema is dropped afterwards. Tests that choose a state themselves ask for
``state_url`` (``tests/conftest.py``) or ``fresh_state(directory)`` instead of writing a SQLite path, so they follow
the switch; tests about one backend in particular say so with the ``own_state`` mark.

A schema, not a database: the test server lets the ``dcctl`` role into its one database only (``scripts/postgres``),
and a schema costs a millisecond to make and drop, on one connection kept for the session. dcctl migrates an empty
schema on first use, exactly as it does a new team database.
"""

from __future__ import annotations

import os
import re
import secrets
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

#: ``DCCTL_TEST_STATE`` values: the backend every test's state uses
BACKENDS = ("sqlite", "postgresql")
BACKEND = os.environ.get("DCCTL_TEST_STATE", "").strip().lower() or "sqlite"
POSTGRES = BACKEND == "postgresql"

PG_DIR = Path("/var/lib/dcctl-pg")
#: schemas this suite makes: ``t<pid>_<random>`` (the pid lets a later session drop those of a killed one)
SCHEMA = re.compile(r"^t(\d+)_[0-9a-f]{12}$")
#: the ``application_name`` of every connection to a test schema, so that its teardown can end the ones left open
APP_PREFIX = "dcctl-test-"


def postgres_url(lab: bool = False) -> str | None:
    """The test server's URL: ``$DCCTL_TEST_POSTGRES`` (``$DCCTL_TEST_POSTGRES_LAB`` for the lab's hosts), else the
    one ``scripts/postgres up`` wrote."""
    configured = os.environ.get("DCCTL_TEST_POSTGRES_LAB" if lab else "DCCTL_TEST_POSTGRES")
    if configured:
        return configured
    try:
        return (PG_DIR / ("url.lab" if lab else "url")).read_text(encoding="utf-8").strip() or None
    except OSError:
        return None


_reachable: dict[str, bool] = {}


def require_postgres(lab: bool = False) -> str:
    """The server's URL, or skip (fail in CI) saying how to start it."""
    from tests.conftest import require_service

    url = postgres_url(lab)
    if url is not None and url not in _reachable:
        try:
            _admin(url)
            _reachable[url] = True
        except Exception:
            _reachable[url] = False
    require_service("PostgreSQL (the shared state's server)", bool(url and _reachable[url]), "scripts/postgres up")
    assert url is not None
    return url


def with_schema(url: str, schema: str) -> str:
    """``url`` with ``schema`` as its search path (and an application name naming it)."""
    sep = "&" if "?" in url else "?"
    return f"{url}{sep}options=-csearch_path%3D{schema}&application_name={APP_PREFIX}{schema}"


_admins: dict[str, tuple[int, Any]] = {}  # url -> (pid, connection): one per process, never shared with a fork


def _admin(url: str) -> Any:
    """A connection (autocommit) to the server at ``url`` that makes and drops schemas, kept for the session."""
    import psycopg

    held = _admins.get(url)
    if held is not None and held[0] == os.getpid() and not held[1].closed and not held[1].broken:
        return held[1]
    conn = psycopg.connect(url, autocommit=True, application_name="dcctl-test-admin")
    conn.execute("SET lock_timeout = '30s'")
    if not _admins:
        _drop_orphans(conn)
    _admins[url] = (os.getpid(), conn)
    return conn


def _drop_orphans(conn: Any) -> None:
    """Schemas left by a test session that was killed (its pid runs no more) go at the next session's start."""
    for (name,) in conn.execute("SELECT nspname FROM pg_namespace WHERE nspname LIKE 't%\\_%'").fetchall():
        found = SCHEMA.match(name)
        if found and not Path(f"/proc/{found.group(1)}").exists():
            conn.execute(f"DROP SCHEMA IF EXISTS {name} CASCADE")


def _run(url: str, sql: str) -> None:
    import psycopg

    try:
        _admin(url).execute(sql)
    except psycopg.OperationalError:  # the session's connection was lost (a server restart): once more, anew
        _admins.pop(url, None)
        _admin(url).execute(sql)


@contextmanager
def fresh_schema(url: str) -> Iterator[str]:
    """A new, empty schema on the server at ``url``; yields the URL that uses it, drops it afterwards (ending any
    connection to it a test left open, so that none accumulates over a session)."""
    schema = f"t{os.getpid()}_{secrets.token_hex(6)}"
    _run(url, f"CREATE SCHEMA {schema}")
    try:
        yield with_schema(url, schema)
    finally:
        _run(
            url,
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
            f"WHERE application_name = '{APP_PREFIX}{schema}' AND pid <> pg_backend_pid()",
        )
        _run(url, f"DROP SCHEMA IF EXISTS {schema} CASCADE")


_fresh: dict[Path, str] = {}


@contextmanager
def fresh_state(directory: Path, *, lab: bool = False) -> Iterator[str]:
    """A fresh state for a group of tests (a module's work directory) on the backend under test: the SQLite file
    ``directory/state.db``, or a new PostgreSQL schema (by the lab's address with ``lab``: for a dcctl that runs on
    the lab's hosts), dropped when the block ends. ``state_of(directory)`` names it meanwhile."""
    if not POSTGRES:
        location = str(directory / "state.db")
        _fresh[directory] = location
        try:
            yield location
        finally:
            _fresh.pop(directory, None)
        return
    with fresh_schema(require_postgres(lab)) as url:
        _fresh[directory] = url
        try:
            yield url
        finally:
            _fresh.pop(directory, None)


def state_of(directory: Path) -> str:
    """The state ``fresh_state(directory)`` made (its URL or path), for ``--state``."""
    try:
        return _fresh[directory]
    except KeyError:
        raise AssertionError(f"no fresh_state({directory}) is open") from None


def dump(location: str) -> str:
    """Every row of every table of a state, as text (what a leak check reads whatever the backend)."""
    from dcctl.state.store import TABLES, Store

    store = Store(location)
    try:
        return "\n".join(repr(row) for table in TABLES for row in store.db.execute(f"SELECT * FROM {table}").fetchall())
    finally:
        store.close()


__all__ = [
    "BACKEND",
    "BACKENDS",
    "PG_DIR",
    "POSTGRES",
    "dump",
    "fresh_schema",
    "fresh_state",
    "postgres_url",
    "require_postgres",
    "state_of",
    "with_schema",
]
