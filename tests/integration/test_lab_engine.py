"""The engine on the real lab: libvirtd + QEMU (TCG) in namespace hosts reached over SSH with verified host keys.

Apply boots real guests (their serial boot marker is read), a re-plan is empty, YAML edits plan exactly what changed,
drift is seen and repaired, foreign objects are left alone, a second apply is refused while the first holds the lock,
kill -9 at many distinct steps re-runs to the same end state, and destroy leaves nothing of dcctl's anywhere.
"""

from __future__ import annotations

import json
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import libvirt
import pytest
import yaml

from dcctl.state.store import Store
from tests.conftest import ROOT
from tests.integration.conftest import Lab, dcctl
from tests.states import fresh_state, state_of

pytestmark = pytest.mark.integration

SERVERS = {
    "dcctl-kangping-portal-web-1": "sy-kvm",
    "dcctl-kangping-portal-web-2": "sy-kvm",
    "dcctl-xinmin-service-app-1": "sy-kvm",
    "dcctl-faku-portal-web-1": "faku-kvm",
    "dcctl-prov-oa-app-1": "prov-kvm",
}


THIRD_WEB = (
    ("shenyang.yaml", "{name: web, count: 2,", "{name: web, count: 3,"),
    (
        "shenyang.yaml",
        "quotas: {vcpus: 2, ram_gb: 1, storage_gb: 4, instances: 2}",
        "quotas: {vcpus: 3, ram_gb: 1, storage_gb: 6, instances: 3}",
    ),
)


@pytest.fixture(scope="module")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    work = tmp_path_factory.mktemp("lab")
    shutil.copytree(ROOT / "inventories" / "lab", work / "inv", ignore=shutil.ignore_patterns(".dcctl", "dalian.yaml"))
    with fresh_state(work):  # state_of(work): the module's one state, on the backend under test
        yield work


@pytest.fixture(scope="module")
def uris(workdir: Path) -> dict[str, str]:
    found: dict[str, str] = {}
    for f in (workdir / "inv").glob("*.yaml"):
        for dc in yaml.safe_load(f.read_text()).get("data_centers", []):
            for b in dc.get("backends", []):
                if b.get("type") == "libvirt":
                    found[b["id"]] = b["uri"]
    return found


def run(workdir: Path, *args: str, inv: Path | None = None, **kw: object) -> subprocess.CompletedProcess[str]:
    command, *rest = args
    return dcctl(command, str(inv or workdir / "inv"), "--state", state_of(workdir), *rest, **kw)  # type: ignore[arg-type]


def edited(workdir: Path, name: str, *changes: tuple[str, str, str]) -> Path:
    """A copy of the lab inventory with text replacements: (file, old, new)."""
    target = workdir / name
    shutil.rmtree(target, ignore_errors=True)
    shutil.copytree(workdir / "inv", target)
    for file, old, new in changes:
        text = (target / file).read_text()
        assert old in text, (file, old)
        (target / file).write_text(text.replace(old, new, 1))
    return target


def dcctl_objects(uri: str) -> dict[str, set[str]]:
    """Everything with dcctl's name on one host, straight from libvirt."""
    conn = libvirt.open(uri)
    try:
        pools = [p for p in conn.listAllStoragePools() if p.name() == "dcctl"]
        volumes = {v.name() for p in pools if p.isActive() for v in p.listAllVolumes()}
        return {
            "domains": {d.name() for d in conn.listAllDomains() if d.name().startswith("dcctl-")},
            "networks": {n.name() for n in conn.listAllNetworks() if n.name().startswith("dcctl-")},
            "pools": {p.name() for p in pools},
            "volumes": {v for v in volumes if v.startswith("dcctl-")},
        }
    finally:
        conn.close()


@pytest.fixture(scope="module")
def applied(lab: Lab, workdir: Path, uris: dict[str, str]) -> Iterator[None]:
    run(workdir, "destroy", "--yes", check=True)  # a clean slate, whatever an earlier run left
    result = run(workdir, "apply", "--yes", check=True)
    assert "succeeded, 0 failed, 0 skipped" in result.stdout, result.stdout + result.stderr
    yield


