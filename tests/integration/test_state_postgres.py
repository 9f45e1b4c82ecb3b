"""A team's state in PostgreSQL (scripts/postgres), used from several machines: the lab's namespace hosts.

- two dcctl processes on two hosts (dcctl-lab-prov, dcctl-lab-dr) against one PostgreSQL: one applies, the other is
  refused naming the holder (host and pid); the dead holder on another machine is not taken over; once the lock is
  broken on the holder's own machine, the second proceeds;
- 8 writers at once (threads here, processes on two hosts) append to the audit chain: it verifies, the count is exact;
- a SQLite state moves to PostgreSQL with ``dcctl state migrate`` and verifies there, read from another machine.
"""

from __future__ import annotations

import itertools
import shutil
import socket
import stat
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from dcctl.state import audit
from dcctl.state.store import Holder, Store
from tests.conftest import ROOT
from tests.integration.conftest import Lab, dcctl
from tests.unit.state.backends import PG_DIR, fresh_schema, require_postgres
from tests.unit.state.test_transfer import populate

pytestmark = [
    pytest.mark.integration,
    pytest.mark.own_state("a PostgreSQL state shared by the lab's hosts, and a SQLite one moved into it"),
]

TARGET = ("--target", "prov-office")  # one tenancy, one server, on prov-kvm (198.18.50.11)
LAB = str(ROOT / "scripts" / "lab")


@pytest.fixture
def lab_state() -> Iterator[str]:
    """A fresh state in the test server, by the address the lab's hosts reach (198.18.50.1)."""
    with fresh_schema(require_postgres(lab=True)) as url:
        yield url


@pytest.fixture
def inventory(tmp_path: Path) -> Path:
    """The lab inventory with only the provincial data centers (prov-kvm, dr-kvm)."""
    inv = tmp_path / "inv"
    shutil.copytree(ROOT / "inventories" / "lab", inv, ignore=shutil.ignore_patterns(".dcctl"))
    for other in ("shenyang.yaml", "dalian.yaml"):
        (inv / other).unlink()
    return inv


def on(host: str, *args: str, env: dict[str, str] | None = None) -> list[str]:
    """A dcctl command line run inside a lab host (its network, mounts and hostname)."""
    pairs = [f"{k}={v}" for k, v in (env or {}).items()]
    return [LAB, "exec", host, "env", *pairs, sys.executable, "-m", "dcctl", *args]


