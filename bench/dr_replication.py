"""Benchmark: changed-block replication on the lab (city data center → provincial DR site), against its peers.

One run, on the same 1 GiB data disk of a running guest:
  1. fill the disk (1 GiB of random data) and replicate it (full point);
  2. change 10 % of it (1 MiB in every 10) and replicate again (incremental point), measuring
     - bytes on the wire (both directions of the DR host's link, kernel counters) ÷ bytes changed (goal ≤ 1.05),
     - wall time against rsync over ssh of the same image to a destination with the previous version (goal ≤ 0.25×),
     - shipping throughput against a raw `ssh … cat > /dev/null` stream from the same host (goal ≥ 70 %);
  3. drill the 2-server workload at the DR site (goal: RTO under 60 s under TCG).
Needs the lab (scripts/lab up; the OpenStack lab too when inventories/lab has an OpenStack data center). Cleans up.
"""

from __future__ import annotations

import fcntl
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(ROOT))
from dcctl.dr import service  # noqa: E402
from dcctl.dr.ssh import Ssh, SshTarget, q  # noqa: E402
from dcctl.engine.session import Session  # noqa: E402
from tests.integration.guest import shell  # noqa: E402

LAB = Path("/var/lib/dcctl-lab")
WEB1 = "dcctl-kangping-portal-web-1"
MiB = 2**20


def wire_bytes() -> int:
    stats = Path("/sys/class/net/dclab-dr/statistics")
    return int((stats / "rx_bytes").read_text()) + int((stats / "tx_bytes").read_text())


def guest(command: str) -> str:
    return shell(LAB / "hosts" / "city" / "srv" / "console" / f"{WEB1}.ttyS1.sock", command, timeout=600)


