"""The collection's modules under real ansible-playbook on this machine, with libvirt's in-process test driver: check
mode and diff show the plan and change nothing, a real run applies, failures carry the rule ids, a controller Python
without dcctl fails clearly, and the daemon module starts what it is told exactly once."""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from tests.unit.ansible.sandbox import COLLECTIONS, ansible, requires_ansible, write_inventory

pytestmark = requires_ansible
RECAP = re.compile(r"localhost\s*: ok=(\d+)\s+changed=(\d+)\s+unreachable=(\d+)\s+failed=(\d+)")


def recap(output: str) -> dict[str, int]:
    found = RECAP.search(output)
    assert found, output
    return dict(zip(("ok", "changed", "unreachable", "failed"), map(int, found.groups()), strict=True))


def site(tmp: Path, inv: Path, state: str, *args: str) -> tuple[dict[str, int], str]:
    proc = ansible(
        "ansible-playbook",
        "playbooks/site.yml",
        "-e",
        f"dcctl_inventory={inv}",
        "-e",
        f"dcctl_state={state}",
        *args,
        tmp=tmp,
    )
    return recap(proc.stdout), proc.stdout + proc.stderr


def test_check_diff_shows_the_plan_and_a_real_run_applies(tmp_path: Path, state_url: str) -> None:
    inv = write_inventory(tmp_path)
    counts, out = site(tmp_path, inv, state_url, "--check", "--diff")
    assert counts == {"ok": 4, "changed": 2, "unreachable": 0, "failed": 0}, out
    assert "+++ after: sy-kvm: server dcctl-kangping-portal-web-1 [server:kangping-portal/web/1]" in out
    assert "(create: new_in_inventory)" in out and "+ram_mb: 192" in out
    assert "check mode: nothing applied" in out
    counts, out = site(tmp_path, inv, state_url, "--diff")
    assert counts == {"ok": 4, "changed": 2, "unreachable": 0, "failed": 0}, out
    assert '"succeeded": 4, "failed": 0' in " ".join(out.split())  # the YAML callback wraps long lines


def test_invalid_inventory_fails_validation_with_rule_ids(tmp_path: Path, state_url: str) -> None:
    inv = write_inventory(tmp_path)
    text = (inv / "province.yaml").read_text()
    (inv / "province.yaml").write_text(text.replace("hosted_in: shenyang-dc", "hosted_in: shenyng-dc"))
    counts, out = site(tmp_path, inv, state_url)
    assert counts["failed"] == 1, out
    assert "the inventory has" in out and "error[ref-unknown]" in out and "shenyng-dc" in out


def test_controller_python_without_dcctl_fails_clearly(tmp_path: Path, state_url: str) -> None:
    python = "/usr/bin/python3"
    if not Path(python).exists():
        pytest.skip("no /usr/bin/python3")
    counts, out = site(tmp_path, write_inventory(tmp_path), state_url, "-e", f"ansible_python_interpreter={python}")
    assert counts["failed"] == 1, out
    assert "Failed to import the required Python library (dcctl)" in out
    assert "ansible_playbook_python" in out


def test_every_module_documents_itself(tmp_path: Path) -> None:
    listed = ansible("ansible-doc", "--list", "dcctl.infra", "--json", tmp=tmp_path)
    names = set(json.loads(listed.stdout))
    assert names == {f"dcctl.infra.{m}" for m in ("validate", "plan", "apply", "daemon", "bridge")}
    docs = ansible("ansible-doc", "--json", *sorted(names), tmp=tmp_path)
    assert docs.returncode == 0, docs.stderr
    for name, doc in json.loads(docs.stdout).items():
        assert doc["doc"]["short_description"], name
        assert doc["examples"] and doc["return"], name


DAEMON = """
import os, sys, time
if os.fork():
    sys.exit(0)
os.setsid()
with open(sys.argv[1] + ".tmp", "w") as f:
    f.write(str(os.getpid()))
os.rename(sys.argv[1] + ".tmp", sys.argv[1])
time.sleep(120)
"""


def daemon(tmp: Path, *args: str, **params: Any) -> tuple[dict[str, Any], str]:
    proc = ansible(
        "ansible",
        "localhost",
        "-m",
        "dcctl.infra.daemon",
        "-a",
        json.dumps(params),
        *args,
        tmp=tmp,
    )
    diff, sep, rest = proc.stdout.partition("localhost | ")  # (a diff, then) "localhost | CHANGED => {…}"
    assert sep and " => " in rest, proc.stdout + proc.stderr
    return dict(json.loads(rest.partition(" => ")[2])), diff


def test_daemon_module_starts_once_checks_and_restarts(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ANSIBLE_LOAD_CALLBACK_PLUGINS", "1")
    monkeypatch.setenv("ANSIBLE_STDOUT_CALLBACK", "ansible.builtin.minimal")
    monkeypatch.setenv("ANSIBLE_CALLBACK_RESULT_FORMAT", "json")
    script = tmp_path / "fake_daemon.py"
    script.write_text(DAEMON)
    pidfile = tmp_path / "fake.pid"
    params = {
        "name": "fake",
        "executable": sys.executable,
        "args": [str(script), str(pidfile)],
        "pidfile": str(pidfile),
    }
    started: list[int] = []
    try:
        would, diff = daemon(tmp_path, "--check", "--diff", **params)
        assert (would["changed"], would["pid"]) == (True, None)
        assert "-stopped\n+running" in diff
        assert not pidfile.exists()
        first, _ = daemon(tmp_path, **params)
        assert first["changed"] is True and first["pid"] == int(pidfile.read_text())
        started.append(first["pid"])
        again, _ = daemon(tmp_path, **params)
        assert (again["changed"], again["pid"]) == (False, first["pid"])
        restarted, _ = daemon(tmp_path, **params, state="restarted")
        started.append(restarted["pid"])
        assert restarted["changed"] is True and restarted["pid"] != first["pid"]
        assert (
            not Path(f"/proc/{first['pid']}").exists() or "zombie" in Path(f"/proc/{first['pid']}/status").read_text()
        )
        sys.path.insert(0, str(COLLECTIONS))
        from ansible_collections.dcctl.infra.plugins.modules.daemon import running_pid

        assert running_pid(str(pidfile), sys.executable) == restarted["pid"]
        pidfile.write_text("1")  # a stale pidfile naming another program: not running
        assert running_pid(str(pidfile), sys.executable) is None
    finally:
        for pid in started:  # only the fake daemons this test started
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        time.sleep(0.1)
