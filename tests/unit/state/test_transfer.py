"""``dcctl state migrate``: a SQLite state moves to PostgreSQL (or any empty state) row for row; runs, journal,
resources, the DR catalog and the audit chain (ids, hashes, the pruning anchor) arrive as they were and verify."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from dcctl.cli import exitcodes
from dcctl.cli.app import main
from dcctl.dr import catalog
from dcctl.engine.session import Session
from dcctl.errors import DcctlError
from dcctl.state import audit
from dcctl.state.store import TABLES, Holder, StateLockedError, Store
from dcctl.state.transfer import migrate_state
from tests.unit.engine.test_engine_testdriver import write_inventory

pytestmark = pytest.mark.own_state("moving a SQLite state to PostgreSQL: both backends, chosen by each test")


def populate(tmp_path: Path, location: str) -> None:
    """A state with everything in it: two runs of a real apply, the DR catalog, a pruned and extended audit chain."""
    inv = write_inventory(tmp_path)
    with Session(inv, state_path=location) as s:
        assert s.apply(s.plan()).ok
        s.store.lock(["dr-kvm"], Holder.me("apply"), None)
        s.store.unlock(["dr-kvm"], Holder.me("apply"))
    store = Store(location)
    try:
        later = datetime.now(UTC) + timedelta(days=200)
        assert audit.prune(store, 184, now=later) == 8  # leaves an anchor in meta
        for n, (ps, kind) in enumerate((("p1", "full"), ("p2", "incremental")), start=1):
            catalog.add_disk_point(
                store,
                point_set=ps,
                workload="portal",
                server="dcctl-portal-web-1",
                disk="vda",
                kind=kind,
                parent_id=None if kind == "full" else n - 1,
                checkpoint=f"dcctl-{ps}",
                source_backend="sy-kvm1",
                target_backend="dr-kvm",
                target_path=f"/srv/dcctl/dr/{ps}.qcow2",
                taken_at=f"2026-11-26T12:0{n}:00+00:00",
                status="good",
                size_bytes=3 * 2**40,
                shipped_bytes=n * 1000,
                checksum=f"sha256:{n}",
            )
            audit.record(store, audit.AuditEvent("dr.replicate", "portal", "succeeded", detail={"point_set": ps}))
        catalog.record_drill(store, "portal", "drill", "p2", "2026-11-26T12:10:00+00:00", 48.5, True, {"x": 1})
        catalog.set_active_site(store, "portal", "production", "")
    finally:
        store.close()


def dump(store: Store) -> dict[str, list[tuple[object, ...]]]:
    out = {}
    for table, columns in TABLES.items():
        cols = ", ".join(f'"{c}"' for c in columns)
        out[table] = [
            tuple(r)
            for r in store.db.execute(f"SELECT {cols} FROM {table} ORDER BY {columns[0]}")
            if table != "meta" or r[0] not in ("schema_version", "migrated_to")
        ]
    return out


@pytest.fixture
def source(tmp_path: Path) -> Iterator[str]:
    location = str(tmp_path / "old" / "state.db")
    populate(tmp_path, location)
    yield location


def test_migrate_moves_everything_and_the_chain_still_verifies(
    source: str, state: str, capsys: pytest.CaptureFixture[str]
) -> None:
    old = Store(source)
    before = dump(old)
    chain = audit.verify(old)
    old.close()
    assert chain.ok and chain.anchor is not None and before["runs"] and before["dr_points"] and before["journal"]

    assert main(["state", "migrate", "--from", source, "--to", state]) == exitcodes.OK
    out = capsys.readouterr().out
    assert f"audit chain: {chain.count} entries, head {chain.head_hash} (verified at both places)" in out
    assert "runs 1, journal 16, resources 8" in out

    new = Store(state)
    try:
        after = dump(new)
        moved = after.pop("audit")
        assert moved[:-1] == before.pop("audit")  # ids, hashes, every field
        assert moved[-1][5] == "state.migrate"  # the move itself, chained after them
        assert after == before  # runs, journal, resources, DR catalog, the anchor in meta
        result = audit.verify(new)
        assert result.ok and result.count == chain.count + 1
        assert result.anchor == chain.anchor
        # generated ids go on after the copied ones
        assert new.start_run("apply", "inv", None, Holder.me("apply")) == before["runs"][-1][0] + 1
        assert catalog.record_drill(new, "portal", "drill", "p2", "t", 1.0, True, {}) == before["dr_drills"][-1][0] + 1
    finally:
        new.close()
    assert main(["audit", "verify", "--state", state]) == exitcodes.OK
    capsys.readouterr()

    # the old place is marked: applies against it are refused, naming the new place, and it cannot move twice
    old = Store(source)
    try:
        with pytest.raises(StateLockedError, match="moved to"):
            old.lock(["sy-kvm1"], Holder.me("apply"), None)
        assert old.info().migrated_to is not None
    finally:
        old.close()
    assert main(["state", "migrate", "--from", source, "--to", state]) == exitcodes.ERROR
    assert "already moved" in capsys.readouterr().err


def test_migrate_is_refused_while_a_lock_is_held(source: str, state: str) -> None:
    old = Store(source)
    new = Store(state)
    try:
        old.lock(["sy-kvm1"], Holder("bob", "ci-runner-2", 77, "apply", "t"), None)
        with pytest.raises(DcctlError, match="locks are held: backend 'sy-kvm1' is locked by bob@ci-runner-2 pid 77"):
            migrate_state(old, new)
        assert set(new.counts().values()) == {0}  # nothing was written
        assert old.meta("migrated_to") is None
    finally:
        old.close()
        new.close()


def test_migrate_refuses_a_target_that_holds_a_state(source: str, state: str, tmp_path: Path) -> None:
    new = Store(state)
    new.start_run("apply", "inv", None, Holder.me("apply"))
    old = Store(source)
    try:
        with pytest.raises(DcctlError, match="already holds a state \\(1 runs\\): refusing to merge"):
            migrate_state(old, new)
        assert new.counts()["audit"] == 0
    finally:
        old.close()
        new.close()


def test_migrate_json_and_a_missing_source(tmp_path: Path, pg_state: str, capsys: pytest.CaptureFixture[str]) -> None:
    missing = tmp_path / "nothing.db"
    assert main(["state", "migrate", "--from", str(missing), "--to", pg_state]) == exitcodes.ERROR
    assert f"no state to migrate at {missing}" in capsys.readouterr().err
    assert not missing.exists()
    populate(tmp_path, str(tmp_path / "s.db"))
    assert main(["state", "migrate", "--from", str(tmp_path / "s.db"), "--to", pg_state, "--json"]) == exitcodes.OK
    doc = json.loads(capsys.readouterr().out)["migrated"]
    assert doc["audit"]["ok"] is True and doc["rows"]["dr_points"] == 2 and doc["target"] == pg_state