def test_apply_boots_every_guest_and_status_lists_them(
    applied: None, lab: Lab, workdir: Path, uris: dict[str, str]
) -> None:
    for name, backend in SERVERS.items():
        marker = lab.wait_for_marker(uris[backend], name)
        assert f"name={name}" in marker
    status = json.loads(run(workdir, "status", "--json", check=True).stdout)
    running = {r["name"] for r in status["resources"] if r["kind"] == "server" and r["state"] == "running"}
    assert set(SERVERS) <= running  # (the lab's OpenStack data center runs servers of its own too)
    disks = lab.wait_for_marker(uris["sy-kvm"], "dcctl-kangping-portal-web-1")
    assert disks.endswith("disks=vda,vdb")  # root disk and the data volume, attached


def test_second_plan_has_no_changes(applied: None, workdir: Path) -> None:
    result = run(workdir, "plan", "--detailed-exitcode")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "No changes" in result.stdout


def test_memory_change_plans_exactly_that(applied: None, workdir: Path) -> None:
    inv = edited(workdir, "more-ram", ("province.yaml", "ram_mb: 192", "ram_mb: 256"))
    result = run(workdir, "plan", "--json", "--detailed-exitcode", inv=inv)
    assert result.returncode == 2
    changes = json.loads(result.stdout)["plan"]["changes"]
    pending = [c for c in changes if c["action"] != "noop" and c["backend"] in set(SERVERS.values())]
    assert {c["name"] for c in pending} == set(SERVERS)  # (the OpenStack servers' flavor changes too: not this test)
    assert {(c["action"], tuple(c["changed_fields"])) for c in pending} == {("update", ("ram_mb",))}
    assert {(c["before"]["ram_mb"], c["after"]["ram_mb"]) for c in pending} == {(192, 256)}


def test_count_change_plans_exactly_the_new_server(applied: None, workdir: Path) -> None:
    inv = edited(workdir, "more-web", *THIRD_WEB)
    result = run(workdir, "plan", "--json", inv=inv)
    pending = [
        (c["action"], c["kind"], c["key"])
        for c in json.loads(result.stdout)["plan"]["changes"]
        if c["action"] != "noop"
    ]
    assert sorted(pending) == [
        ("create", "server", "server:kangping-portal/web/3"),
        ("create", "volume", "server:kangping-portal/web/3/disk:data"),
        ("create", "volume", "server:kangping-portal/web/3/disk:root"),
    ]


def test_domain_deleted_by_hand_is_drift_and_apply_brings_it_back(
    applied: None, lab: Lab, workdir: Path, uris: dict[str, str]
) -> None:
    name = "dcctl-xinmin-service-app-1"
    conn = libvirt.open(uris["sy-kvm"])
    dom = conn.lookupByName(name)
    dom.destroy()
    dom.undefine()
    conn.close()
    drift = run(workdir, "drift", "--json")
    assert drift.returncode == 2
    assert [c["key"] for c in json.loads(drift.stdout)["drift"]] == ["server:xinmin-service/app/1"]
    lab.console_log(uris["sy-kvm"], name).unlink(missing_ok=True)  # so the marker we read is the new boot's
    run(workdir, "apply", "--yes", check=True)
    lab.wait_for_marker(uris["sy-kvm"], name)
    assert run(workdir, "drift").returncode == 0


def test_foreign_domain_with_a_clashing_name_is_left_alone(applied: None, workdir: Path, uris: dict[str, str]) -> None:
    conn = libvirt.open(uris["sy-kvm"])
    foreign = conn.defineXML(
        "<domain type='qemu'><name>dcctl-kangping-portal-web-3</name><memory unit='MiB'>64</memory>"
        "<os><type arch='x86_64'>hvm</type></os></domain>"
    )
    try:
        inv = edited(workdir, "clash", *THIRD_WEB)
        result = run(workdir, "apply", "--yes", inv=inv)
        assert result.returncode == 1
        assert "error[foreign-resource]" in result.stdout
        assert "dcctl-kangping-portal-web-3" in result.stdout and "not created by dcctl" in result.stdout
        assert conn.lookupByName("dcctl-kangping-portal-web-3").UUIDString() == foreign.UUIDString()
        destroy = run(workdir, "plan", "--json", inv=inv)
        assert "dcctl-kangping-portal-web-3" not in {
            c["name"] for c in json.loads(destroy.stdout)["plan"]["changes"] if c["action"] == "delete"
        }
    finally:
        foreign.undefine()
        conn.close()


