"""The two state backends for the state tests: a SQLite file per test, or a fresh PostgreSQL schema per test.

These tests choose their backends themselves (each runs on both in every pass, whatever ``DCCTL_TEST_STATE`` says);
the server and its schemas come from ``tests/states.py``: ``scripts/postgres up`` (``scripts/test`` starts it and
exports ``DCCTL_TEST_POSTGRES``), one schema per test (``?options=-csearch_path=…`` in the URL), dropped afterwards,
so tests never see each other's state and the URL works unchanged in child processes and on the lab's hosts.
"""

from __future__ import annotations

from tests.states import PG_DIR, fresh_schema, postgres_url, require_postgres, with_schema

BACKENDS = ("sqlite", "postgres")

__all__ = ["BACKENDS", "PG_DIR", "fresh_schema", "postgres_url", "require_postgres", "with_schema"]
