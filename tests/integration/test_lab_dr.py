"""DR on the real lab: Shenyang's city data center → the provincial DR site, over SSH between namespace hosts.

Data written in a running guest is replicated and its replica equals it byte for byte; a link cut mid-transfer is
resumed by the next run; a drill boots the replica (boot marker) and records its RTO; failover then failback loses
no write from either side; a breached RPO makes `dcctl dr status` exit non-zero.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from dcctl.dr.replicate import MEMORY_STAGING
from tests.conftest import ROOT
from tests.integration.conftest import Lab, dcctl
from tests.integration.guest import shell
from tests.states import fresh_state, state_of

pytestmark = pytest.mark.integration

WEB1 = "dcctl-kangping-portal-web-1"
WEB2 = "dcctl-kangping-portal-web-2"
MiB = 2**20


@pytest.fixture(scope="module")
def work(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    work = tmp_path_factory.mktemp("dr")
    shutil.copytree(ROOT / "inventories" / "lab", work / "inv", ignore=shutil.ignore_patterns(".dcctl", "dalian.yaml"))
    with fresh_state(work):  # state_of(work): the module's one state, on the backend under test
        yield work


def run(work: Path, *args: str, **kw: object) -> subprocess.CompletedProcess[str]:
    return dcctl(*args, "--state", state_of(work), **kw)  # type: ignore[arg-type]


def city(lab: Lab) -> Path:
    return Path(lab.hosts["city"]["srv_root_view"])


def dr_root(lab: Lab) -> Path:
    return Path(lab.hosts["dr"]["srv_root_view"]) / "dr" / "kangping-portal"


def guest(lab: Lab, host: str, name: str, command: str) -> str:
    return shell(Path(lab.hosts[host]["srv_root_view"]) / "console" / f"{name}.ttyS1.sock", command)


def staged_files(lab: Lab) -> list[Path]:
    """Staging files on the city host, in memory and on disk."""
    return [*Path(MEMORY_STAGING).rglob("*.qcow2"), *(city(lab) / "dr" / "staging").rglob("*.qcow2")]


def region_sha(lab: Lab, host: str, name: str, skip_mib: int, count_mib: int) -> str:
    out = guest(lab, host, name, f"dd if=/dev/vdb bs=1M skip={skip_mib} count={count_mib} 2>/dev/null | sha256sum")
    return out.split()[0]


def write_region(lab: Lab, host: str, name: str, skip_mib: int, count_mib: int) -> str:
    guest(
        lab,
        host,
        name,
        f"dd if=/dev/urandom of=/dev/vdb bs=1M seek={skip_mib} count={count_mib} conv=fsync 2>/dev/null",
    )
    return region_sha(lab, host, name, skip_mib, count_mib)


def replica_region_sha(lab: Lab, server: str, skip_mib: int, count_mib: int) -> str:
    """The same region read from the newest replica file at the DR site (through its whole chain)."""
    top = max((dr_root(lab) / server / "vdb").glob("2*.qcow2"))
    raw = top.with_suffix(".raw")
    subprocess.run(["qemu-img", "convert", "-U", "-O", "raw", str(top), str(raw)], check=True)
    try:
        with raw.open("rb") as f:
            f.seek(skip_mib * MiB)
            data = f.read(count_mib * MiB)
    finally:
        raw.unlink()
    import hashlib

    return hashlib.sha256(data).hexdigest()


@pytest.fixture(scope="module")
def applied(lab: Lab, work: Path) -> Iterator[None]:
    run(work, "destroy", str(work / "inv"), "--yes", check=True)
    shutil.rmtree(dr_root(lab), ignore_errors=True)
    run(work, "apply", str(work / "inv"), "--yes", check=True)
    uri = lab.hosts["city"]["uri"]
    for name in (WEB1, WEB2):
        lab.wait_for_marker(uri, name)
    yield
    run(work, "destroy", str(work / "inv"), "--yes")
    shutil.rmtree(dr_root(lab), ignore_errors=True)


def test_never_replicated_is_a_breached_rpo(applied: None, work: Path) -> None:
    result = run(work, "dr", "status", str(work / "inv"), "--json")
    assert result.returncode == 1
    [row] = json.loads(result.stdout)["workloads"]
    assert row["workload"] == "kangping-portal" and row["rpo_breached"] is True
    assert row["rpo_measured_seconds"] is None


def test_data_written_in_a_running_guest_is_replicated(applied: None, lab: Lab, work: Path) -> None:
    assert run(work, "dr", "replicate", str(work / "inv"), check=True).returncode == 0  # the full points
    written = write_region(lab, "city", WEB1, 0, 20)
    # what a run killed between QEMU's backup and the catalog leaves: staging files no point owns
    orphans = [
        Path(MEMORY_STAGING) / WEB1 / "vdb-20260101T000000Z-dead.qcow2",
        city(lab) / "dr" / "staging" / WEB1 / "vda-20260101T000000Z-dead.qcow2",
    ]
    for orphan in orphans:
        orphan.parent.mkdir(parents=True, exist_ok=True)
        orphan.write_bytes(b"QFI\xfb")
    result = run(work, "dr", "replicate", str(work / "inv"), "--json", check=True)
    assert not any(o.exists() for o in orphans) and "2 staging file(s) no point owns" in result.stderr
    servers = {s["server"]: s for r in json.loads(result.stdout)["replication"] for s in r["servers"]}
    assert servers[WEB1]["kind"] == "incremental"
    assert 20 * MiB <= servers[WEB1]["changed_bytes"] <= 21 * MiB
    assert servers[WEB1]["shipped_bytes"] <= 1.05 * servers[WEB1]["changed_bytes"] + 2 * MiB  # qcow2 metadata
    # the DR host wrote and verified the replica past its page cache: cold data takes no memory from the host
    # that runs failed-over workloads (qemu-img's header and tables aside)
    [top] = (dr_root(lab) / WEB1 / "vdb").glob(f"{servers[WEB1]['point_set']}.qcow2")
    fincore = ["fincore", "-b", "-n", "-r", "-o", "RES", str(top)]
    cached = subprocess.run(fincore, check=True, capture_output=True, text=True)
    assert int(cached.stdout) < 2 * MiB < top.stat().st_size
    assert replica_region_sha(lab, WEB1, 0, 20) == written
    assert f"{WEB1}: incremental point" in result.stderr and "staged in memory" in result.stderr  # auto: it fits
    assert staged_files(lab) == []  # a shipped point leaves no staging behind
    status = json.loads(run(work, "dr", "status", str(work / "inv"), "--json", check=True).stdout)
    [row] = status["workloads"]
    assert row["rpo_breached"] is False and row["chain_length"] == 2 and row["shipped_bytes"] > 20 * MiB


def test_a_backend_told_to_stage_on_disk_does(applied: None, lab: Lab, work: Path) -> None:
    inventory = work / "inv" / "shenyang.yaml"
    original = inventory.read_text()
    inventory.write_text(
        original.replace("dr_path: /srv/dcctl/dr\n", "dr_path: /srv/dcctl/dr\n        dr_staging: disk\n", 1)
    )
    try:
        written = write_region(lab, "city", WEB1, 40, 10)
        result = run(work, "dr", "replicate", str(work / "inv"), check=True)
    finally:
        inventory.write_text(original)
    assert "staged in disk" in result.stderr and "staged in memory" not in result.stderr
    assert replica_region_sha(lab, WEB1, 40, 10) == written
    assert staged_files(lab) == []


def replicate_and_cut(lab: Lab, work: Path) -> tuple[str, str]:
    """A replication whose DR link is cut once more than 10 MiB of web-1's data disk arrived; its stdout, stderr."""
    netns = ["ip", "netns", "exec", lab.hosts["city"]["netns"]]
    subprocess.run(
        [
            *netns,
            "tc",
            "qdisc",
            "add",
            "dev",
            "eth0",
            "root",
            "tbf",
            "rate",
            "160mbit",
            "burst",
            "256kb",
            "latency",
            "100ms",
        ],
        check=True,
    )  # 20 MB/s: a 120 MiB point takes seconds, time to cut it
    proc = subprocess.Popen(
        [sys.executable, "-m", "dcctl", "dr", "replicate", str(work / "inv"), "--state", state_of(work)],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    dr_netns = ["ip", "netns", "exec", lab.hosts["dr"]["netns"]]
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            parts = list((dr_root(lab) / WEB1 / "vdb").glob("*.part"))
            if parts and parts[0].stat().st_size > 10 * MiB:
                break
            time.sleep(0.05)
        else:
            raise AssertionError("the transfer never started")
        subprocess.run([*dr_netns, "ip", "link", "set", "eth0", "down"], check=True)  # cut the DR site's link
        out, err = proc.communicate(timeout=300)
    finally:
        subprocess.run([*dr_netns, "ip", "link", "set", "eth0", "up"], check=False)
        subprocess.run([*netns, "tc", "qdisc", "del", "dev", "eth0", "root"], check=False)
    assert proc.returncode == 1, out + err
    assert "stopped at" in out and "resumes" in out
    time.sleep(2)  # the bridge relearns the DR host
    return out, err


def test_a_link_cut_mid_transfer_is_resumed(applied: None, lab: Lab, work: Path) -> None:
    written = write_region(lab, "city", WEB1, 100, 120)
    _, err = replicate_and_cut(lab, work)
    partial = next((dr_root(lab) / WEB1 / "vdb").glob("*.part")).stat().st_size
    assert 0 < partial < 120 * MiB
    again = run(work, "dr", "replicate", str(work / "inv"), "--json", check=True)
    assert "resuming the transfer" in again.stderr
    assert not list((dr_root(lab) / WEB1 / "vdb").glob("*.part"))
    assert replica_region_sha(lab, WEB1, 100, 120) == written
    assert "staged in memory" in err and staged_files(lab) == []  # resumed from memory, then let go


def test_a_point_whose_staging_is_lost_is_given_up_and_the_next_one_ships(applied: None, lab: Lab, work: Path) -> None:
    written = write_region(lab, "city", WEB1, 300, 120)
    replicate_and_cut(lab, work)
    [part] = (dr_root(lab) / WEB1 / "vdb").glob("*.part")
    for staged in staged_files(lab):  # what a reboot of the city host does to memory staging
        staged.unlink()
    again = run(work, "dr", "replicate", str(work / "inv"), "--json", check=True)
    assert "lost its staging file; marked failed" in again.stderr
    assert not part.exists()  # what reached the DR site of the given-up point went with it
    assert not list((dr_root(lab) / WEB1).rglob("*.part"))
    assert replica_region_sha(lab, WEB1, 300, 120) == written  # the next point carried the same blocks
    assert staged_files(lab) == []


def test_drill_boots_the_replica_and_records_rto(applied: None, lab: Lab, work: Path) -> None:
    result = run(work, "dr", "drill", "kangping-portal", "-i", str(work / "inv"), "--json", check=True)
    drill = json.loads(result.stdout)["drill"]
    assert drill["ok"] is True
    assert set(drill["booted"]) == {WEB1, WEB2}
    assert all("disks=vda,vdb" in m for m in drill["booted"].values())
    assert 0 < drill["rto_seconds"] < 60
    row = json.loads(run(work, "dr", "status", str(work / "inv"), "--json", check=True).stdout)["workloads"][0]
    assert row["rto_measured_seconds"] == pytest.approx(drill["rto_seconds"], abs=0.01)
    assert row["drills_ok"] >= 1 and row["gbt20988"]["level_achieved"] >= 5
    # nothing of the drill is left at the DR site, and production never noticed
    plan = run(work, "plan", str(work / "inv"), "--detailed-exitcode")
    assert plan.returncode == 0, plan.stdout


def test_failover_then_failback_loses_no_data(applied: None, lab: Lab, work: Path) -> None:
    run(work, "dr", "replicate", str(work / "inv"), check=True)  # protected, as it would be in service
    before = write_region(lab, "city", WEB2, 300, 16)  # written at the source; failover replicates it last
    result = run(work, "dr", "failover", "kangping-portal", "-i", str(work / "inv"), "--json", check=True)
    failover = json.loads(result.stdout)["failover"]
    assert failover["ok"] and failover["rto_seconds"] > 0
    status = json.loads(run(work, "dr", "status", str(work / "inv"), "--json").stdout)["workloads"][0]
    assert status["active_site"] == "dr"
    assert region_sha(lab, "dr", "dcctl-dr-kangping-portal-web-2", 300, 16) == before
    at_dr = write_region(lab, "dr", "dcctl-dr-kangping-portal-web-2", 400, 16)  # written while failed over
    back = json.loads(
        run(work, "dr", "failback", "kangping-portal", "-i", str(work / "inv"), "--json", check=True).stdout
    )["failback"]
    assert back["ok"]
    assert region_sha(lab, "city", WEB2, 300, 16) == before
    assert region_sha(lab, "city", WEB2, 400, 16) == at_dr
    status = json.loads(run(work, "dr", "status", str(work / "inv"), "--json").stdout)["workloads"][0]
    assert status["active_site"] == "production"
    # after failback the chain starts again with a full point
    again = json.loads(run(work, "dr", "replicate", str(work / "inv"), "--json", check=True).stdout)
    assert {s["kind"] for r in again["replication"] for s in r["servers"]} == {"full"}


def test_a_breached_rpo_exits_non_zero_and_shows_in_prometheus(applied: None, work: Path) -> None:
    tight = work / "tight"
    shutil.rmtree(tight, ignore_errors=True)
    shutil.copytree(work / "inv", tight)
    text = (tight / "shenyang.yaml").read_text().replace("dr: {rpo: 15m,", "dr: {rpo: 1s,")
    (tight / "shenyang.yaml").write_text(text)
    time.sleep(1.5)
    status = run(work, "dr", "status", str(tight))
    assert status.returncode == 1
    assert "BREACHED" in status.stdout
    prom = run(work, "dr", "status", str(tight), "--format", "prometheus")
    assert 'dcctl_dr_rpo_breached{workload="kangping-portal",tenancy="kangping-ext"} 1' in prom.stdout
    assert prom.returncode == 1
