"""The engine on libvirt's own test driver (in-process, no daemon): plan, apply, re-plan, change, drift, destroy."""

from __future__ import annotations

import collections
import json
import os
import socket
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import libvirt
import pytest
import yaml

from dcctl.cli.app import main
from dcctl.engine import apply as apply_module
from dcctl.engine import session as session_module
from dcctl.engine.apply import PARALLELISM
from dcctl.engine.events import Event, EventKind
from dcctl.engine.retry import RetryPolicy
from dcctl.engine.session import Session, StalePlanError
from dcctl.errors import UsageError
from dcctl.inventory.model import LibvirtBackend
from dcctl.plan.model import Action, Mode, Plan, Reason
from dcctl.providers.base import TransientError
from dcctl.providers.libvirt import mapping
from dcctl.providers.libvirt import provider as provider_module
from dcctl.providers.libvirt.provider import LibvirtProvider
from dcctl.resources import DesiredResource
from dcctl.state.store import Holder, StateLockedError
from tests.conftest import CASES

NODE = CASES / "engine" / "node.xml"


def write_inventory(
    root: Path, *, hosts: int = 1, count: int = 2, ram_mb: int = 256, host_ram_gb: int = 4, anti_affinity: bool = True
) -> Path:
    inv = root / "inv"
    inv.mkdir(exist_ok=True)
    province = yaml.safe_load((CASES / "policy" / "_base" / "province.yaml").read_text())
    province["catalog"]["flavors"] = [{"id": "small", "vcpus": 1, "ram_mb": ram_mb, "disk_gb": 1}]
    province["catalog"]["images"] = [
        {"id": "debian", "kernel": "/boot/vmlinuz", "initrd": "/boot/initrd.img", "cmdline": "console=ttyS0"}
    ]
    backend = {
        "type": "libvirt",
        "uri": f"test://{NODE}",
        "zones": ["extranet"],
        "level": 3,
        "capacity": {"vcpus": 4, "ram_gb": host_ram_gb, "storage_gb": 50},
    }
    province["data_centers"] = [
        {
            "id": "prov-dr",
            "name": "省灾备中心",
            "tier": "provincial",
            "role": "dr",
            "backends": [{**backend, "id": "dr-kvm", "level": 4}],
        },
        {
            "id": "shenyang-dc",
            "name": "沈阳市数据中心",
            "tier": "municipal",
            "city": "shenyang",
            "backends": [{**backend, "id": f"sy-kvm{i}"} for i in range(1, hosts + 1)],
        },
    ]
    province["tenancies"] = [
        {
            "id": "kangping-ext",
            "name": "康平县人民政府",
            "kind": "county",
            "city": "shenyang",
            "hosted_in": "shenyang-dc",
            "zone": "extranet",
            "quotas": {"vcpus": 4, "ram_gb": 4, "storage_gb": 40, "instances": 8},
            "networks": [{"id": "app", "cidr": "198.18.10.0/24"}],
            "workloads": [
                {
                    "id": "portal",
                    "name": "门户",
                    "mlps_level": 2,
                    "servers": [
                        {
                            "name": "web",
                            "count": count,
                            "flavor": "small",
                            "image": "debian",
                            "networks": ["app"],
                            "anti_affinity": anti_affinity,
                            "volumes": [{"name": "data", "size_gb": 2}],
                        }
                    ],
                }
            ],
        }
    ]
    (inv / "province.yaml").write_text(yaml.safe_dump(province, allow_unicode=True, sort_keys=False))
    return inv


@pytest.fixture
def session(tmp_path: Path, state_url: str) -> Iterator[Session]:
    with Session(write_inventory(tmp_path), state_path=state_url) as s:
        yield s


def conn_of(s: Session, backend: str) -> libvirt.virConnect:
    provider = s.providers()[backend]
    assert isinstance(provider, LibvirtProvider)
    with provider.conns.get() as conn:
        return conn


def test_apply_creates_everything_then_replan_is_empty(session: Session) -> None:
    plan = session.plan()
    assert plan.applyable, list(plan.diagnostics)
    kinds = sorted(c.kind for c in plan.changes)
    assert kinds == ["network", "pool", "server", "server", "volume", "volume", "volume", "volume"]
    assert all(c.action is Action.CREATE and c.reason is Reason.NEW_IN_INVENTORY for c in plan.changes)
    result = session.apply(plan)
    assert result.ok, [r.error for r in result.results]
    again = session.plan()
    assert not again.has_changes
    assert again.counts()["noop"] == 8
    running = [e for e in session.status().entries if e.kind == "server"]
    assert {(e.key, e.state) for e in running} == {
        ("server:portal/web/1", "running"),
        ("server:portal/web/2", "running"),
    }


