"""Fixtures: ``state`` is a state location on each backend in turn (SQLite file, PostgreSQL schema)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.unit.state.backends import BACKENDS, fresh_schema, require_postgres


@pytest.fixture
def pg_state() -> Iterator[str]:
    """A fresh PostgreSQL state URL (its own schema)."""
    with fresh_schema(require_postgres()) as url:
        yield url


@pytest.fixture(params=BACKENDS)
def state(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """Where a test's state lives: a SQLite file, then a PostgreSQL URL."""
    if request.param == "sqlite":
        return str(tmp_path / "state.db")
    url: str = request.getfixturevalue("pg_state")
    return url
