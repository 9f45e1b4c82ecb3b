"""Integration fixtures: the real lab (scripts/lab up: namespace hosts with sshd and libvirtd, TCG guests)."""

from __future__ import annotations

import fcntl
import json
import os
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.conftest import ROOT, require_service

LAB_DIR = Path("/var/lib/dcctl-lab")
MARKER = re.compile(r"^DCCTL-BOOT-OK host=(\S+) name=(\S+) disks=(\S+)$", re.M)


@dataclass
class Lab:
    hosts: dict[str, dict[str, str]]

    def host_of_uri(self, uri: str) -> dict[str, str]:
        return next(h for h in self.hosts.values() if f"@{h['ip']}/" in uri)

    def console_log(self, uri: str, name: str) -> Path:
        return Path(self.host_of_uri(uri)["srv_root_view"]) / "console" / f"{name}.log"

    def wait_for_marker(self, uri: str, name: str, timeout: float = 90.0) -> str:
        """The guest's boot marker line from its serial log (remove the log first to see a new boot's)."""
        log = self.console_log(uri, name)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if log.exists():
                text = log.read_text(errors="replace")
                found = MARKER.search(text)
                if found:
                    return found.group(0)
            time.sleep(0.5)
        raise AssertionError(f"no boot marker from {name} in {log} after {timeout}s")


def _lab_up() -> bool:
    if not (LAB_DIR / "hosts.json").exists():
        return False
    proc = subprocess.run([str(ROOT / "scripts" / "lab"), "status"], capture_output=True, timeout=120, check=False)
    return proc.returncode == 0


@pytest.fixture(scope="session")
def lab() -> Iterator[Lab]:
    """The lab, held exclusively: test sessions that use its hosts run one after another, never interleaved."""
    require_service("the libvirt lab (namespace hosts with sshd + libvirtd)", _lab_up(), "scripts/lab up")
    data = json.loads((LAB_DIR / "hosts.json").read_text())
    with open(LAB_DIR / "tests.lock", "w") as lock:  # noqa: PTH123
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield Lab(data["hosts"])


def dcctl(
    *args: str, env: dict[str, str] | None = None, check: bool = False, timeout: float = 600
) -> subprocess.CompletedProcess[str]:
    """Run the real CLI in a child process (as an engineer or a CI job would)."""
    proc = subprocess.run(
        [sys.executable, "-m", "dcctl", *args],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env={**os.environ, **(env or {})},
        timeout=timeout,
        check=False,
    )
    if check and proc.returncode != 0:
        raise AssertionError(f"dcctl {' '.join(args)} exited {proc.returncode}\n{proc.stdout}\n{proc.stderr}")
    return proc
