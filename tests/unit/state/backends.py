"""The two state backends for tests: a SQLite file per test, or a fresh PostgreSQL schema per test.

PostgreSQL comes from ``scripts/postgres up`` (``scripts/test`` starts it and exports ``DCCTL_TEST_POSTGRES``); each
test gets its own schema (``?options=-csearch_path=…`` in the URL), dropped afterwards, so tests never see each
other's state and the URL works unchanged in child processes and on the lab's hosts.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from tests.conftest import require_service

PG_DIR = Path("/var/lib/dcctl-pg")
BACKENDS = ("sqlite", "postgres")


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


def _reachable(url: str | None) -> bool:
    if not url:
        return False
    try:
        import psycopg

        with psycopg.connect(url, connect_timeout=5):
            return True
    except Exception:
        return False


_checked: dict[str, bool] = {}


def require_postgres(lab: bool = False) -> str:
    """The server's URL, or skip (fail in CI) saying how to start it."""
    url = postgres_url(lab)
    key = f"{lab}:{url}"
    if key not in _checked:
        _checked[key] = _reachable(url)
    require_service("PostgreSQL (the shared state's server)", _checked[key], "scripts/postgres up")
    assert url is not None
    return url


def with_schema(url: str, schema: str) -> str:
    return f"{url}{'&' if '?' in url else '?'}options=-csearch_path%3D{schema}"


@contextmanager
def fresh_schema(url: str) -> Iterator[str]:
    """A new, empty schema on the server; yields the URL that uses it, drops it afterwards."""
    import psycopg

    schema = f"t_{uuid.uuid4().hex[:16]}"
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(f"CREATE SCHEMA {schema}")
    try:
        yield with_schema(url, schema)
    finally:
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute(f"DROP SCHEMA IF EXISTS {schema} CASCADE")