def test_domains_carry_their_inventory_key(session: Session) -> None:
    session.apply(session.plan())
    dom = conn_of(session, "sy-kvm1").lookupByName("dcctl-portal-web-1")
    meta = dom.metadata(libvirt.VIR_DOMAIN_METADATA_ELEMENT, "https://dcctl.invalid/xmlns/resource/1")
    assert "<key>server:portal/web/1</key>" in meta
    assert "<zone>extranet</zone>" in meta


def test_memory_change_is_planned_as_exactly_that(tmp_path: Path, state_url: str, new_state: Callable[[], str]) -> None:
    inv = write_inventory(tmp_path)
    with Session(inv, state_path=state_url) as s:
        s.apply(s.plan())
        write_inventory(tmp_path, ram_mb=512)
        s2 = Session(inv, state_path=new_state())  # a state of its own
        s2._providers = s.providers()  # the same (in-process) hosts
        try:
            plan = s2.plan()
        finally:
            s2.store.close()
    pending = plan.pending
    assert {(c.kind, c.key, c.action) for c in pending} == {
        ("server", "server:portal/web/1", Action.UPDATE),
        ("server", "server:portal/web/2", Action.UPDATE),
    }
    assert all(c.changed_fields == ("ram_mb",) for c in pending)
    assert pending[0].before is not None and pending[0].before["ram_mb"] == 256
    assert pending[0].after == {"ram_mb": 512}


def test_count_change_creates_and_deletes_only_the_difference(tmp_path: Path, state_url: str) -> None:
    inv = write_inventory(tmp_path, count=2)
    with Session(inv, state_path=state_url) as s:
        assert s.apply(s.plan()).ok
        providers = s.providers()
        for count, expected in (
            (
                3,
                {
                    ("server", "server:portal/web/3", Action.CREATE),
                    ("volume", "server:portal/web/3/disk:root", Action.CREATE),
                    ("volume", "server:portal/web/3/disk:data", Action.CREATE),
                },
            ),
            (
                1,
                {
                    (kind, f"server:portal/web/{n}{suffix}", Action.DELETE)
                    for n in (2, 3)
                    for kind, suffix in (("server", ""), ("volume", "/disk:root"), ("volume", "/disk:data"))
                },
            ),
        ):
            write_inventory(tmp_path, count=count)
            with Session(inv, state_path=state_url) as s2:
                s2._providers = providers
                plan = s2.plan()
                assert {(c.kind, c.key, c.action) for c in plan.pending} == expected
                assert s2.apply(plan).ok
                assert not s2.plan().has_changes
                s2._providers = None  # do not close the shared providers


def test_destroy_leaves_no_dcctl_resource(session: Session) -> None:
    session.apply(session.plan())
    plan = session.plan(Mode.DESTROY)
    assert {c.action for c in plan.pending} == {Action.DELETE}
    assert plan.pending[0].kind == "server"  # servers first, the pool last
    assert plan.pending[-1].kind == "pool"
    assert session.apply(plan, command="destroy").ok
    conn = conn_of(session, "sy-kvm1")
    assert [d.name() for d in conn.listAllDomains()] == []
    assert [n.name() for n in conn.listAllNetworks()] == []
    assert [p.name() for p in conn.listAllStoragePools()] == []
    assert session.store.applied() == {}


def test_foreign_domain_with_a_dcctl_name_is_left_alone(session: Session) -> None:
    conn = conn_of(session, "sy-kvm1")
    foreign = conn.defineXML(
        "<domain type='test'><name>dcctl-portal-web-1</name><memory unit='MiB'>64</memory>"
        "<os><type>hvm</type></os></domain>"
    )
    uuid = foreign.UUIDString()
    plan = session.plan()
    errors = plan.diagnostics.errors
    assert [d.code for d in errors] == ["foreign-resource"]
    assert "not created by dcctl" in errors[0].message
    assert errors[0].source is not None and errors[0].source.path.endswith("province.yaml")
    assert not plan.applyable
    with pytest.raises(Exception, match="cannot be applied"):
        session.apply(plan)
    destroy = session.plan(Mode.DESTROY)
    assert all(c.name != "dcctl-portal-web-1" for c in destroy.pending)
    assert conn.lookupByName("dcctl-portal-web-1").UUIDString() == uuid


