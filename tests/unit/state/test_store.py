"""The state store on both backends: runs, journal, resources, locks (all-or-nothing, holders named, machines told
apart), schema migrations (upgrade in place, refuse newer), and the portable-SQL helpers."""

from __future__ import annotations

import re
import sqlite3
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from dcctl.cli import exitcodes
from dcctl.cli.app import main
from dcctl.errors import DcctlError
from dcctl.state import local_dir, migrations, open_store, state_location
from dcctl.state.postgres import pyformat, redact
from dcctl.state.store import SCHEMA_VERSION, TABLES, Holder, StateError, StateLockedError, Store
from tests.unit.state.backends import fresh_schema, require_postgres

pytestmark = pytest.mark.own_state("each test runs on SQLite and on PostgreSQL in turn (the state fixture)")

ME = Holder.me("apply")


@pytest.fixture
def store(state: str) -> Iterator[Store]:
    s = Store(state)
    yield s
    s.close()


def other(pid: int, host: str = ME.host, command: str = "apply") -> Holder:
    return Holder("alice", host, pid, command, "2026-11-26T10:00:00+00:00")


# ------------------------------------------------------------------------------------------------ the interface
def test_the_location_picks_the_backend(tmp_path: Path, state: str) -> None:
    store = Store(state)
    try:
        assert store.dialect == ("postgres" if state.startswith("postgresql://") else "sqlite")
        assert type(store).__name__ == {"sqlite": "SqliteStore", "postgres": "PostgresStore"}[store.dialect]
        assert store.schema_version() == SCHEMA_VERSION == migrations.latest()
    finally:
        store.close()


def test_runs_and_journal_round_trip(store: Store) -> None:
    first = store.start_run("apply", "inv", "d1", ME)
    second = store.start_run("destroy", "inv", None, ME)
    assert second == first + 1
    store.journal(first, "b", "k1", "server", "n1", "create", "started")
    store.journal(first, "b", "k1", "server", "n1", "create", "failed", "boom")
    store.finish_run(first, "failed")
    assert store.journal_of(first) == [("k1", "create", "started", ""), ("k1", "create", "failed", "boom")]
    last = store.last_run()
    assert last is not None
    assert (last["id"], last["command"], last["status"], last["user"], last["host"]) == (
        second,
        "destroy",
        "running",
        ME.user,
        ME.host,
    )


def test_applied_resources_upsert_and_forget(store: Store) -> None:
    run = store.start_run("apply", "inv", None, ME)
    store.record_many(run, [("b1", "k1", "server", "n1", "d1"), ("b2", "k2", "network", "n2", "d2")])
    store.record_applied(run, "b1", "k1", "server", "n1", "d1-new")
    applied = store.applied()
    assert {k: r.digest for k, r in applied.items()} == {("b1", "k1"): "d1-new", ("b2", "k2"): "d2"}
    assert set(store.applied(["b2"])) == {("b2", "k2")}
    store.forget("b1", "k1")
    assert set(store.applied()) == {("b2", "k2")}


def test_a_failed_transaction_leaves_nothing(store: Store) -> None:
    with pytest.raises(RuntimeError), store.transaction() as db:
        db.execute("INSERT INTO meta(key, value) VALUES ('x', 'y')")
        raise RuntimeError("boom")
    assert store.meta("x") is None
    with store.transaction() as db:  # and the store still works
        db.execute("INSERT INTO meta(key, value) VALUES ('x', 'z')")
    assert store.meta("x") == "z"


def test_a_nested_transaction_joins_the_outer_one(store: Store) -> None:
    with pytest.raises(RuntimeError), store.transaction(serialize="audit"):
        store.set_meta("inner", "1")  # opens (joins) a transaction of its own
        raise RuntimeError("the outer one fails")
    assert store.meta("inner") is None


def test_insert_returns_the_generated_id(store: Store) -> None:
    with store.transaction() as db:
        ids = [
            db.insert(
                "INSERT INTO dr_drills(workload, kind, point_set, started_at) VALUES (?, ?, ?, ?)",
                ("w", "drill", "p", t),
            )
            for t in ("a", "b")
        ]
    assert ids[1] == ids[0] + 1