def main() -> None:
    if shutil.which("rsync") is None:
        subprocess.run(["apt-get", "install", "-y", "-qq", "--no-install-recommends", "rsync"], check=True)
    work = Path(tempfile.mkdtemp(prefix="dcctl-bench-dr-"))
    shutil.copytree(ROOT / "inventories" / "lab", work / "inv", ignore=shutil.ignore_patterns(".dcctl", "dalian.yaml"))
    state = work / "state.db"
    with Session(work / "inv", state_path=state, targets=["kangping-ext"]) as s:
        s.apply(s.plan())
    for _ in range(120):
        log = LAB / "hosts" / "city" / "srv" / "console" / f"{WEB1}.log"
        if log.exists() and "DCCTL-BOOT-OK" in log.read_text(errors="replace"):
            break
        time.sleep(1)
    city = SshTarget.from_uri(open_uri("sy-kvm", work))
    dr = SshTarget.from_uri(open_uri("dr-kvm", work))
    disk = f"/srv/dcctl/images/{WEB1}-data.qcow2"
    try:
        print("filling the 1 GiB data disk in the guest …", flush=True)
        guest("dd if=/dev/urandom of=/dev/vdb bs=1M count=1024 conv=fsync 2>/dev/null")
        with Session(work / "inv", state_path=state) as s:
            full = service.replicate(s, ["kangping-portal"])[0]
        f = next(x for x in full.servers if x.server == WEB1)
        print(f"full point: {f.shipped_bytes / MiB:.0f} MiB shipped in {f.ship_seconds:.1f} s")
        with Ssh(city) as src:  # rsync's destination holds the previous version, as the DR replica does
            remote = " ".join(q(a) for a in dr.openssh_command(destination=False))
            src.run(
                f"rsync -a --inplace -e {q(remote)} {q(disk)} {dr.user}@{dr.host}:/srv/dcctl/bench-rsync.qcow2",
                timeout=900,
            )
        print("changing 10 % of the disk (1 MiB in every 10) …", flush=True)
        guest(
            "for i in $(seq 0 10 1023); do dd if=/dev/urandom of=/dev/vdb bs=1M seek=$i count=1 conv=notrunc "
            "2>/dev/null; done; sync"
        )
        before = wire_bytes()
        started = time.monotonic()
        with Session(work / "inv", state_path=state) as s:
            inc = service.replicate(s, ["kangping-portal"])[0]
        dcctl_wall = time.monotonic() - started
        on_wire = wire_bytes() - before
        i = next(x for x in inc.servers if x.server == WEB1)
        changed = sum(x.changed_bytes for x in inc.servers)
        with Ssh(city) as src:
            remote = " ".join(q(a) for a in dr.openssh_command(destination=False))
            t = time.monotonic()
            src.run(
                f"rsync -a --inplace --no-whole-file -e {q(remote)} {q(disk)} "
                f"{dr.user}@{dr.host}:/srv/dcctl/bench-rsync.qcow2",
                timeout=900,
            )
            rsync_wall = time.monotonic() - t
            ssh = " ".join(q(a) for a in dr.openssh_command())
            t = time.monotonic()
            stream = f"dd if=/dev/zero bs=4M count=256 status=none | {ssh} 'cat > /dev/null'"
            src.run(f"bash -c {q(stream)}", timeout=900)
            raw_rate = 1024 * MiB / (time.monotonic() - t)
            src.run(f"{' '.join(q(a) for a in dr.openssh_command())} rm -f /srv/dcctl/bench-rsync.qcow2")
        ship_rate = f.shipped_bytes / f.ship_seconds
        with Session(work / "inv", state_path=state) as s:
            drill = service.recover(s, "kangping-portal", "drill")
        print()
        print(f"incremental point: {changed / MiB:.1f} MiB changed, {i.shipped_bytes / MiB:.1f} MiB shipped (web-1)")
        ratio = on_wire / changed
        print(
            f"  bytes on the wire ÷ bytes changed   {ratio:5.3f}   goal ≤ 1.05  {'met' if ratio <= 1.05 else 'NOT met'}"
            f"   ({on_wire / MiB:.1f} MiB counted on the DR host's link, both directions, all of the run)"
        )
        rel = dcctl_wall / rsync_wall
        print(
            f"  wall time dcctl ÷ rsync over ssh    {rel:5.3f}   goal ≤ 0.25  {'met' if rel <= 0.25 else 'NOT met'}"
            f"   (dcctl {dcctl_wall:.1f} s for the whole run, 2 servers; rsync {rsync_wall:.1f} s, 1 disk)"
        )
        share = ship_rate / raw_rate
        print(
            f"  shipping ÷ raw ssh stream           {share:5.2f}   goal ≥ 0.70  {'met' if share >= 0.7 else 'NOT met'}"
            f"   (dcctl {ship_rate / 1e6:.0f} MB/s over the full point; ssh cat {raw_rate / 1e6:.0f} MB/s)"
        )
        rto = drill.rto_seconds or float("nan")
        verdict = "met" if drill.ok and rto < 60 else "NOT met"
        print(f"  drill RTO, 2 servers (TCG)          {rto:5.1f} s goal < 60 s  {verdict}")
    finally:
        with Session(work / "inv", state_path=state, targets=["kangping-ext"]) as s:
            from dcctl.plan.model import Mode

            s.apply(s.plan(Mode.DESTROY), command="destroy")
        subprocess.run(["rm", "-rf", str(LAB / "hosts" / "dr" / "srv" / "dr" / "kangping-portal")], check=False)
        shutil.rmtree(work, ignore_errors=True)


def open_uri(backend: str, work: Path) -> str:
    import yaml

    for f in (work / "inv").glob("*.yaml"):
        for dc in yaml.safe_load(f.read_text()).get("data_centers", []):
            for b in dc.get("backends", []):
                if b["id"] == backend:
                    return str(b["uri"])
    raise KeyError(backend)


if __name__ == "__main__":
    os.environ.setdefault("OS_CLIENT_CONFIG_FILE", "/var/lib/dcctl-oslab/clouds.yaml")
    with (LAB / "tests.lock").open("w") as lock:  # the lab's hosts are shared with the integration tests
        fcntl.flock(lock, fcntl.LOCK_EX)
        main()