def _wait_for_lock(state: str, timeout: float = 60.0) -> int:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        store = Store(state)
        try:
            held = store.locks()
        finally:
            store.close()
        if held:
            return next(iter(held.values())).pid
        time.sleep(0.2)
    raise AssertionError("the first apply never took its lock")


def test_concurrent_apply_is_refused_naming_the_holder(applied: None, workdir: Path, uris: dict[str, str]) -> None:
    conn = libvirt.open(uris["sy-kvm"])
    conn.lookupByName("dcctl-xinmin-service-app-1").destroy()  # give the first apply something to do
    conn.close()
    first = subprocess.Popen(
        [sys.executable, "-m", "dcctl", "apply", str(workdir / "inv"), "--state", state_of(workdir), "--yes"],
        cwd=ROOT,
        env={**__import__("os").environ, "DCCTL_FAILPOINTS": "apply.step-started:1:pause"},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        holder = _wait_for_lock(state_of(workdir))
        assert holder == first.pid
        second = run(workdir, "apply", "--yes")
        assert second.returncode == 1
        assert f"pid {first.pid}" in second.stderr and "locked by" in second.stderr
        assert "holder running" in second.stderr
    finally:
        first.send_signal(signal.SIGKILL)
        first.wait()
    # the holder is gone: the next apply takes its lock over, says so, and converges
    third = run(workdir, "apply", "--yes", check=True)
    assert "dead run" in third.stderr
    assert run(workdir, "plan", "--detailed-exitcode").returncode == 0


KILL_POINTS = [
    "apply.step-started:2",  # journal says started, nothing done yet
    "libvirt.pool-defined:1",  # pool defined, not built or started
    "libvirt.network-defined:1",  # network defined, not started
    "apply.step-applied:4",  # a volume made, not recorded in state
    "libvirt.domain-defined:1",  # domain defined, not started
    "libvirt.domain-started:1",  # domain running, not recorded
    "apply.step-applied:9",  # the last server made, run not finished
]


@pytest.mark.parametrize("point", KILL_POINTS)
def test_kill_9_mid_apply_then_reapply_converges(point: str, lab: Lab, workdir: Path, uris: dict[str, str]) -> None:
    target = ["--target", "sy-kvm"]
    run(workdir, "destroy", "--yes", *target, check=True)
    if point.startswith("libvirt.pool"):
        run(workdir, "destroy", "--yes", check=True)  # the pool goes only with everything
    killed = run(workdir, "apply", "--yes", *target, env={"DCCTL_FAILPOINTS": point})
    assert killed.returncode == -signal.SIGKILL, (point, killed.stdout, killed.stderr)
    run(workdir, "apply", "--yes", check=True)
    assert run(workdir, "plan", "--detailed-exitcode").returncode == 0
    found = dcctl_objects(uris["sy-kvm"])
    assert found["domains"] == {n for n, b in SERVERS.items() if b == "sy-kvm"}  # no duplicates, no orphans
    assert found["networks"] == {"dcctl-kangping-ext-app", "dcctl-xinmin-ext-app"}
    assert found["volumes"] == {
        "dcctl-kangping-portal-web-1-root.qcow2",
        "dcctl-kangping-portal-web-1-data.qcow2",
        "dcctl-kangping-portal-web-2-root.qcow2",
        "dcctl-kangping-portal-web-2-data.qcow2",
        "dcctl-xinmin-service-app-1-root.qcow2",
    }


def test_kill_9_mid_destroy_then_destroy_again_leaves_nothing(lab: Lab, workdir: Path, uris: dict[str, str]) -> None:
    run(workdir, "apply", "--yes", check=True)
    killed = run(workdir, "destroy", "--yes", env={"DCCTL_FAILPOINTS": "libvirt.domain-destroyed:2"})
    assert killed.returncode == -signal.SIGKILL
    run(workdir, "destroy", "--yes", check=True)
    for uri in uris.values():
        assert dcctl_objects(uri) == {"domains": set(), "networks": set(), "pools": set(), "volumes": set()}
    assert run(workdir, "plan", "--json").returncode == 0