def test_domain_deleted_by_hand_is_drift_and_comes_back(session: Session) -> None:
    session.apply(session.plan())
    dom = conn_of(session, "sy-kvm1").lookupByName("dcctl-portal-web-2")
    dom.destroy()
    dom.undefine()
    drift = session.drift()
    assert [(c.key, c.reason) for c in drift.changes] == [("server:portal/web/2", Reason.MISSING_ON_BACKEND)]
    assert session.apply(session.plan()).ok
    assert conn_of(session, "sy-kvm1").lookupByName("dcctl-portal-web-2").isActive()
    assert session.drift().changes == []


def test_stopped_domain_is_drift_and_is_started(session: Session) -> None:
    session.apply(session.plan())
    conn_of(session, "sy-kvm1").lookupByName("dcctl-portal-web-1").destroy()
    drift = session.drift()
    assert [(c.key, c.changed_fields) for c in drift.changes] == [("server:portal/web/1", ("running",))]
    assert session.apply(session.plan()).ok
    assert conn_of(session, "sy-kvm1").lookupByName("dcctl-portal-web-1").isActive()


def test_anti_affinity_spreads_a_group_and_placement_is_sticky(tmp_path: Path, state_url: str) -> None:
    with Session(write_inventory(tmp_path, hosts=2, count=2), state_path=state_url) as s:
        plan = s.plan()
        hosts = {c.key: c.backend for c in plan.changes if c.kind == "server"}
        assert sorted(hosts.values()) == ["sy-kvm1", "sy-kvm2"]
        assert s.apply(plan).ok
        assert {c.key: c.backend for c in s.plan().changes if c.kind == "server"} == hosts


def test_capacity_shortfall_is_refused_at_plan_time_with_numbers(tmp_path: Path, state_url: str) -> None:
    # two 2 GiB hosts, three 1280 MiB servers: within quota and total capacity, but each host holds only one
    inv = write_inventory(tmp_path, hosts=2, count=3, ram_mb=1280, host_ram_gb=2)
    with Session(inv, state_path=state_url) as s:
        plan = s.plan()
    [error] = plan.diagnostics.errors
    assert error.code == "placement-no-capacity"
    assert "server:portal/web/3" in error.message
    assert "1280 MiB" in error.message
    assert "sy-kvm1: 3 vCPU, 768 MiB" in error.message
    assert not plan.applyable


def test_a_locked_backend_is_refused_naming_the_holder(session: Session) -> None:
    other = Holder("alice", Holder.me("x").host, os.getppid(), "apply", "2026-11-26T10:00:00+00:00")
    session.store.lock(["sy-kvm1"], other, None)
    with pytest.raises(StateLockedError) as caught:
        session.apply(session.plan())
    assert f"pid {os.getppid()}" in caught.value.message
    assert "alice@" in caught.value.message
    assert "running" in caught.value.message


def test_a_dead_holders_lock_is_taken_over(session: Session) -> None:
    dead = Holder("bob", Holder.me("x").host, 2**22 + 17, "apply", "2026-11-26T10:00:00+00:00")
    session.store.lock(["sy-kvm1"], dead, None)
    seen: list[Event] = []
    session.events = seen.append
    assert session.apply(session.plan()).ok
    assert any("dead run" in e.message for e in seen)
    assert session.store.locks() == {}


def test_saved_plan_refuses_to_apply_once_the_world_moved(session: Session, tmp_path: Path) -> None:
    saved = Plan.from_dict(json.loads(json.dumps(session.plan().to_dict())))
    session.check_fresh(saved)  # nothing moved yet
    conn_of(session, "sy-kvm1").networkDefineXML("<network><name>someone-else</name></network>")
    session.check_fresh(saved)  # foreign objects do not make a plan stale
    session.apply(session.plan())
    with pytest.raises(StalePlanError, match="backend 'sy-kvm1' changed"):
        session.check_fresh(saved)


