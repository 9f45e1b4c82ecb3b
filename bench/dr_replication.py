"""Benchmark: changed-block replication on the lab (city data center → provincial DR site), against its peers.

One run, on the same 1 GiB data disk of a running guest of the workload kangping-portal, first with 1 server (the
disk's), then scaled to its 2:
  1. fill the disk (1 GiB of random data) and replicate the workload (full point), then twice more after rewriting
     the whole disk — shipping throughput: the rate of each point's largest stream (the 1 GiB disk's), median of 3,
     against a raw `ssh … cat > /dev/null` stream of 1 GiB from the same host over an open connection (as dcctl's),
     the link's limit, run twice after each point, median of 6 (goal ≥ 70 %; this VM's throughput swings, so both
     sides are sampled, interleaved);
  2. change 10 % of the disk (1 MiB in every 10) and replicate again (incremental point), twice:
     - *warm*: right after the guest's writes (the images are in the hosts' page cache),
     - *cold*: after dropping the page cache (what a disk larger than memory looks like to both tools),
     each measuring bytes on the wire (both directions of the DR host's link, kernel counters) ÷ bytes changed
     (goal ≤ 1.05) and wall time against rsync over ssh of the same image to a destination holding the previous
     version, under the same cache state (goal ≤ 0.25×). dcctl's time is the whole replication of the image's
     server (observe, its 2 disks, verified and chained); rsync's is the one image;
  3. scale the workload to its 2 servers, replicate, and change 10 % of the disk again: the warm wall time of the
     whole 2-server workload (4 disks) against the warm rsync of step 2, for context (the goal is step 2's);
  4. drill the 2-server workload at the DR site (goal: RTO under 60 s under TCG).
Needs the lab (scripts/lab up). Cleans up. `python bench/dr_replication.py [auto|memory|disk]`: where the city's
hosts stage points (default: the inventory's, auto).
"""

from __future__ import annotations

import fcntl
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(ROOT))
from dcctl.dr import service  # noqa: E402
from dcctl.dr.replicate import ReplicationResult, Replicator, Shipment  # noqa: E402
from dcctl.dr.ssh import CONTROL_DIR, Ssh, SshTarget, q  # noqa: E402
from dcctl.dr.transfer import Sent  # noqa: E402
from dcctl.engine.session import Session  # noqa: E402
from tests.integration.guest import shell  # noqa: E402

LAB = Path("/var/lib/dcctl-lab")
WEB1 = "dcctl-kangping-portal-web-1"
MiB = 2**20
#: 1 GiB points whose largest stream is measured (the full one, then after rewriting the whole disk), each followed
#: by two raw streams
SAMPLES = 3


def wire_bytes() -> int:
    stats = Path("/sys/class/net/dclab-dr/statistics")
    return int((stats / "rx_bytes").read_text()) + int((stats / "tx_bytes").read_text())


def guest(command: str) -> str:
    return shell(LAB / "hosts" / "city" / "srv" / "console" / f"{WEB1}.ttyS1.sock", command, timeout=600)


def change_a_tenth(round_: int) -> None:
    """1 MiB in every 10 of the data disk, rewritten in the guest (``round_`` shifts which)."""
    guest(
        f"for i in $(seq {round_ * 3} 10 1023); do dd if=/dev/urandom of=/dev/vdb bs=1M seek=$i count=1 "
        "conv=notrunc 2>/dev/null; done; sync"
    )


def scale(work: Path, state: Path, servers: int) -> None:
    """The workload's server count in the bench's inventory, applied; waits for every server's boot marker."""
    inv = work / "inv" / "shenyang.yaml"
    text = re.sub(r"\{name: web, count: \d+,", f"{{name: web, count: {servers},", inv.read_text())
    # the bench takes 7 points of the disk: with the lab's 6, the last run would also merge the oldest two (1 GiB
    # each, ~2 s); the figures are of replication (a steady-state merge of one incremental: ~0.5 s, bench/RESULTS.md)
    inv.write_text(text.replace("retention: {points: 6,", "retention: {points: 12,"))
    with Session(work / "inv", state_path=state, targets=["kangping-ext"]) as s:
        s.apply(s.plan())
    for n in range(1, servers + 1):
        log = LAB / "hosts" / "city" / "srv" / "console" / f"dcctl-kangping-portal-web-{n}.log"
        for _ in range(120):
            if log.exists() and "DCCTL-BOOT-OK" in log.read_text(errors="replace"):
                break
            time.sleep(1)


