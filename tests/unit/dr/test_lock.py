"""One DR run per workload at a time: while a live run holds a workload's DR lock, another replicate or drill of
it is refused, naming the holder, before it touches a host. The lab's inventory, its hosts swapped for libvirt's
test driver (in-process, empty): nothing here reaches the lab, which CI runs beside the unit tests."""

from __future__ import annotations

import os
import re
import shutil
from pathlib import Path

import pytest

from dcctl.cli import exitcodes
from dcctl.cli.app import main
from dcctl.state import open_store
from dcctl.state.store import Holder
from tests.conftest import ROOT


@pytest.fixture
def lab(tmp_path: Path) -> Path:
    inv = tmp_path / "inv"
    shutil.copytree(ROOT / "inventories" / "lab", inv, ignore=shutil.ignore_patterns(".dcctl", "dalian.yaml"))
    for f in inv.glob("*.yaml"):  # one test-driver "host" per lab host: the zones' backends stay apart
        f.write_text(
            re.sub(r'uri: "qemu\+libssh://root@([0-9.]+)/[^"]*"', r'uri: "test:///default?host=\1"', f.read_text())
        )
    return inv


def test_a_second_dr_run_of_a_workload_is_refused_naming_the_holder(
    lab: Path, state_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    store = open_store(lab, state_url)
    alive = Holder("alice", Holder.me("x").host, os.getppid(), "dr run", "2026-11-27T06:00:00+00:00")
    store.lock(["dr:kangping-portal"], alive, None)
    store.close()
    for command in (
        ["dr", "replicate", str(lab), "--state", state_url],
        ["dr", "drill", "kangping-portal", "-i", str(lab), "--state", state_url],
    ):
        assert main(command) == exitcodes.ERROR
        said = capsys.readouterr()
        assert "DR work on workload 'kangping-portal' is locked by alice@" in said.out + said.err
        assert f"pid {os.getppid()}" in said.out + said.err


def test_a_dr_run_lets_go_of_its_lock_and_takes_over_a_dead_ones(
    lab: Path, state_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    store = open_store(lab, state_url)
    dead = Holder("bob", Holder.me("x").host, 2**22 + 17, "dr replicate", "2026-11-27T06:00:00+00:00")
    store.lock(["dr:kangping-portal"], dead, None)
    store.close()
    # the test driver has none of the workload's servers: the run fails after it took the dead run's lock
    assert main(["dr", "replicate", str(lab), "--state", state_url]) == exitcodes.ERROR
    said = capsys.readouterr()
    assert "has no server running" in said.out + said.err and "held by a dead run" in said.out + said.err
    store = open_store(lab, state_url)
    try:
        assert "dr:kangping-portal" not in store.locks()
    finally:
        store.close()