def test_info_tells_backend_version_counts_and_locks(store: Store) -> None:
    store.lock(["b1"], ME, None)
    found = store.info()
    assert (found.backend, found.schema_version, found.latest_version) == (
        store.dialect,
        SCHEMA_VERSION,
        SCHEMA_VERSION,
    )
    assert found.counts["locks"] == 1 and found.counts["audit"] == 0
    assert set(found.counts) == set(TABLES) - {"meta"}
    assert found.to_dict()["locks"]["b1"]["pid"] == ME.pid


# ---------------------------------------------------------------------------------------------------------- locks
def test_locks_are_all_or_nothing_and_name_the_holder(store: Store) -> None:
    store.lock(["a", "b"], ME, 7)
    with pytest.raises(StateLockedError) as caught:
        store.lock(["b", "c"], other(ME.pid + 1), None)
    assert f"backend 'b' is locked by {ME.user}@{ME.host} pid {ME.pid}" in caught.value.message
    assert "holder running" in caught.value.message
    assert set(store.locks()) == {"a", "b"}  # c was not taken
    assert store.locks()["a"].run_id == 7
    store.lock(["a", "b", "d"], ME, 7)  # the holder itself may widen its locks
    store.unlock(["a", "b", "d"], other(ME.pid + 1))  # someone else's unlock takes nothing
    assert set(store.locks()) == {"a", "b", "d"}
    store.unlock(["a", "b", "d"], ME)
    assert store.locks() == {}


def test_a_holder_on_another_machine_is_never_judged_dead(store: Store) -> None:
    remote = other(4242, host="ci-runner-7", command="apply")
    store.lock(["sy-kvm"], remote, None)
    with pytest.raises(StateLockedError) as caught:
        store.lock(["sy-kvm"], ME, None)
    assert "alice@ci-runner-7 pid 4242" in caught.value.message and "on another machine" in caught.value.message
    assert "lock break sy-kvm' on ci-runner-7" in (caught.value.hint or "")
    with pytest.raises(DcctlError) as refused:
        store.break_lock("sy-kvm")
    assert "on ci-runner-7" in (refused.value.hint or "") and "--force" in (refused.value.hint or "")
    assert store.break_lock("sy-kvm", force=True).host == "ci-runner-7"
    assert store.locks() == {}


def test_a_dead_holder_of_this_machine_can_be_broken(store: Store) -> None:
    store.lock(["b"], other(2**22 + 11), None)
    with pytest.raises(StateLockedError) as caught:
        store.lock(["b"], ME, None)
    assert "holder gone" in caught.value.message and "dcctl lock break b" in (caught.value.hint or "")
    assert store.break_lock("b").pid == 2**22 + 11
    with pytest.raises(DcctlError, match="not locked"):
        store.break_lock("b")


