"""Recovery at the DR site: non-disruptive drills, failover (planned or not) and failback — each timed (RTO).

Replicas are never booted directly: a drill or failover boots copy-on-write overlays on top of the newest good point,
so the replica chain stays as it was shipped. A drill runs in an isolated network of its own and is torn down; a
failover keeps its overlays, and a failback carries exactly those overlays (what changed at the DR site) back onto the
source disks before the source servers start again.
"""

from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass, field
from pathlib import PurePosixPath
from typing import Any

from dcctl.dr import catalog
from dcctl.dr.replicate import Progress, _quiet, staging_path
from dcctl.dr.ssh import Ssh, SshTarget, q
from dcctl.dr.transfer import receive_command, send
from dcctl.errors import DcctlError
from dcctl.inventory import Inventory
from dcctl.inventory.model import LibvirtBackend, Workload
from dcctl.placement import servers as inventory_servers
from dcctl.providers.libvirt import mapping
from dcctl.providers.libvirt.dr import DrHost
from dcctl.resources import NAME_PREFIX, DesiredResource
from dcctl.state.store import Store, now

MARKER = "DCCTL-BOOT-OK"


@dataclass
class RecoveryResult:
    workload: str
    kind: str  # drill | failover | failback
    point_set: str
    ok: bool
    rto_seconds: float | None = None
    booted: dict[str, str] = field(default_factory=dict)  # server → its boot marker line
    error: str = ""
    hint: str = ""

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


def _short(name: str) -> str:
    return name.removeprefix(NAME_PREFIX)