def test_transient_errors_are_retried(session: Session, monkeypatch: pytest.MonkeyPatch) -> None:
    provider = session.providers()["sy-kvm1"]
    real = provider.apply
    calls = {"n": 0}

    def flaky(*args: object, **kwargs: object) -> object:
        calls["n"] += 1
        if calls["n"] == 1:
            raise TransientError("connection reset")
        return real(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(provider, "apply", flaky)
    monkeypatch.setattr("dcctl.engine.apply.RetryPolicy", lambda: RetryPolicy(base_delay=0.01))
    result = session.apply(session.plan())
    assert result.ok
    assert max(r.attempts for r in result.results) == 2


def test_target_limits_the_plan(tmp_path: Path, state_url: str) -> None:
    with Session(write_inventory(tmp_path), state_path=state_url, targets=["portal"]) as s:
        assert {c.kind for c in s.plan().changes} == {"pool", "network", "volume", "server"}
    with pytest.raises(UsageError, match="--target 'portl' is no workload") as caught:
        Session(write_inventory(tmp_path), state_path=state_url, targets=["portl"])
    assert caught.value.hint == "did you mean portal?"


def count_calls(monkeypatch: pytest.MonkeyPatch, *methods: str) -> collections.Counter[str]:
    """Count the calls of libvirt methods, each named like ``virDomain.isActive``."""
    calls: collections.Counter[str] = collections.Counter()
    for qualified in methods:
        cls, name = qualified.split(".")
        real = getattr(getattr(libvirt, cls), name)

        def counted(*args: object, _real: Any = real, _name: str = qualified, **kwargs: object) -> object:
            calls[_name] += 1
            return _real(*args, **kwargs)

        monkeypatch.setattr(getattr(libvirt, cls), name, counted)
    return calls


def test_create_and_destroy_make_no_call_they_can_do_without(session: Session, monkeypatch: pytest.MonkeyPatch) -> None:
    calls = count_calls(
        monkeypatch,
        "virConnect.storagePoolLookupByName",
        "virStoragePool.storageVolLookupByName",
        "virDomain.isActive",
        "virDomain.undefineFlags",
        "virDomain.undefine",
    )
    assert session.apply(session.plan()).ok  # 2 servers, 4 volumes
    assert calls == {"virConnect.storagePoolLookupByName": 1, "virDomain.isActive": 2}  # the pool once; the waits
    calls.clear()
    assert session.apply(session.plan(Mode.DESTROY), command="destroy").ok
    # the test driver refuses the NVRAM and checkpoint flags once, then gets a plain undefine
    assert calls["virDomain.undefineFlags"] == 1
    assert calls["virDomain.undefine"] == 2
    assert calls["virConnect.storagePoolLookupByName"] == 1  # the pool's own delete
    assert calls["virStoragePool.storageVolLookupByName"] == 4


def test_objects_made_between_plan_and_apply_are_taken_as_found(session: Session) -> None:
    plan = session.plan()
    assert session.apply(Plan(**{**plan.__dict__, "changes": [c for c in plan.changes if c.kind == "pool"]})).ok
    conn = conn_of(session, "sy-kvm1")
    pool = conn.storagePoolLookupByName("dcctl")
    pool.createXML("<volume><name>dcctl-portal-web-1-data.qcow2</name><capacity unit='GiB'>2</capacity></volume>")
    server = next(c for c in plan.changes if c.key == "server:portal/web/1")
    desired = DesiredResource(server.kind, server.key, server.backend, server.name, server.spec or {})
    conn.defineXML(mapping.render_xml(desired, session.province)).create()
    result = session.apply(plan)
    assert result.ok, [r.error for r in result.results]
    assert not session.plan().has_changes


@pytest.mark.parametrize(
    ("uri", "networked"),
    [
        ("qemu+libssh://root@198.18.50.13/system?sshauth=privkey", True),
        ("qemu+ssh://root@kvm1/system", True),
        ("qemu+tcp://10.0.0.1/system", True),
        ("qemu://kvm1/system", True),  # a host name alone: TLS
        ("qemu:///system", False),
        ("test+unix:///default", False),
        (f"test://{NODE}", False),
    ],
)
def test_keepalives_and_their_event_loop_are_for_connections_over_a_network(uri: str, networked: bool) -> None:
    assert provider_module._over_network(uri) is networked


def track_in_flight(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Record the most changes in flight at once (each change made to take 20 ms longer)."""
    real, guard, now, peak = apply_module._run_one, threading.Lock(), [0], [0]

    def slow(*args: Any, **kwargs: Any) -> Any:
        with guard:
            now[0] += 1
            peak[0] = max(peak[0], now[0])
        time.sleep(0.02)
        try:
            return real(*args, **kwargs)
        finally:
            with guard:
                now[0] -= 1

    monkeypatch.setattr(apply_module, "_run_one", slow)
    return peak


def test_parallelism_bounds_the_changes_in_flight(
    session: Session, tmp_path: Path, new_state: Callable[[], str], monkeypatch: pytest.MonkeyPatch
) -> None:
    peak = track_in_flight(monkeypatch)
    assert session.apply(session.plan()).ok
    assert peak == [PARALLELISM]  # 4 volumes side by side on the one backend
    peak[0] = 0
    (tmp_path / "cli").mkdir()
    inv = write_inventory(tmp_path / "cli")
    assert main(["apply", str(inv), "--yes", "--parallelism", "1", "--state", new_state()]) == 0
    assert peak == [1]


def test_observe_reads_side_by_side_and_pairs_each_answer_with_its_object(
    tmp_path: Path, state_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Domain XML and volume info are read several calls at a time: every answer must come back to its own object
    (a domain paired with another's XML would look foreign, a root disk paired with a data disk's size resized)."""
    monkeypatch.setattr(provider_module, "OBSERVE_READS", 2)  # 4 domains and 8 volumes: both go the parallel way
    with Session(write_inventory(tmp_path, count=4, anti_affinity=False), state_path=state_url) as s:
        assert s.apply(s.plan()).ok
        assert not s.plan().has_changes
        observed = s.observe()["sy-kvm1"].resources
        servers = {r.name: r for r in observed if r.kind == "server"}
        assert sorted(servers) == [f"dcctl-portal-web-{n}" for n in range(1, 5)]
        assert all(r.managed and r.key == f"server:portal/web/{r.name[-1]}" for r in servers.values())
        sizes = {r.name: r.attrs["size_gb"] for r in observed if r.kind == "volume"}
        assert sizes == {
            f"dcctl-portal-web-{n}-{d}.qcow2": gb for n in range(1, 5) for d, gb in (("root", 1), ("data", 2))
        }


def test_parallel_reads_keep_the_order_and_raise_the_first_error() -> None:
    items = list(range(23))
    assert provider_module._read_all(lambda i: i * i, items, 4) == [i * i for i in items]

    def fails_on_seven(i: int) -> int:
        if i == 7:
            raise libvirt.libvirtError("gone")
        return i

    with pytest.raises(libvirt.libvirtError):
        provider_module._read_all(fails_on_seven, items, 4)


def test_parallel_readers_share_one_cpu_and_leave_the_callers_affinity_alone() -> None:
    """The readers of one connection run on one CPU (cheap reply hand-offs); the calling thread keeps its own."""
    before = os.sched_getaffinity(0)
    seen = provider_module._read_all(lambda _: frozenset(os.sched_getaffinity(0)), list(range(16)), 4)
    assert set(seen) == {frozenset({min(before)})}
    assert os.sched_getaffinity(0) == before


@pytest.mark.parametrize(
    ("uri", "readers"),
    [
        ("test+unix:///default", provider_module.OBSERVE_READS),
        ("qemu:///system", provider_module.OBSERVE_READS),
        ("qemu+ssh://root@host/system", provider_module.OBSERVE_READS),
        ("qemu+libssh://root@host/system?sshauth=privkey", 1),
        ("qemu+libssh2://root@host/system", 1),
    ],
)
def test_calls_go_one_at_a_time_over_libssh(uri: str, readers: int) -> None:
    """libvirt 9.0's libssh client stalls 5-10 s on replies to calls in flight together: observe reads in series
    there, several at a time elsewhere."""
    capacity = {"vcpus": 1, "ram_gb": 1, "storage_gb": 1}
    backend = LibvirtBackend.model_validate(
        {"id": "h", "type": "libvirt", "uri": uri, "zones": ["extranet"], "level": 3, "capacity": capacity}
    )
    assert LibvirtProvider(backend, "p").readers == readers


def test_observe_waits_for_the_last_requests_of_a_run_that_died(
    session: Session, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A run killed mid-request leaves requests a backend may carry out after it died: the next observe waits until
    LANDING_S have passed since that run's last step (once per session); a finished or living run makes no wait."""
    dead = subprocess.Popen(["true"])
    dead.wait()  # a process id that no longer runs
    monkeypatch.setattr(session_module, "LANDING_S", 2.0)
    seen: list[Event] = []
    session.events = seen.append
    store = session.store
    finished = store.start_run("apply", "inv", None, Holder("u", socket.gethostname(), dead.pid, "apply"))
    store.journal(finished, "sy-kvm1", "server:portal/web/1", "server", "n", "create", "started")
    store.finish_run(finished, "ok")
    living = store.start_run("apply", "inv", None, Holder.me("apply"))
    store.journal(living, "sy-kvm1", "server:portal/web/1", "server", "n", "create", "started")
    started = time.monotonic()
    session.observe()
    assert time.monotonic() - started < 0.9 and not [e for e in seen if e.kind is EventKind.WAITING]

    session._landed = False  # a new session, as far as the wait goes
    killed = store.start_run("apply", "inv", None, Holder("u", socket.gethostname(), dead.pid, "apply"))
    store.journal(killed, "sy-kvm1", "server:portal/web/2", "server", "n", "create", "started")
    started = time.monotonic()
    session.observe()
    assert time.monotonic() - started >= 0.9  # the journal keeps whole seconds: 1-2 s of the 2 s were left
    assert [e.kind for e in seen].count(EventKind.WAITING) == 1
    started = time.monotonic()
    session.observe()
    assert time.monotonic() - started < 0.9  # once per session