def test_of_many_runs_racing_for_the_same_backends_exactly_one_wins(state: str) -> None:
    runs = 8
    barrier = threading.Barrier(runs)
    won: list[int] = []
    refused: list[str] = []

    def race(n: int) -> None:
        store = Store(state)  # a connection each, as separate machines would have
        try:
            barrier.wait()
            store.lock(["x", f"own-{n}", "y"], other(10_000 + n), None)
            won.append(n)
        except StateLockedError as exc:
            refused.append(exc.message)
        finally:
            store.close()

    threads = [threading.Thread(target=race, args=(n,)) for n in range(runs)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(won) == 1 and len(refused) == runs - 1
    store = Store(state)
    held = store.locks()
    store.close()
    assert set(held) == {"x", "y", f"own-{won[0]}"}
    assert {h.pid for h in held.values()} == {10_000 + won[0]}


def test_a_migrated_state_refuses_new_locks(store: Store) -> None:
    store.set_meta("migrated_to", "postgresql://dcctl@db/dcctl")
    with pytest.raises(StateLockedError, match="moved to postgresql://dcctl@db/dcctl") as caught:
        store.lock(["b"], ME, None)
    assert "--state postgresql://dcctl@db/dcctl" in (caught.value.hint or "")


# ----------------------------------------------------------------------------------------------------- migrations
def _columns(store: Store, table: str) -> list[str]:
    if store.dialect == "sqlite":
        return [r[1] for r in store.db.execute(f"PRAGMA table_info({table})")]
    return [
        r[0]
        for r in store.db.execute(
            "SELECT column_name FROM information_schema.columns WHERE table_schema = current_schema() "
            "AND table_name = ? ORDER BY ordinal_position",
            (table,),
        )
    ]


def test_both_dialects_make_the_same_tables_and_columns(store: Store) -> None:
    for table, columns in TABLES.items():
        assert _columns(store, table) == list(columns), table


def _version_1(state: str) -> None:
    """Make the state as a dcctl of schema version 1 left it."""
    dialect = "postgres" if state.startswith("postgresql://") else "sqlite"
    if dialect == "sqlite":
        db = sqlite3.connect(state)
        db.executescript(migrations.migrations("sqlite")[0].sql)
        db.execute("INSERT INTO meta(key, value) VALUES ('schema_version', '1')")
        db.execute(
            "INSERT INTO runs(command, inventory, user, host, pid, started_at, status) "
            "VALUES ('apply', 'inv', 'bob', 'h', 1, 't', 'succeeded')"
        )
        db.commit()
        db.close()
        return
    import psycopg

    with psycopg.connect(state, autocommit=True) as conn:
        conn.execute(migrations.migrations("postgres")[0].sql)  # type: ignore[call-overload]
        conn.execute("INSERT INTO meta(key, value) VALUES ('schema_version', '1')")
        conn.execute(
            'INSERT INTO runs(command, inventory, "user", host, pid, started_at, status) '
            "VALUES ('apply', 'inv', 'bob', 'h', 1, 't', 'succeeded')"
        )


def _indexes(store: Store) -> set[str]:
    if store.dialect == "sqlite":
        return {r[0] for r in store.db.execute("SELECT name FROM sqlite_master WHERE type = 'index'")}
    return {r[0] for r in store.db.execute("SELECT indexname FROM pg_indexes WHERE schemaname = current_schema()")}


def test_an_older_schema_is_upgraded_in_place(state: str) -> None:
    _version_1(state)
    store = Store(state)
    try:
        assert store.schema_version() == SCHEMA_VERSION == 2
        assert {"journal_run", "audit_at", "dr_drills_workload"} <= _indexes(store)
        last = store.last_run()
        assert last is not None and last["user"] == "bob"  # the data stayed
        assert store.start_run("apply", "inv", None, ME) == 2
    finally:
        store.close()
    Store(state).close()  # opening an up-to-date state changes nothing


def test_a_newer_schema_is_refused(store: Store) -> None:
    store.set_meta("schema_version", str(SCHEMA_VERSION + 1))
    with pytest.raises(StateError, match=f"schema version {SCHEMA_VERSION + 1}, newer than this dcctl knows") as caught:
        Store(store.location)
    assert "upgrade dcctl" in (caught.value.hint or "")


def test_two_stores_opening_a_fresh_state_at_once_migrate_it_once(state: str) -> None:
    errors: list[BaseException] = []
    barrier = threading.Barrier(4)

    def open_it() -> None:
        try:
            barrier.wait()
            Store(state).close()
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=open_it) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    store = Store(state)
    assert store.schema_version() == SCHEMA_VERSION
    store.close()


def test_migration_files_split_into_statements() -> None:
    first = migrations.migrations("sqlite")[0]
    statements = first.statements()
    assert all(";" not in s and "--" not in s for s in statements)
    assert sum(s.startswith("CREATE TABLE") for s in statements) == len(TABLES)
    assert [m.version for m in migrations.migrations("postgres")] == list(range(1, SCHEMA_VERSION + 1))
    with pytest.raises(ValueError, match="unknown state dialect"):
        migrations.migrations("oracle")