def replicate_once(work: Path, state: Path) -> tuple[ReplicationResult, float, int]:
    """One replication of the workload: its result, seconds, and bytes on the DR host's link."""
    before = wire_bytes()
    started = time.monotonic()
    with Session(work / "inv", state_path=state) as s:
        point = service.replicate(s, ["kangping-portal"])[0]
    wall = time.monotonic() - started
    assert point.ok, [x.error for x in point.servers]
    return point, wall, wire_bytes() - before


class StreamClock:
    """Records when each of dcctl's streams ran (bench instrumentation): streams run side by side, so throughput is
    the bytes of all of them over the time any of them was in flight."""

    def __init__(self) -> None:
        self.spans: list[tuple[float, float, int]] = []
        original = Replicator._stream

        def timed(replicator: Replicator, *args: Any, **kwargs: Any) -> tuple[Sent, Shipment]:
            started = time.monotonic()
            sent, shipment = original(replicator, *args, **kwargs)
            self.spans.append((started, time.monotonic(), shipment.bytes))
            return sent, shipment

        Replicator._stream = timed  # type: ignore[method-assign]

    def rates(self) -> tuple[float, float]:
        """(bytes per second of the largest stream, of all streams over the time any ran); then forget them. The
        first is the transfer path against the raw stream; the second adds what else the 2-core box did meanwhile
        (the other server's backup job, the other disks' streams)."""
        busy, until = 0.0, 0.0
        for start, end, _ in sorted(self.spans):
            if end > until:
                busy += end - max(start, until)
                until = end
        total = sum(b for _, _, b in self.spans)
        start, end, largest = max(self.spans, key=lambda span: span[2])
        self.spans.clear()
        return largest / (end - start), total / busy


def drop_caches() -> None:
    """The lab's hosts share this kernel: one drop empties the page cache of all of them."""
    subprocess.run(["sync"], check=True)
    Path("/proc/sys/vm/drop_caches").write_text("3\n")