class Recovery:
    def __init__(self, inv: Inventory, store: Store, workload: Workload, *, progress: Progress = _quiet) -> None:
        self.inv = inv
        self.store = store
        self.workload = workload
        self.progress = progress
        self.province = inv.province.id if inv.province else ""

    # ------------------------------------------------------------------------------------------------ shared
    def _point(self) -> catalog.Point:
        point = catalog.last_good_point(self.store, self.workload.id)
        if point is None:
            raise DcctlError(
                f"workload '{self.workload.id}' has no good point at the DR site",
                hint=f"replicate it first: dcctl dr replicate --workload {self.workload.id}",
            )
        return point

    def _target(self, point: catalog.Point) -> LibvirtBackend:
        backend = self.inv.backends[point.disks[0].target_backend][1]
        assert isinstance(backend, LibvirtBackend)
        return backend

    def _server_spec(self, server_name: str, target: LibvirtBackend) -> dict[str, Any]:
        """The server's definition from the inventory (vCPU, RAM, boot), as it would run on ``target``."""
        for s in inventory_servers(self.inv, {self.workload.id}):
            if mapping.server_name(s) == server_name:
                desired = next(d for d in mapping.desired_for(self.inv, target, [s]) if d.kind == "server")
                return dict(desired.spec)
        raise DcctlError(f"server {server_name} of '{self.workload.id}' is no longer in the inventory")

    def _tops(self, point: catalog.Point) -> dict[str, dict[str, str]]:
        """server → disk → the replica file holding the point (the chain's top at that point)."""
        out: dict[str, dict[str, str]] = {}
        for d in point.disks:
            out.setdefault(d.server, {})[d.disk] = d.target_path
        return out

    def _network(self, host: DrHost, name: str, key: str, target: LibvirtBackend, zone: str) -> None:
        bridge = "dc" + hashlib.sha256(f"{self.province}/{key}".encode()).hexdigest()[:12]
        spec = {"mode": "isolated", "cidr": "", "zone": zone, "bridge": bridge, "gateway": "", "prefix": 0}
        host.define_network(mapping.render_xml(DesiredResource("network", key, target.id, name, spec), self.province))

    def _boot(
        self,
        host: DrHost,
        target: LibvirtBackend,
        server: str,
        name: str,
        key: str,
        disks: dict[str, str],
        networks: list[str],
    ) -> None:
        spec = self._server_spec(server, target)
        spec["disks"] = [{"name": PurePosixPath(p).name, "path": p} for _, p in sorted(disks.items())]
        spec["networks"] = networks
        spec["console_path"] = target.console_path
        spec["virt_type"] = mapping.virt_type(target)
        if spec.get("boot"):
            spec["boot"] = {
                **spec["boot"],
                "cmdline": spec["boot"]["cmdline"].replace(f"dcctl.name={server}", f"dcctl.name={name}"),
            }
        host.define(mapping.render_xml(DesiredResource("server", key, target.id, name, spec), self.province))

    def _wait_booted(self, ssh: Ssh, target: LibvirtBackend, names: list[str], deadline: float) -> dict[str, str]:
        """Each guest's boot marker from its serial log on the host (the proof it booted, not just started)."""
        if target.console_path is None:
            raise DcctlError(
                f"backend '{target.id}' has no console_path: dcctl cannot see the guests' boot",
                hint="set console_path on the DR backend so drills can prove a boot",
            )
        seen: dict[str, str] = {}
        while len(seen) < len(names):
            for name in names:
                if name in seen:
                    continue
                log = f"{target.console_path.rstrip('/')}/{name}.log"
                _, out, _ = ssh.run(f"grep -m1 -h {q(MARKER)} {q(log)} 2>/dev/null || true")
                if out.strip():
                    seen[name] = out.strip()
            if len(seen) < len(names):
                if time.monotonic() > deadline:
                    missing = ", ".join(n for n in names if n not in seen)
                    raise DcctlError(
                        f"no boot marker from {missing} in time", hint="see the serial logs on the DR host"
                    )
                time.sleep(0.5)
        return seen

    # --------------------------------------------------------------------------------------------------- drill
    def drill(self, timeout: float = 300.0) -> RecoveryResult:
        """Boot the newest good point in an isolated network at the DR site, check the boot, time it, tear down."""
        started, started_at = time.monotonic(), now()
        point = self._point()
        target = self._target(point)
        result = RecoveryResult(self.workload.id, "drill", point.point_set, ok=False)
        tenancy = self.inv.workloads[self.workload.id][0]
        net_name = f"{NAME_PREFIX}drill-{self.workload.id}"[:60]
        names: dict[str, str] = {}
        overlays: list[str] = []
        with Ssh(SshTarget.from_uri(target.uri)) as ssh, DrHost(target) as host:
            try:
                self._network(host, net_name, f"dr:{self.workload.id}/drill/network", target, tenancy.zone.value)
                for server, disks in sorted(self._tops(point).items()):
                    name = f"{NAME_PREFIX}drill-{_short(server)}"
                    layered = {}
                    for disk, top in disks.items():
                        overlay = str(PurePosixPath(top).parent / f"drill-{point.point_set}.qcow2")
                        ssh.run(f"qemu-img create -q -f qcow2 -F qcow2 -b {q(PurePosixPath(top).name)} {q(overlay)}")
                        overlays.append(overlay)
                        layered[disk] = overlay
                    if target.console_path:
                        ssh.run(f"rm -f {q(f'{target.console_path}/{name}.log')}")
                    self._boot(host, target, server, name, f"dr:{self.workload.id}/drill/{server}", layered, [net_name])
                    names[server] = name
                self.progress(f"drill: {len(names)} servers booting at {target.id} from point {point.point_set}")
                booted = self._wait_booted(ssh, target, list(names.values()), time.monotonic() + timeout)
                result.rto_seconds = round(time.monotonic() - started, 2)
                result.booted = {s: booted[n] for s, n in names.items()}
                result.ok = True
            except DcctlError as exc:
                result.error, result.hint = exc.message, exc.hint
            finally:
                for name in names.values():
                    host.remove(name)
                host.remove_network(net_name)
                if overlays:
                    ssh.run("rm -f " + " ".join(q(o) for o in overlays), check=False)
        catalog.record_drill(
            self.store,
            self.workload.id,
            "drill",
            point.point_set,
            started_at,
            result.rto_seconds,
            result.ok,
            {"target_backend": target.id, "booted": result.booted, "error": result.error},
        )
        return result

    # ------------------------------------------------------------------------------------------------ failover
    def failover(self, sources: dict[str, LibvirtBackend], *, planned: bool, timeout: float = 300.0) -> RecoveryResult:
        """Run the workload at the DR site. Planned: the source servers are paused, a last point is replicated,
        then they are stopped (no write is lost). Unplanned (source unreachable): the newest good point is used."""
        from dcctl.dr.replicate import ProtectedServer, Replicator, dr_backend_for, new_point_set

        started, started_at = time.monotonic(), now()
        tenancy = self.inv.workloads[self.workload.id][0]
        if catalog.active_site(self.store, self.workload.id) == "dr":
            raise DcctlError(f"workload '{self.workload.id}' already runs at the DR site", hint="dcctl dr failback")
        if planned:
            target = dr_backend_for(self.inv, tenancy, self.workload)
            replicator = Replicator(self.store, self.workload, target, progress=self.progress)
            point_set = new_point_set()
            for server, source in sorted(sources.items()):
                with DrHost(source) as host:
                    host.suspend(server)
                self.progress(f"failover: {server} paused; replicating its last point")
                res = replicator.replicate(ProtectedServer(self.workload.id, "", server, source), point_set)
                if not res.ok:
                    with DrHost(source) as host:
                        host.resume(server)
                    raise DcctlError(f"failover stopped: the last point of {server} failed: {res.error}", hint=res.hint)
                with DrHost(source) as host:
                    host.stop(server)
        point = self._point()
        target = self._target(point)
        result = RecoveryResult(self.workload.id, "failover", point.point_set, ok=False)
        with Ssh(SshTarget.from_uri(target.uri)) as ssh, DrHost(target) as host:
            networks = []
            for net in tenancy.networks:
                name = f"{NAME_PREFIX}dr-{tenancy.id}-{net.id}"[:60]
                self._network(host, name, f"dr:{self.workload.id}/network/{net.id}", target, tenancy.zone.value)
                networks.append(name)
            names = {}
            for server, disks in sorted(self._tops(point).items()):
                name = f"{NAME_PREFIX}dr-{_short(server)}"
                layered = {}
                for disk, top in disks.items():
                    overlay = str(PurePosixPath(top).parent / "failover.qcow2")
                    ssh.run(f"qemu-img create -q -f qcow2 -F qcow2 -b {q(PurePosixPath(top).name)} {q(overlay)}")
                    layered[disk] = overlay
                if target.console_path:
                    ssh.run(f"rm -f {q(f'{target.console_path}/{name}.log')}")
                self._boot(host, target, server, name, f"dr:{self.workload.id}/failover/{server}", layered, networks)
                names[server] = name
            try:
                booted = self._wait_booted(ssh, target, list(names.values()), time.monotonic() + timeout)
                result.booted = {s: booted[n] for s, n in names.items()}
                result.rto_seconds = round(time.monotonic() - started, 2)
                result.ok = True
            except DcctlError as exc:
                result.error, result.hint = exc.message, exc.hint
        if result.ok:
            catalog.set_active_site(
                self.store, self.workload.id, "dr", "planned failover" if planned else "unplanned failover"
            )
        catalog.record_drill(
            self.store,
            self.workload.id,
            "failover",
            point.point_set,
            started_at,
            result.rto_seconds,
            result.ok,
            {"planned": planned, "target_backend": target.id, "booted": result.booted, "error": result.error},
        )
        return result

    # ------------------------------------------------------------------------------------------------ failback
    def failback(self, sources: dict[str, LibvirtBackend], timeout: float = 300.0) -> RecoveryResult:
        """Carry what changed at the DR site back to the source disks, start the source servers, remove the DR copy."""
        started, started_at = time.monotonic(), now()
        if catalog.active_site(self.store, self.workload.id) != "dr":
            raise DcctlError(f"workload '{self.workload.id}' does not run at the DR site", hint="nothing to fail back")
        point = self._point()
        target = self._target(point)
        result = RecoveryResult(self.workload.id, "failback", point.point_set, ok=False)
        tenancy = self.inv.workloads[self.workload.id][0]
        target_ssh = SshTarget.from_uri(target.uri)
        with Ssh(target_ssh) as dst, DrHost(target) as dr_host:
            for server, disks in sorted(self._tops(point).items()):
                source = sources[server]
                dr_host.stop(f"{NAME_PREFIX}dr-{_short(server)}")
                source_ssh = SshTarget.from_uri(source.uri)
                with Ssh(source_ssh) as src, DrHost(source) as src_host:
                    live = {d.target: d.path for d in src_host.disks(server)}
                    for disk, top in sorted(disks.items()):
                        overlay = str(PurePosixPath(top).parent / "failover.qcow2")
                        staged = staging_path(source, server, disk, f"failback-{point.point_set}")
                        self.progress(f"failback: {server}/{disk}: carrying the DR site's writes back")
                        src.run(f"rm -f {q(staged)}")  # left by an interrupted failback: this one starts over
                        sent = send(
                            dst,
                            overlay,
                            0,
                            source_ssh.openssh_command(),
                            receive_command(staged),
                            timeout=3600,
                        )
                        if not sent.ok:
                            why = "checksum mismatch" if sent.received else sent.error[-200:] or f"exit {sent.rc}"
                            raise DcctlError(f"failback of {server}/{disk}: {why}", hint="run failback again")
                        src.run(
                            f"qemu-img rebase -u -F qcow2 -b {q(live[disk])} {q(staged)} && "
                            f"qemu-img commit -q {q(staged)} && rm -f {q(staged)}"
                        )
                    # the checkpoints no longer describe the disks: drop their bitmaps, then their metadata
                    checkpoints = src_host.checkpoints(server)
                    for path in live.values():
                        for checkpoint in checkpoints:
                            src.run(f"qemu-img bitmap --remove {q(path)} {q(checkpoint)} 2>/dev/null || true")
                    for checkpoint in checkpoints:
                        src_host.delete_checkpoint(server, checkpoint, metadata_only=True)
                    if source.console_path:
                        src.run(f"rm -f {q(f'{source.console_path}/{server}.log')}")
                    src_host.start(server)
            booted: dict[str, str] = {}
            for server in sorted(self._tops(point)):
                source = sources[server]
                with Ssh(SshTarget.from_uri(source.uri)) as src:
                    booted.update(self._wait_booted(src, source, [server], time.monotonic() + timeout))
            result.booted = booted
            result.rto_seconds = round(time.monotonic() - started, 2)
            for server, disks in self._tops(point).items():
                dr_host.remove(f"{NAME_PREFIX}dr-{_short(server)}")
                dst.run("rm -f " + " ".join(q(str(PurePosixPath(t).parent / "failover.qcow2")) for t in disks.values()))
            for net in tenancy.networks:
                dr_host.remove_network(f"{NAME_PREFIX}dr-{tenancy.id}-{net.id}"[:60])
            result.ok = True
        catalog.set_active_site(self.store, self.workload.id, "production", "failback")
        catalog.record_drill(
            self.store,
            self.workload.id,
            "failback",
            point.point_set,
            started_at,
            result.rto_seconds,
            result.ok,
            {"booted": result.booted},
        )
        return result
