"""Ansible on the lab machine, for real: `dcctl hosts prepare` (prepare-hosts.yml through ansible-runner, over SSH with
host keys verified) turns a bare namespace host (scripts/bare-host: sshd only, no libvirt) into a libvirt host that
dcctl then provisions; then playbooks/site.yml drives dcctl's modules against it: --check --diff shows the plan and
changes nothing, a real run applies, the next run reports changed=0, and destroy leaves nothing.

Everything runs on a bare host of its own (its own bridge, 198.18.51.0/24), so the lab's four hosts, which other tests
converge to the lab inventory, are never touched. The bare host is torn down at the end, whatever happened.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import libvirt
import pytest

from dcctl.state import audit, open_store
from tests.conftest import ROOT
from tests.integration.conftest import MARKER, Lab, dcctl
from tests.states import fresh_state, state_of
from tests.unit.ansible.sandbox import ansible, ansible_env, requires_ansible, write_inventory

pytestmark = [pytest.mark.integration, requires_ansible]

BARE = ROOT / "scripts" / "bare-host"
NAME = f"t{os.getpid() % 10_000_000}"  # one bare host per test process: parallel runs never share one
SERVER = "dcctl-kangping-portal-web-1"
BRIDGES = '{"dcctl_bridges": [{"name": "dcup0", "addresses": ["198.18.52.1/24"]}]}'
RECAP = re.compile(r"localhost\s*: ok=(\d+)\s+changed=(\d+)\s+unreachable=(\d+)\s+failed=(\d+)")


@dataclass
class Bare:
    name: str
    ip: str
    uri: str
    netns: str
    srv: Path
    work: Path
    inv: Path

    @property
    def state(self) -> str:
        return state_of(self.work)

    def status(self) -> str:
        proc = subprocess.run([str(BARE), "status", self.name], capture_output=True, text=True, timeout=30, check=False)
        return proc.stdout

    def libvirt_daemons(self) -> list[str]:
        """What `status` says runs of libvirt in the host: [] for none."""
        found = re.search(r"libvirt: (.*)$", self.status().strip())
        assert found, self.status()
        return [] if found.group(1).strip() == "none" else found.group(1).split()

    def prepare(self, *args: str) -> tuple[dict[str, object], str]:
        proc = dcctl(
            "hosts", "prepare", str(self.inv), "--state", self.state, "--json", "-e", BRIDGES, *args,
            env=ansible_env(self.work),
        )  # fmt: skip
        assert proc.stdout.startswith("{"), proc.stdout + proc.stderr
        return json.loads(proc.stdout)["prepare"], proc.stderr

    def domains(self) -> dict[str, bool]:
        conn = libvirt.open(self.uri)
        try:
            return {d.name(): bool(d.isActive()) for d in conn.listAllDomains() if d.name().startswith("dcctl-")}
        finally:
            conn.close()

    def boot_marker(self, timeout: float = 90.0) -> str:
        log = self.srv / "console" / f"{SERVER}.log"
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            found = MARKER.search(log.read_text(errors="replace")) if log.exists() else None
            if found:
                return found.group(0)
            time.sleep(0.5)
        raise AssertionError(f"no boot marker in {log} after {timeout}s")


@pytest.fixture(scope="module")
def bare(lab: Lab, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Bare]:
    """A bare namespace host (sshd only), and a one-server inventory on it; torn down completely afterwards."""
    work = tmp_path_factory.mktemp("ansible")
    try:
        up = subprocess.run([str(BARE), "up", NAME], capture_output=True, text=True, timeout=300, check=False)
        assert up.returncode == 0, up.stdout + up.stderr
        host = json.loads(up.stdout)
        inv = write_inventory(work, host["uri"])
        with fresh_state(work):  # state_of(work): the module's one state, on the backend under test
            yield Bare(NAME, host["ip"], host["uri"], host["netns"], Path(host["srv_root_view"]), work, inv)
    finally:
        down = subprocess.run([str(BARE), "down", NAME], capture_output=True, text=True, timeout=120, check=False)
        assert down.returncode == 0, down.stdout + down.stderr
        assert not Path(f"/run/netns/dcctl-bare-{NAME}").exists()
        assert not Path(f"/var/lib/dcctl-bare/{NAME}").exists()


def test_bare_host_runs_sshd_and_no_libvirt(bare: Bare) -> None:
    assert "ssh=OK" in bare.status()
    assert bare.libvirt_daemons() == []
    assert not (bare.srv / "images").exists()


def test_prepare_check_mode_shows_changes_and_changes_nothing(bare: Bare) -> None:
    result, progress = bare.prepare("--check")
    assert result["ok"] and result["check"] and result["changed"], result
    assert "would change: Start virtlogd and libvirtd as daemons (no systemd)" in progress
    assert "would change: Uplink bridges" in progress
    assert bare.libvirt_daemons() == []
    assert not (bare.srv / "images").exists()
    links = subprocess.run(["ip", "-n", bare.netns, "-br", "link"], capture_output=True, text=True, check=True)
    assert "dcup0" not in links.stdout


def test_prepare_makes_a_working_libvirt_host_over_ssh(bare: Bare) -> None:
    result, progress = bare.prepare()
    assert result["ok"] and result["changed"] and not result["check"], (result, progress)
    hosts = result["hosts"]
    assert isinstance(hosts, list) and len(hosts) == 1
    assert hosts[0]["host"] == "sy-kvm" and hosts[0]["address"] == bare.ip and hosts[0]["changed"] > 0
    assert result["skipped_backends"] == {"dr-kvm": "libvirt URI test:///default is not reached over SSH"}
    assert "[sy-kvm] changed: Storage directories for dcctl's pools" in progress
    assert sorted(d.partition("=")[0] for d in bare.libvirt_daemons()) == ["libvirtd", "virtlogd"]
    assert (bare.srv / "images").is_dir() and (bare.srv / "console").is_dir()
    conn = libvirt.open(bare.uri)  # the URI dcctl uses: libssh, host key verified against the bare host's own
    try:
        assert conn.getHostname() == f"dcctl-bare-{bare.name}"
    finally:
        conn.close()
    addrs = subprocess.run(
        ["ip", "-n", bare.netns, "-br", "addr", "show", "dcup0"], capture_output=True, text=True, check=True
    )
    assert "198.18.52.1/24" in addrs.stdout
    store = open_store(bare.inv, bare.state)
    try:
        prepared = [e for e in audit.entries(store) if e.action == "hosts.prepare"]
    finally:
        store.close()
    assert [(e.target, e.outcome, e.detail["check"]) for e in prepared] == [
        ("sy-kvm", "succeeded", True),
        ("sy-kvm", "succeeded", False),
    ]


def test_prepare_again_changes_nothing(bare: Bare) -> None:
    result, _ = bare.prepare()
    assert result["ok"] and not result["changed"], result
    hosts = result["hosts"]
    assert isinstance(hosts, list) and hosts[0]["changed"] == 0


def test_dcctl_provisions_the_prepared_host(bare: Bare) -> None:
    common = ("--state", bare.state)
    applied = dcctl("apply", str(bare.inv), "--yes", *common, check=True)
    assert "Apply complete: 4 succeeded, 0 failed" in applied.stdout, applied.stdout + applied.stderr
    assert f"name={SERVER}" in bare.boot_marker()
    status = json.loads(dcctl("status", str(bare.inv), "--json", *common, check=True).stdout)
    running = {r["name"] for r in status["resources"] if r["kind"] == "server" and r["state"] == "running"}
    assert running == {SERVER}
    dcctl("destroy", str(bare.inv), "--yes", *common, check=True)
    assert bare.domains() == {}
    (bare.srv / "console" / f"{SERVER}.log").unlink(missing_ok=True)


def site(bare: Bare, *args: str) -> tuple[dict[str, int], str]:
    proc = ansible(
        "ansible-playbook",
        "playbooks/site.yml",
        "-e",
        f"dcctl_inventory={bare.inv}",
        "-e",
        f"dcctl_state={bare.state}",
        *args,
        tmp=bare.work,
    )
    found = RECAP.search(proc.stdout)
    assert found, proc.stdout + proc.stderr
    counts = dict(zip(("ok", "changed", "unreachable", "failed"), map(int, found.groups()), strict=True))
    return counts, proc.stdout + proc.stderr


def test_site_check_diff_shows_the_plan_and_changes_nothing(bare: Bare) -> None:
    counts, out = site(bare, "--check", "--diff")
    assert counts == {"ok": 4, "changed": 2, "unreachable": 0, "failed": 0}, out
    assert f"+++ after: sy-kvm: server {SERVER} [server:kangping-portal/web/1] (create: new_in_inventory)" in out
    assert "+++ after: sy-kvm: network dcctl-kangping-ext-app" in out
    assert "check mode: nothing applied" in out
    assert bare.domains() == {}


def test_site_applies(bare: Bare) -> None:
    counts, out = site(bare)
    assert counts == {"ok": 4, "changed": 2, "unreachable": 0, "failed": 0}, out
    assert bare.domains() == {SERVER: True}
    assert f"name={SERVER}" in bare.boot_marker()


def test_site_again_reports_no_change(bare: Bare) -> None:
    counts, out = site(bare, "--diff")
    assert counts == {"ok": 4, "changed": 0, "unreachable": 0, "failed": 0}, out
    assert "+++ after" not in out


def test_site_destroy_leaves_nothing(bare: Bare) -> None:
    counts, out = site(bare, "-e", "dcctl_destroy=true")
    assert counts["failed"] == 0 and counts["changed"] == 2, out
    assert bare.domains() == {}
    counts, out = site(bare, "-e", "dcctl_destroy=true")
    assert counts["changed"] == 0, out