# ----------------------------------------------------------------------------------------------- portable SQL
def test_placeholders_become_psycopg_ones_outside_quotes() -> None:
    assert pyformat("SELECT ? FROM t WHERE a = ? AND b LIKE '%?' AND \"c?\" = ?") == (
        "SELECT %s FROM t WHERE a = %s AND b LIKE '%%?' AND \"c?\" = %s"
    )


def test_urls_are_shown_without_their_password() -> None:
    assert redact("postgresql://dcctl:s3cret@db.example:5433/dcctl?sslmode=require") == (
        "postgresql://dcctl:***@db.example:5433/dcctl?sslmode=require"
    )
    assert redact("postgresql://dcctl@db/dcctl?passfile=/root/.pgpass") == (
        "postgresql://dcctl@db/dcctl?passfile=/root/.pgpass"
    )


def test_a_url_of_another_database_is_refused() -> None:
    with pytest.raises(StateError, match="unsupported state URL scheme 'mysql://'"):
        Store("mysql://dcctl@db/dcctl")


def test_an_unreachable_server_is_a_clear_error() -> None:
    with pytest.raises(
        StateError, match=re.escape("cannot open the state database postgresql://dcctl:***@127.0.0.1:1/x")
    ):
        Store("postgresql://dcctl:pw@127.0.0.1:1/x?connect_timeout=2")


def test_the_state_location_comes_from_option_environment_or_inventory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("DCCTL_STATE", raising=False)
    assert state_location(tmp_path) == tmp_path / ".dcctl" / "state.db"
    assert local_dir(tmp_path) == tmp_path.resolve() / ".dcctl"
    url = "postgresql://dcctl@db.example/dcctl"
    monkeypatch.setenv("DCCTL_STATE", url)
    assert state_location(tmp_path) == url  # a URL stays a string (a Path would eat one of its slashes)
    assert local_dir(tmp_path) == tmp_path.resolve() / ".dcctl"
    assert state_location(tmp_path, tmp_path / "x.db") == tmp_path / "x.db"
    assert local_dir(tmp_path, str(tmp_path / "s" / "x.db")) == tmp_path.resolve() / "s"
    monkeypatch.setenv("DCCTL_STATE", str(tmp_path / "env.db"))
    assert open_store(tmp_path).location == str(tmp_path / "env.db")


# ------------------------------------------------------------------------------------------------------ the CLI
def test_state_info_command(state: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["state", "info", "--state", state]) == exitcodes.OK
    out = capsys.readouterr().out
    assert f"schema:   version {SCHEMA_VERSION}" in out
    assert ("backend:  postgres" if state.startswith("postgresql://") else "backend:  sqlite") in out
    assert main(["state", "info", "--state", state, "--json"]) == exitcodes.OK
    assert '"schema_version": 2' in capsys.readouterr().out


def test_lock_commands_take_a_url(capsys: pytest.CaptureFixture[str]) -> None:
    with fresh_schema(require_postgres()) as url:
        store = Store(url)
        store.lock(["sy-kvm"], other(4243, host="elsewhere"), None)
        store.close()
        assert main(["lock", "list", "--state", url]) == exitcodes.OK
        assert "sy-kvm: alice@elsewhere pid 4243" in capsys.readouterr().out
        assert main(["lock", "break", "sy-kvm", "--state", url]) == exitcodes.ERROR
        assert "dcctl cannot tell from here" in capsys.readouterr().err
        assert main(["lock", "break", "sy-kvm", "--state", url, "--force"]) == exitcodes.OK


def test_the_reports_change_history_reads_runs_on_both_backends(store: Store) -> None:
    from dcctl.report.facts import _runs

    store.start_run("apply", "inv", "d1", other(99, host="ci-runner-7"))
    [run] = _runs(store)
    assert (run["user"], run["host"], run["plan_digest"]) == ("alice", "ci-runner-7", "d1")  # not the database's user
