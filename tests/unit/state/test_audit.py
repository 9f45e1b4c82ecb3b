"""The audit trail: hash-chained, tamper-evident, linear under concurrent writers, pruned only within the law.

Every test runs on both backends (``state``: a SQLite file, then a PostgreSQL schema)."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from dcctl.cli import exitcodes
from dcctl.cli.app import main
from dcctl.engine.session import Session
from dcctl.errors import DcctlError
from dcctl.providers.base import PermanentError
from dcctl.state import audit
from dcctl.state.audit import GENESIS, AuditEvent, entry_hash
from dcctl.state.store import Holder, Store
from tests.conftest import ROOT
from tests.unit.engine.test_engine_testdriver import write_inventory

pytestmark = pytest.mark.own_state("each test runs on SQLite and on PostgreSQL in turn (the state fixture)")


@pytest.fixture
def store(state: str) -> Iterator[Store]:
    s = Store(state)
    yield s
    s.close()


def intrude(store: Store, sql: str) -> None:
    """Change the database as an intruder would: straight in, through a connection of its own."""
    other = Store(store.location)
    try:
        other.db.execute(sql)
    finally:
        other.close()


def fill(store: Store, n: int) -> None:
    for i in range(1, n + 1):
        audit.record(
            store,
            AuditEvent(
                "apply.create",
                f"sy-kvm:server:portal/web/{i}",
                "succeeded",
                plan_digest="p" * 16,
                after_digest=f"{i:016x}",
                detail={"run_id": 1, "n": i, "名称": "门户"},
            ),
        )


def test_entries_record_who_and_when_and_chain_from_genesis(store: Store) -> None:
    fill(store, 3)
    entries = list(audit.entries(store))
    assert [e.id for e in entries] == [1, 2, 3]
    assert entries[0].prev_hash == GENESIS
    assert [e.prev_hash for e in entries[1:]] == [e.hash for e in entries[:-1]]
    first = entries[0]
    me = Holder.me("x")
    assert (first.user, first.host, first.pid) == (me.user, me.host, os.getpid())
    assert datetime.fromisoformat(first.at).tzinfo is not None
    assert first.detail == {"run_id": 1, "n": 1, "名称": "门户"}
    result = audit.verify(store)
    assert result.ok and result.count == 3 and result.head_hash == entries[-1].hash


@pytest.mark.parametrize(
    ("column", "value"),
    [
        ("outcome", "'failed'"),
        ("target", "'sy-kvm:server:portal/web/9'"),
        ("detail", "'{\"n\":99}'"),
        ("at", "'2020-01-01T00:00:00+00:00'"),
        ("pid", "pid + 1"),
        ("after_digest", "''"),
    ],
)
def test_editing_one_entry_makes_verify_fail_naming_it(
    tmp_path: Path, store: Store, column: str, value: str, capsys: pytest.CaptureFixture[str]
) -> None:
    fill(store, 6)
    intrude(store, f'UPDATE audit SET "{column}" = {value} WHERE id = 4')
    result = audit.verify(store)
    assert not result.ok
    assert result.first_bad_id == 4
    assert result.count == 3
    assert "altered" in result.reason
    code = main(["audit", "verify", "--state", store.location, "--inventory", str(tmp_path)])
    assert code == exitcodes.ERROR
    assert "entry 4" in capsys.readouterr().err
    assert main(["audit", "verify", "--state", store.location, "--json"]) == exitcodes.ERROR
    doc = json.loads(capsys.readouterr().out)
    assert doc["audit"]["ok"] is False and doc["audit"]["first_bad_id"] == 4


def test_a_rehashed_edit_still_breaks_the_link_to_the_next_entry(store: Store) -> None:
    fill(store, 5)
    row = next(e for e in audit.entries(store) if e.id == 2).to_dict()
    row["outcome"] = "failed"
    forged = entry_hash(row)  # the intruder recomputes this entry's own hash…
    store.db.execute("UPDATE audit SET outcome = 'failed', hash = ? WHERE id = 2", (forged,))
    result = audit.verify(store)  # …and entry 3 no longer links to it
    assert (result.ok, result.first_bad_id) == (False, 3)
    assert "prev_hash" in result.reason


def test_deleting_an_entry_is_detected_at_the_next_one(store: Store) -> None:
    fill(store, 5)
    store.db.execute("DELETE FROM audit WHERE id = 3")
    result = audit.verify(store)
    assert (result.ok, result.first_bad_id) == (False, 4)


def test_eight_threads_appending_at_once_keep_the_chain_linear(state: str) -> None:
    path = state
    shared = Store(path)
    per_thread, threads = 40, 8
    barrier = threading.Barrier(threads)
    errors: list[BaseException] = []

    def writer(n: int) -> None:
        # half the threads share one Store (one connection), half open their own (separate connections)
        store = shared if n % 2 else Store(path)
        try:
            barrier.wait()
            for i in range(per_thread):
                audit.record(store, AuditEvent("dr.replicate", f"w{n}", "succeeded", detail={"i": i}))
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)
        finally:
            if store is not shared:
                store.close()

    pool = [threading.Thread(target=writer, args=(n,)) for n in range(threads)]
    for t in pool:
        t.start()
    for t in pool:
        t.join()
    assert not errors
    result = audit.verify(shared)
    assert result.ok, result
    assert result.count == audit.count(shared) == per_thread * threads
    ids = [e.id for e in audit.entries(shared)]
    assert ids == list(range(1, per_thread * threads + 1))
    shared.close()


def test_processes_appending_at_once_keep_the_chain_linear(state: str) -> None:
    path = state
    Store(path).close()
    code = (
        "import sys\n"
        "from dcctl.state.store import Store\n"
        "from dcctl.state import audit\n"
        "s = Store(sys.argv[1])\n"
        "for i in range(25):\n"
        "    audit.record(s, audit.AuditEvent('apply.update', 'p' + sys.argv[2], 'succeeded'))\n"
    )
    procs = [
        subprocess.Popen([sys.executable, "-c", code, str(path), str(n)], cwd=ROOT, env={**os.environ})
        for n in range(4)
    ]
    assert [p.wait(timeout=120) for p in procs] == [0, 0, 0, 0]
    store = Store(path)
    result = audit.verify(store)
    assert result.ok and result.count == 100
    assert len({e.pid for e in audit.entries(store)}) == 4
    store.close()


def test_prune_below_the_legal_minimum_is_refused(store: Store) -> None:
    fill(store, 3)
    with pytest.raises(DcctlError, match="184 days"):
        audit.prune(store, 183)
    assert audit.count(store) == 3


def test_prune_keeps_the_chain_verifiable_with_an_anchor(store: Store) -> None:
    fill(store, 4)
    later = datetime.now(UTC) + timedelta(days=184, hours=1)
    # nothing is old enough today
    assert audit.prune(store, 184) == 0
    third = next(e for e in audit.entries(store) if e.id == 4)
    removed = audit.prune(store, 184, now=later)
    assert removed == 4
    left = list(audit.entries(store))
    assert [(e.id, e.action) for e in left] == [(5, "audit.prune")]
    assert left[0].prev_hash == third.hash
    assert left[0].detail["removed"] == 4
    result = audit.verify(store)
    assert result.ok and result.count == 1
    assert result.anchor is not None and (result.anchor.id, result.anchor.hash) == (4, third.hash)
    fill(store, 2)
    assert audit.verify(store).ok
    # an anchor forged to hide a rewritten first entry is caught
    store.db.execute("UPDATE meta SET value = ? WHERE key = 'audit_anchor'", (json.dumps({"id": 4, "hash": "0" * 64}),))
    assert audit.verify(store).first_bad_id == 5


def test_prune_refuses_a_broken_chain(store: Store) -> None:
    fill(store, 3)
    store.db.execute("UPDATE audit SET target = 'x' WHERE id = 1")
    with pytest.raises(DcctlError, match="does not verify at entry 1"):
        audit.prune(store, 184, now=datetime.now(UTC) + timedelta(days=400))


def test_prune_command_takes_retention_from_the_inventory(
    tmp_path: Path, state: str, capsys: pytest.CaptureFixture[str]
) -> None:
    inv = tmp_path / "inv"
    inv.mkdir()
    text = (ROOT / "inventories" / "lab" / "province.yaml").read_text(encoding="utf-8")
    (inv / "province.yaml").write_text(text.replace("retention_days: 184", "retention_days: 90"), encoding="utf-8")
    assert main(["audit", "prune", "--inventory", str(inv), "--state", state]) == exitcodes.ERROR
    assert "184" in capsys.readouterr().err
    (inv / "province.yaml").write_text(text, encoding="utf-8")
    assert main(["audit", "prune", "--inventory", str(inv), "--state", state]) == exitcodes.OK
    assert "pruned 0 audit entries older than 184 days" in capsys.readouterr().out


def test_export_writes_json_lines_an_auditor_can_verify_offline(store: Store, tmp_path: Path) -> None:
    fill(store, 4)
    buf = io.StringIO()
    assert audit.export(store, buf) == 4
    lines = [json.loads(line) for line in buf.getvalue().splitlines()]
    prev = GENESIS
    for line in lines:  # the whole check, from the export alone
        assert line["prev_hash"] == prev
        assert entry_hash(line) == line["hash"]
        prev = line["hash"]
    out = tmp_path / "audit.jsonl"
    assert main(["audit", "export", "--state", store.location, "--out", str(out)]) == exitcodes.OK
    assert out.read_text(encoding="utf-8") == buf.getvalue()


def test_detail_never_keeps_values_under_secret_like_keys(store: Store) -> None:
    audit.record(
        store, AuditEvent("hosts.prepare", "h1", "succeeded", detail={"password": "hunter2", "x": {"token": 1}})
    )
    entry = next(audit.entries(store))
    assert entry.detail == {"password": "[redacted]", "x": {"token": "[redacted]"}}
    if store.dialect == "sqlite":
        assert "hunter2" not in Path(store.location).read_bytes().decode("utf-8", "replace")
    else:
        assert "hunter2" not in repr(store.db.execute("SELECT * FROM audit").fetchall())


def test_an_unknown_outcome_is_refused(store: Store) -> None:
    with pytest.raises(ValueError, match="outcome"):
        audit.record(store, AuditEvent("apply.create", "x", "maybe"))


# ----------------------------------------------------------------------------------------------- engine hooks
def test_apply_records_one_entry_per_step_with_its_digests(tmp_path: Path, state: str) -> None:
    with Session(write_inventory(tmp_path), state_path=state) as s:
        plan = s.plan()
        result = s.apply(plan)
        assert result.ok
        entries = list(audit.entries(s.store))
        run_digest = s.store.db.execute("SELECT plan_digest FROM runs WHERE id = ?", (result.run_id,)).fetchone()[0]
    assert len(entries) == len(plan.pending) == 8
    assert {e.action for e in entries} == {"apply.create"}
    assert {e.outcome for e in entries} == {"succeeded"}
    assert {e.plan_digest for e in entries} == {run_digest}
    assert {e.target for e in entries} == {c.id for c in plan.pending}
    assert all(e.after_digest and not e.before_digest for e in entries)  # nothing observed before a create
    assert all(e.detail["run_id"] == result.run_id for e in entries)


def test_a_failed_step_is_audited_as_failed(tmp_path: Path, state: str, monkeypatch: pytest.MonkeyPatch) -> None:
    with Session(write_inventory(tmp_path), state_path=state) as s:
        provider = s.providers()["sy-kvm1"]
        real = provider.apply

        def refuse(desired: object, *args: object, **kwargs: object) -> object:
            if getattr(desired, "kind", "") == "server":
                raise PermanentError("no room for you")
            return real(desired, *args, **kwargs)  # type: ignore[arg-type]

        monkeypatch.setattr(provider, "apply", refuse)
        assert not s.apply(s.plan()).ok
        failed = [e for e in audit.entries(s.store) if e.outcome == "failed"]
        assert {e.target for e in failed} == {"sy-kvm1:server:portal/web/1", "sy-kvm1:server:portal/web/2"}
        assert all(e.detail["error"] == "no room for you" for e in failed)
        assert audit.verify(s.store).ok


def test_updates_carry_the_observed_state_digest_before(tmp_path: Path, state: str) -> None:
    inv = write_inventory(tmp_path)
    with Session(inv, state_path=state) as s:
        s.apply(s.plan())
        write_inventory(tmp_path, ram_mb=512)
        with Session(inv, state_path=state) as s2:
            s2._providers = s.providers()
            assert s2.apply(s2.plan()).ok
            updates = [e for e in audit.entries(s2.store) if e.action == "apply.update"]
            s2._providers = None
    assert len(updates) == 2
    assert all(e.before_digest and e.after_digest and e.before_digest != e.after_digest for e in updates)


def test_lock_takeover_and_lock_break_are_audited(tmp_path: Path, state: str) -> None:
    dead = Holder("bob", Holder.me("x").host, 2**22 + 17, "apply", "2026-11-26T10:00:00+00:00")
    with Session(write_inventory(tmp_path), state_path=state) as s:
        s.store.lock(["sy-kvm1"], dead, None)
        assert s.apply(s.plan()).ok
        s.store.lock(["dr-kvm"], dead, None)
    assert main(["lock", "break", "dr-kvm", "--state", state]) == exitcodes.OK
    store = Store(state)
    by_action = {e.action: e for e in audit.entries(store)}
    assert by_action["lock.takeover"].target == "sy-kvm1"
    assert "bob@" in by_action["lock.takeover"].detail["previous_holder"]
    assert by_action["lock.break"].target == "dr-kvm"
    assert audit.verify(store).ok
    store.close()
