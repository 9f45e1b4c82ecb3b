"""The DR catalog with its state in PostgreSQL: the status tests of ``tests/unit/dr/test_status.py`` run again here
with this module's ``store`` fixture (SQLite runs them there), and the catalog's own reads and writes on both."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta

import pytest

from dcctl.dr import catalog
from dcctl.dr.replicate import Replicator
from dcctl.state.store import Store
from tests.unit.dr import test_status as status

pytestmark = pytest.mark.own_state("the DR catalog's tests, again with a PostgreSQL state of their own")


@pytest.fixture
def store(state: str) -> Iterator[Store]:
    s = Store(state)
    yield s
    s.close()


test_never_replicated_is_breached = status.test_never_replicated_is_breached
test_measured_rpo_is_the_age_of_the_newest_good_point = status.test_measured_rpo_is_the_age_of_the_newest_good_point
test_a_failed_disk_makes_the_whole_point_not_good = status.test_a_failed_disk_makes_the_whole_point_not_good
test_a_drill_gives_the_rto_and_the_level = status.test_a_drill_gives_the_rto_and_the_level
test_prometheus_text_format = status.test_prometheus_text_format


def test_points_chain_and_big_disks_round_trip(store: Store) -> None:
    full = catalog.add_disk_point(
        store,
        point_set="p1",
        workload="w",
        server="s",
        disk="vda",
        kind="full",
        checkpoint="c1",
        source_backend="sy-kvm",
        target_backend="dr-kvm",
        target_path="/srv/dcctl/dr/p1.qcow2",
        taken_at=(status.T0 - timedelta(minutes=30)).isoformat(),
        status="pending",
        size_bytes=6 * 2**40,  # 6 TiB: past 32 bits
    )
    incremental = catalog.add_disk_point(
        store,
        point_set="p2",
        workload="w",
        server="s",
        disk="vda",
        kind="incremental",
        parent_id=full,
        checkpoint="c2",
        source_backend="sy-kvm",
        target_backend="dr-kvm",
        target_path="/srv/dcctl/dr/p2.qcow2",
        taken_at=(status.T0 - timedelta(minutes=5)).isoformat(),
        status="pending",
    )
    assert incremental == full + 1
    catalog.mark_point(store, full, "good", verified_at=status.T0.isoformat(), checksum="sha256:ab")
    replicator = Replicator.__new__(Replicator)  # only its catalog arithmetic is under test
    replicator.store = store
    replicator._add_shipped(incremental, 1000)
    replicator._add_shipped(incremental, 24)
    catalog.mark_point(store, incremental, "good")
    disks = catalog.disk_points(store, "w")
    assert [(d.id, d.kind, d.parent_id, d.status) for d in disks] == [
        (full, "full", None, "good"),
        (incremental, "incremental", full, "good"),
    ]
    assert disks[0].size_bytes == 6 * 2**40 and disks[0].checksum == "sha256:ab"
    assert disks[1].shipped_bytes == 1024
    assert catalog.last_good_point(store, "w") is not None
    assert catalog.measured_rpo(store, "w", status.T0) == timedelta(minutes=5)
    assert [p.point_set for p in catalog.points(store, "w")] == ["p1", "p2"]


def test_drills_and_placement(store: Store) -> None:
    first = catalog.record_drill(store, "w", "drill", "p1", status.T0.isoformat(), 61.25, True, {"booted": ["a"]})
    second = catalog.record_drill(store, "w", "failover", "p1", status.T0.isoformat(), None, False, {})
    assert second == first + 1
    drills = catalog.drills(store, "w")
    assert [(d.kind, d.rto_seconds, d.ok, d.detail) for d in drills] == [
        ("drill", 61.25, True, {"booted": ["a"]}),
        ("failover", None, False, {}),
    ]
    assert catalog.best_rto(store, "w") == timedelta(seconds=61.25)
    assert catalog.active_site(store, "w") == "production"
    catalog.set_active_site(store, "w", "dr", "failover")
    catalog.set_active_site(store, "w", "production", "failback")
    assert catalog.active_site(store, "w") == "production"