def run_on(host: str, *args: str, check: bool = False, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(on(host, *args), capture_output=True, text=True, timeout=timeout, check=False)
    if check and proc.returncode != 0:
        raise AssertionError(f"dcctl {' '.join(args)} on {host} exited {proc.returncode}\n{proc.stdout}\n{proc.stderr}")
    return proc


def wait_for_lock(url: str, backend: str, timeout: float = 120.0) -> Holder:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        store = Store(url)
        try:
            held = store.locks().get(backend)
        finally:
            store.close()
        if held is not None:
            return held
        time.sleep(0.2)
    raise AssertionError(f"nobody took the lock of {backend} within {timeout}s")


def test_one_host_applies_the_other_is_refused_naming_it_then_proceeds(
    lab: Lab, lab_state: str, inventory: Path
) -> None:
    inv, url = str(inventory), lab_state
    run_on("dr", "destroy", inv, *TARGET, "--state", url, "--yes", check=True)  # whatever an earlier run left
    first = subprocess.Popen(
        on(
            "prov",
            "apply",
            inv,
            *TARGET,
            "--state",
            url,
            "--yes",
            env={"DCCTL_FAILPOINTS": "apply.step-started:1:pause"},
        ),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        holder = wait_for_lock(url, "prov-kvm")
        assert (holder.host, holder.pid, holder.command) == ("dcctl-lab-prov", first.pid, "apply")

        second = run_on("dr", "apply", inv, *TARGET, "--state", url, "--yes")
        assert second.returncode == 1, second.stdout + second.stderr
        assert f"backend 'prov-kvm' is locked by root@dcctl-lab-prov pid {first.pid}" in second.stderr
        assert "holder on another machine" in second.stderr
        refused = run_on("dr", "lock", "break", "prov-kvm", "-i", inv, "--state", url)
        assert refused.returncode == 1 and "cannot tell from here" in refused.stderr
    finally:
        first.kill()
        first.wait(timeout=30)

    # the holder is dead now, but on another machine: the dr host does not take its lock over
    again = run_on("dr", "apply", inv, *TARGET, "--state", url, "--yes")
    assert again.returncode == 1 and f"pid {first.pid}" in again.stderr and "dead run" not in again.stderr
    # on the holder's own machine the lock is known to be dead, and broken without --force
    broken = run_on("prov", "lock", "break", "prov-kvm", "-i", inv, "--state", url, check=True)
    assert f"held by root@dcctl-lab-prov pid {first.pid}" in broken.stdout

    third = run_on("dr", "apply", inv, *TARGET, "--state", url, "--yes", check=True)
    assert "Apply complete: 4 succeeded, 0 failed" in third.stdout, third.stdout + third.stderr
    assert run_on("prov", "plan", inv, *TARGET, "--state", url, "--detailed-exitcode").returncode == 0

    store = Store(url)
    try:
        result = audit.verify(store)
        entries = list(audit.entries(store))
        runs = store.db.execute("SELECT host, pid, status FROM runs ORDER BY id").fetchall()
    finally:
        store.close()
    assert result.ok
    by_action = {e.action: e for e in entries}
    assert (by_action["lock.break"].host, by_action["lock.break"].target) == ("dcctl-lab-prov", "prov-kvm")
    assert {e.host for e in entries if e.action == "apply.create"} == {"dcctl-lab-dr"}
    assert runs[0][:2] == ("dcctl-lab-prov", first.pid) and runs[-1][2] == "succeeded"
    run_on("dr", "destroy", inv, *TARGET, "--state", url, "--yes", check=True)


WRITER = """
import sys, time
from dcctl.state import audit
from dcctl.state.store import Store
url, name, n, start = sys.argv[1], sys.argv[2], int(sys.argv[3]), float(sys.argv[4])
store = Store(url)
time.sleep(max(0.0, start - time.time()))
for i in range(n):
    audit.record(store, audit.AuditEvent("dr.replicate", name, "succeeded", detail={"i": i}))
store.close()
"""


def test_eight_writers_on_three_machines_keep_the_chain_linear(lab: Lab, lab_state: str) -> None:
    per_writer = 40
    start = time.time() + 4.0  # every writer connected and waiting: they all begin at this instant
    procs = [
        subprocess.Popen(
            [LAB, "exec", host, sys.executable, "-c", WRITER, lab_state, f"{host}-{n}", str(per_writer), str(start)],
            stderr=subprocess.PIPE,
            text=True,
        )
        for host in ("prov", "dr")
        for n in range(2)
    ]
    errors: list[BaseException] = []

    def writer(n: int) -> None:
        try:
            store = Store(lab_state)
            time.sleep(max(0.0, start - time.time()))
            for i in range(per_writer):
                audit.record(store, audit.AuditEvent("dr.replicate", f"here-{n}", "succeeded", detail={"i": i}))
            store.close()
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=writer, args=(n,)) for n in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    outcomes = [(p.wait(timeout=120), p.stderr.read() if p.stderr else "") for p in procs]
    assert not errors
    assert all(code == 0 for code, _ in outcomes), outcomes

    store = Store(lab_state)
    try:
        result = audit.verify(store)
        entries = list(audit.entries(store))
    finally:
        store.close()
    assert result.ok, result
    assert result.count == len(entries) == 8 * per_writer
    assert [e.id for e in entries] == list(range(1, 8 * per_writer + 1))  # no gap
    assert len({e.prev_hash for e in entries}) == len(entries)  # no fork: no two entries follow the same one
    assert {e.host for e in entries} == {"dcctl-lab-prov", "dcctl-lab-dr", socket.gethostname()}
    assert {e.target for e in entries} == {f"{h}-{n}" for h in ("prov", "dr", "here") for n in range(2)} | {
        "here-2",
        "here-3",
    }
    # the writers really overlapped: the hosts' entries interleave
    hosts_in_order = [e.host for e in entries]
    changes = sum(a != b for a, b in itertools.pairwise(hosts_in_order))
    assert changes > 10
    verified = run_on("dr", "audit", "verify", "--state", lab_state, check=True)
    assert f"audit chain verified: {8 * per_writer} entries" in verified.stdout


def test_sqlite_state_migrates_and_verifies_from_another_machine(lab: Lab, lab_state: str, tmp_path: Path) -> None:
    sqlite_state = tmp_path / "laptop" / "state.db"
    populate(tmp_path, str(sqlite_state))
    old = Store(sqlite_state)
    chain, counts = audit.verify(old), old.counts()
    old.close()
    moved = dcctl("state", "migrate", "--from", str(sqlite_state), "--to", lab_state, check=True)
    assert f"head {chain.head_hash} (verified at both places)" in moved.stdout
    # an engineer on another machine sees the same runs, DR catalog and chain
    info = run_on("city", "state", "info", "--state", lab_state, "--json", check=True)
    assert '"backend": "postgres"' in info.stdout
    for table in ("runs", "journal", "resources", "dr_points", "dr_drills", "dr_placement"):
        assert f'"{table}": {counts[table]}' in info.stdout
    verified = run_on("city", "audit", "verify", "--state", lab_state, check=True)
    assert f"audit chain verified: {chain.count + 1} entries" in verified.stdout  # + the move itself
    assert f"starts after entry {chain.anchor.id if chain.anchor else 0}" in verified.stdout


def test_the_server_keeps_its_password_to_root() -> None:
    url = require_postgres()
    assert "@" in url and ":" not in url.split("://", 1)[1].split("@", 1)[0]  # no password in the URL
    for secret in (PG_DIR / "password", PG_DIR / "pgpass"):
        mode = secret.stat()
        assert (mode.st_uid, stat.S_IMODE(mode.st_mode)) == (0, 0o600), secret
    status = subprocess.run(
        [str(ROOT / "scripts" / "postgres"), "status"], capture_output=True, text=True, timeout=120, check=False
    )
    assert status.returncode == 0, status.stdout + status.stderr
    assert "scram-sha-256" in status.stdout
