"""Consolidation progress per legacy data center, from the inventory and the audit trail (what reports show)."""

from __future__ import annotations

from pathlib import Path

from dcctl.consolidate import LegacyProgress, progress
from dcctl.consolidate.plan import Assumptions
from dcctl.consolidate.progress import ACTION, measured_assumptions
from dcctl.state import audit
from dcctl.state.store import Store
from tests.unit.consolidate.conftest import load, workload, write_province


def moved(store: Store, wid: str, *, ok: bool = True, **more: object) -> None:
    detail = {"legacy_dc": "faku-legacy-dc", "workload": wid, "tenancy": "faku-ext", "method": "cold", **more}
    audit.record(store, audit.AuditEvent(ACTION, wid, "succeeded" if ok else "failed", detail=detail))


def test_progress_counts_moved_against_remaining(tmp_path: Path, state_url: str) -> None:
    two = [workload("web", ["app"], count=2), workload("db", ["db"])]
    inv = load(write_province(tmp_path / "inv", legacy_workloads=two))
    store = Store(state_url)
    try:
        [before] = progress(inv, store)
        assert isinstance(before, LegacyProgress)
        assert (before.workloads_total, before.percent, before.servers_remaining) == (2, 0.0, 3)
        moved(store, "db", ok=False, rolled_back=True)
        moved(store, "db", downtime_seconds=12.5, servers=["dcctl-db-app-1"], target_backends=["sy-kvm"])
        [during] = progress(inv, store)
        assert [m.workload for m in during.moved] == ["db"] and during.workloads_remaining == ("web",)
        assert (during.percent, during.failed_attempts, during.servers_remaining, during.done) == (50.0, 1, 2, False)
        assert during.moved[0].downtime_seconds == 12.5 and during.moved[0].servers == 1
        doc = during.to_dict()
        assert (
            doc["workloads_moved"] == 1 and doc["workloads_total"] == 2 and doc["tenancies_remaining"] == ["faku-ext"]
        )
    finally:
        store.close()


def test_measured_moves_calibrate_the_downtime_model(state_url: str) -> None:
    store = Store(state_url)
    try:
        assert measured_assumptions(store) == Assumptions()
        for rate, boot in ((40.0, 8.0), (60.0, 10.0), (50.0, 30.0)):
            moved(store, "w", copy_mib_s=rate, boot_seconds=boot)
        moved(store, "w", ok=False, copy_mib_s=1.0, boot_seconds=500.0)  # a failed move teaches nothing
        a = measured_assumptions(store)
        assert (a.bandwidth_mib_s, a.boot_seconds) == (50.0, 10.0)
        assert a.basis.startswith("measured: 3 copies, 3 boots")
    finally:
        store.close()
