"""DR status from the catalog: measured RPO against the target, chains, the GB/T 20988 level achieved, Prometheus."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest

from dcctl import api
from dcctl.dr import catalog
from dcctl.dr.ssh import SshTarget
from dcctl.dr.status import dr_status, prometheus
from dcctl.state.store import Store
from tests.conftest import ROOT

T0 = datetime(2026, 11, 26, 12, 0, tzinfo=UTC)


@pytest.fixture
def store(state_url: str) -> Iterator[Store]:
    s = Store(state_url)
    yield s
    s.close()


def point(
    store: Store,
    point_set: str,
    at: datetime,
    *,
    kind: str = "incremental",
    status: str = "good",
    disks: tuple[str, ...] = ("vda", "vdb"),
    shipped: int = 1000,
) -> None:
    for disk in disks:
        for server in ("dcctl-kangping-portal-web-1", "dcctl-kangping-portal-web-2"):
            catalog.add_disk_point(
                store,
                point_set=point_set,
                workload="kangping-portal",
                server=server,
                disk=disk,
                kind=kind,
                checkpoint=f"dcctl-{point_set}",
                source_backend="sy-kvm",
                target_backend="dr-kvm",
                target_path=f"/srv/dcctl/dr/{point_set}.qcow2",
                taken_at=at.isoformat(),
                status=status,
                changed_bytes=shipped,
                shipped_bytes=shipped,
            )


def lab_inventory():  # type: ignore[no-untyped-def]
    return api.validate(ROOT / "inventories" / "lab").inventory


def test_never_replicated_is_breached(store: Store) -> None:
    [row] = dr_status(lab_inventory(), store, T0)
    assert row.workload == "kangping-portal"
    assert row.breached and row.rpo_measured is None and row.level_achieved == 0


def test_measured_rpo_is_the_age_of_the_newest_good_point(store: Store) -> None:
    point(store, "p1", T0 - timedelta(minutes=40), kind="full")
    point(store, "p2", T0 - timedelta(minutes=10))
    point(store, "p3", T0 - timedelta(minutes=1), status="pending")  # not verified yet: does not count
    [row] = dr_status(lab_inventory(), store, T0)
    assert row.rpo_measured == timedelta(minutes=10)
    assert not row.breached  # target 15m
    assert row.chain_length == 2 and row.points_good == 2
    assert row.level_achieved == 3  # RPO within 1 day, but levels 4-6 bound the RTO: without a drill, 3


def test_a_failed_disk_makes_the_whole_point_not_good(store: Store) -> None:
    point(store, "p1", T0 - timedelta(minutes=40), kind="full")
    point(store, "p2", T0 - timedelta(minutes=5))
    catalog.mark_point(store, catalog.disk_points(store, "kangping-portal")[-1].id, "failed")
    [row] = dr_status(lab_inventory(), store, T0)
    assert row.rpo_measured == timedelta(minutes=40)
    assert row.breached


def test_a_drill_gives_the_rto_and_the_level(store: Store) -> None:
    point(store, "p1", T0 - timedelta(minutes=5), kind="full")
    catalog.record_drill(store, "kangping-portal", "drill", "p1", T0.isoformat(), 42.5, True, {})
    catalog.record_drill(store, "kangping-portal", "drill", "p1", T0.isoformat(), 90.0, False, {})  # failed: ignored
    [row] = dr_status(lab_inventory(), store, T0)
    assert row.rto_measured == timedelta(seconds=42.5)
    assert row.level_achieved == 5  # RPO ≤ 30 min, RTO measured within 2 days (GB/T 20988-2007 table)
    assert row.table_edition == "GB/T 20988-2007" and row.edition == "GB/T 20988-2025"


def test_prometheus_text_format(store: Store) -> None:
    point(store, "p1", T0 - timedelta(minutes=20), kind="full", shipped=2048)
    text = prometheus(dr_status(lab_inventory(), store, T0), T0)
    labels = '{workload="kangping-portal",tenancy="kangping-ext"}'
    assert f"dcctl_dr_rpo_seconds{labels} 1200" in text
    assert f"dcctl_dr_rpo_breached{labels} 1" in text  # 20 min > 15 min
    assert f"dcctl_dr_shipped_bytes_total{labels} 8192" in text
    assert f"dcctl_dr_rto_seconds{labels} NaN" in text
    assert "# TYPE dcctl_dr_shipped_bytes_total counter" in text
    assert 'dcctl_dr_active_site{workload="kangping-portal",tenancy="kangping-ext",site="production"} 1' in text


def test_ssh_settings_come_from_the_libvirt_uri_and_verify_host_keys() -> None:
    target = SshTarget.from_uri(
        "qemu+libssh://root@198.18.50.14/system?sshauth=privkey&keyfile=/k/id&known_hosts=/k/kh&known_hosts_verify=normal"
    )
    assert (target.user, target.host, target.port, target.keyfile, target.known_hosts) == (
        "root",
        "198.18.50.14",
        22,
        "/k/id",
        "/k/kh",
    )
    command = target.openssh_command()
    assert "StrictHostKeyChecking=yes" in command and "UserKnownHostsFile=/k/kh" in command
    assert command[-1] == "root@198.18.50.14"
    with pytest.raises(Exception, match="not reached over SSH"):
        SshTarget.from_uri("qemu:///system")