def main(staging: str = "auto") -> None:
    if shutil.which("rsync") is None:
        subprocess.run(["apt-get", "install", "-y", "-qq", "--no-install-recommends", "rsync"], check=True)
    work = Path(tempfile.mkdtemp(prefix="dcctl-bench-dr-"))
    shutil.copytree(ROOT / "inventories" / "lab", work / "inv", ignore=shutil.ignore_patterns(".dcctl", "dalian.yaml"))
    if staging != "auto":  # the city hosts' staging place, fixed (the inventory's default: auto)
        city_inv = work / "inv" / "shenyang.yaml"
        city_inv.write_text(
            city_inv.read_text().replace(
                "dr_path: /srv/dcctl/dr\n", f"dr_path: /srv/dcctl/dr\n        dr_staging: {staging}\n"
            )
        )
    state = work / "state.db"
    clock = StreamClock()
    scale(work, state, 1)
    city = SshTarget.from_uri(open_uri("sy-kvm", work))
    dr = SshTarget.from_uri(open_uri("dr-kvm", work))
    disk = f"/srv/dcctl/images/{WEB1}-data.qcow2"
    remote = " ".join(q(a) for a in dr.openssh_command(destination=False))
    rsync = (
        f"rsync -a --inplace --no-whole-file -e {q(remote)} {q(disk)} {dr.user}@{dr.host}:/srv/dcctl/bench-rsync.qcow2"
    )
    rows: list[tuple[str, float, float, float]] = []  # (cache, wire ÷ changed, dcctl s, rsync s)
    try:
        ship_rates: list[float] = []
        raw_rates: list[float] = []
        ssh_dr = " ".join(q(a) for a in dr.openssh_command())
        # over an open connection, as dcctl's streams (theirs opens while QEMU's backup runs): the link, not a handshake
        ssh_open = " ".join(q(a) for a in dr.openssh_command(shared_from=city.host))
        raw = f"dd if=/dev/zero bs=4M count=256 status=none | {ssh_open} 'cat > /dev/null'"
        for sample in range(SAMPLES):  # the VM's throughput swings (raw: 580-840 MB/s): both sides, interleaved
            print(
                f"staging on the city's hosts: {staging}; writing the whole 1 GiB data disk in the guest …", flush=True
            )
            guest("dd if=/dev/urandom of=/dev/vdb bs=1M count=1024 conv=fsync 2>/dev/null")
            point, _, _ = replicate_once(work, state)
            ship_rate, all_rate = clock.rates()
            ship_rates.append(ship_rate)
            shipped = sum(x.shipped_bytes for x in point.servers)
            with Ssh(city) as src:
                src.run(f"mkdir -p -m 0700 {CONTROL_DIR} && {ssh_open} true")
                for _ in range(2):
                    t = time.monotonic()
                    src.run(f"bash -c {q(raw)}", timeout=900)
                    raw_rates.append(1024 * MiB / (time.monotonic() - t))
            print(
                f"{'full' if sample == 0 else 'whole-disk'} point: {shipped / MiB:.0f} MiB shipped; its largest stream "
                f"{ship_rate / 1e6:.0f} MB/s, all streams {all_rate / 1e6:.0f} MB/s over the time any ran; "
                f"raw ssh {raw_rates[-2] / 1e6:.0f}, {raw_rates[-1] / 1e6:.0f} MB/s"
            )
        ship_rate, raw_rate = statistics.median(ship_rates), statistics.median(raw_rates)
        with Ssh(city) as src:  # rsync's destination holds the previous version, as the DR replica does
            src.run(rsync.replace(" --no-whole-file", ""), timeout=900)
        for round_, cache in enumerate(("warm", "cold")):
            print(f"changing 10 % of the disk (1 MiB in every 10), {cache} page cache …", flush=True)
            change_a_tenth(round_)
            if cache == "cold":
                drop_caches()
            inc, dcctl_wall, on_wire = replicate_once(work, state)
            changed = sum(x.changed_bytes for x in inc.servers)
            clock.rates()
            if cache == "cold":
                drop_caches()
            with Ssh(city) as src:
                t = time.monotonic()
                src.run(rsync, timeout=900)
                rsync_wall = time.monotonic() - t
            rows.append((cache, on_wire / changed, dcctl_wall, rsync_wall))
            print(
                f"  {changed / MiB:.1f} MiB changed, {on_wire / MiB:.1f} MiB on the DR host's link; "
                f"dcctl {dcctl_wall:.2f} s, rsync {rsync_wall:.2f} s",
                flush=True,
            )
        with Ssh(city) as src:
            src.run(f"{ssh_dr} rm -f /srv/dcctl/bench-rsync.qcow2")
        print("scaling the workload to its 2 servers (4 disks) …", flush=True)
        scale(work, state, 2)
        replicate_once(work, state)  # the new server's full point
        print("changing 10 % of the disk, warm page cache, replicating the 2-server workload …", flush=True)
        change_a_tenth(2)
        _, whole_wall, _ = replicate_once(work, state)
        clock.rates()
        with Session(work / "inv", state_path=state) as s:
            drill = service.recover(s, "kangping-portal", "drill")
        print()
        for cache, ratio, dcctl_wall, rsync_wall in rows:
            print(
                f"  [{cache}] bytes on the wire ÷ changed   {ratio:5.3f}   goal ≤ 1.05  "
                f"{'met' if ratio <= 1.05 else 'NOT met'}   (DR host's link, both directions, all of the run)"
            )
            rel = dcctl_wall / rsync_wall
            print(
                f"  [{cache}] wall time dcctl ÷ rsync       {rel:5.3f}   goal ≤ 0.25  "
                f"{'met' if rel <= 0.25 else 'NOT met'}   (dcctl {dcctl_wall:.2f} s: the image's server, 2 disks; "
                f"rsync {rsync_wall:.2f} s: the image)"
            )
        warm_rsync = rows[0][3]
        print(
            f"  [warm] the 2-server workload ÷ rsync {whole_wall / warm_rsync:5.3f}   (context, no goal: dcctl "
            f"{whole_wall:.2f} s for 2 servers, 4 disks, one point; rsync's {warm_rsync:.2f} s above, one image)"
        )
        share = ship_rate / raw_rate
        print(
            f"  shipping ÷ raw ssh stream              {share:5.2f}   goal ≥ 0.70  "
            f"{'met' if share >= 0.7 else 'NOT met'}"
            f"   (dcctl {ship_rate / 1e6:.0f} MB/s: the largest stream of a 1 GiB point, median of {SAMPLES}; "
            f"ssh cat {raw_rate / 1e6:.0f} MB/s, median of {2 * SAMPLES})"
        )
        rto = drill.rto_seconds or float("nan")
        verdict = "met" if drill.ok and rto < 60 else "NOT met"
        print(f"  drill RTO, 2 servers (TCG)             {rto:5.1f} s goal < 60 s  {verdict}")
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
        main(sys.argv[1] if len(sys.argv) > 1 else "auto")
