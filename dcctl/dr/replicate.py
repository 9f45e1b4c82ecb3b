"""Changed-block replication of protected workloads to the provincial DR site.

For each server of a protected workload, on its host:

1. **Point.** A libvirt push backup with a new checkpoint captures every disk at one instant: the whole disk the first
   time, then only the blocks changed since the previous good point's checkpoint (QEMU dirty bitmaps). The backup
   lands in a staging file on the source host: a qcow2 holding just those clusters, in memory (/dev/shm) when it fits
   in a share of the host's free memory, else on disk (the backend's ``dr_staging`` can also fix the place).
2. **Chain.** The staging file passes ``qemu-img check``, and an incremental is rebased onto its parent's replica
   (header only), so the replica arrives as it will stay: full ← inc ← inc….
3. **Ship and verify** (``dcctl.dr.transfer``). The source host streams that file straight to the DR host over
   OpenSSH (the DR backend's key and known_hosts; host keys verified) into a ``.part`` file, which the DR host writes
   past its page cache (O_DIRECT, where the file system allows) and checksums as it writes; the source checksums its
   file meanwhile. An interrupted transfer resumes at the bytes already there (read back into the checksum). Sizes
   and checksums must match; only then is the point *good*, and its checksum is the replica file's.
4. **Retain.** The chain keeps ``retention.points`` points and ``retention.days`` days (the oldest two are merged with
   ``qemu-img commit``); older checkpoints are dropped from the domain.

Every step is recorded in the DR catalog (``dcctl.dr.catalog``) and a re-run after any failure continues from there.
"""

from __future__ import annotations

import json
import secrets
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import nullcontext
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import PurePosixPath

from dcctl.dr import catalog
from dcctl.dr.links import Links
from dcctl.dr.ssh import CONNECT_TIMEOUT, CONTROL_DIR, Ssh, SshTarget, q
from dcctl.dr.transfer import Sent, receive_command, send
from dcctl.errors import DcctlError
from dcctl.inventory import Inventory
from dcctl.inventory.model import LibvirtBackend, Tenancy, Workload
from dcctl.providers.base import ProviderError
from dcctl.providers.libvirt.dr import Disk, DrHost
from dcctl.state.store import Store, now

Progress = Callable[[str], None]


def _quiet(_: str) -> None:
    """Default progress callback: say nothing."""


@dataclass(frozen=True)
class ProtectedServer:
    workload: str
    key: str
    name: str
    source: LibvirtBackend


@dataclass
class ServerResult:
    server: str
    ok: bool
    kind: str = ""
    point_set: str = ""
    changed_bytes: int = 0
    shipped_bytes: int = 0
    seconds: float = 0.0
    ship_seconds: float = 0.0  # the transfer alone (for throughput figures)
    error: str = ""
    hint: str = ""
    target_unreachable: bool = False  # the DR site did not answer: the other servers of this run wait for the next


@dataclass
class ReplicationResult:
    workload: str
    target_backend: str
    servers: list[ServerResult] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return bool(self.servers) and all(s.ok for s in self.servers)


def new_point_set() -> str:
    """Time-ordered and unique: 20261126T183000Z-3f9a."""
    return datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ") + "-" + secrets.token_hex(2)


def dr_backend_for(inv: Inventory, tenancy: Tenancy, workload: Workload) -> LibvirtBackend:
    """The DR site's libvirt backend for a workload: of the provincial DR site, serving the tenancy's zone."""
    target_id = (workload.dr.target if workload.dr else None) or (inv.province.dr_site if inv.province else None)
    dc = inv.data_centers.get(target_id or "")
    if dc is None:
        raise DcctlError(f"workload '{workload.id}' has no DR site", hint="set province.dr_site")
    candidates = [b for b in dc.backends if isinstance(b, LibvirtBackend) and tenancy.zone in b.zones]
    if not candidates:
        raise DcctlError(
            f"DR site '{dc.id}' has no libvirt backend serving the {tenancy.zone.value} for '{workload.id}'",
            hint="add one, or replicate this workload's OpenStack volumes with the OpenStack provider",
        )
    return sorted(candidates, key=lambda b: b.id)[0]


#: the memory staging area of every source host (tmpfs on every Linux)
MEMORY_STAGING = "/dev/shm/dcctl-staging"
#: ``dr_staging: auto`` stages a point in memory when it needs at most this share of the host's available memory
MEMORY_SHARE = 0.125
#: room a staging qcow2 needs beyond its data (header, tables), per disk
QCOW2_SLACK = 16 * 2**20


def staging_dir(source: LibvirtBackend, server: str, place: str = "disk") -> str:
    """Where a server's points wait on its source host: ``place`` is memory or disk."""
    root = MEMORY_STAGING if place == "memory" else f"{source.dr_path.rstrip('/')}/staging"
    return f"{root}/{server}"


def staging_path(source: LibvirtBackend, server: str, disk: str, point_set: str, place: str = "disk") -> str:
    return f"{staging_dir(source, server, place)}/{disk}-{point_set}.qcow2"


def staging_place(mode: str, point_bytes: int, disks: int, memory_free: int) -> str:
    """memory or disk, for a point of at most ``point_bytes`` of data on ``disks`` disks. ``memory_free``: what
    memory staging may take on the host (the least of its available memory's share and the room in /dev/shm).

    Memory spares the host's disks a write and a read of every point (on the lab, whose "disk" is page cache, a warm
    incremental took 1.16 s instead of 1.37 s; the stream did not change: see bench/RESULTS.md)."""
    if mode != "auto":
        return mode
    return "memory" if point_bytes + disks * QCOW2_SLACK <= memory_free else "disk"


#: seconds to wait for the DR site's SSH to answer (it serves every city: a silent one skips the rest of the run)
DR_SITE_TIMEOUT = 10.0


def replica_dir(target: LibvirtBackend, workload: str, server: str, disk: str) -> str:
    return f"{target.dr_path.rstrip('/')}/{workload}/{server}/{disk}"


class Replicator:
    """Replicates the servers of one workload to its DR backend."""

    def __init__(
        self,
        store: Store,
        workload: Workload,
        target: LibvirtBackend,
        *,
        progress: Progress = _quiet,
        timeout: float = 3600.0,
    ) -> None:
        self.store = store
        self.workload = workload
        self.target = target
        self.target_ssh = SshTarget.from_uri(target.uri)
        self.progress = progress
        self.timeout = timeout

    # --------------------------------------------------------------------------------------------- per server
    def replicate(self, server: ProtectedServer, point_set: str, links: Links | None = None) -> ServerResult:
        """One point of one server, shipped and verified. Safe to call from several threads at once (one per
        server): they share the run's ``links`` (or each opens its own), and the store serializes the catalog."""
        started = time.monotonic()
        deadline = started + self.timeout
        result = ServerResult(server.name, ok=False, point_set=point_set)
        try:
            with Links() if links is None else nullcontext(links) as open_links, ThreadPoolExecutor(1) as background:
                src, dst, host = self._connect(server, open_links)
                # the stream's connection (source host → DR host) is opened while the backup runs
                stream_ready = background.submit(self._open_stream, server, src)
                survey = self._survey(server, src)
                self._sweep_staging(server, survey, src)
                self._finish_pending(server, survey, src, dst, stream_ready)
                kind, changed, shipment = self._take_and_ship(
                    server, host, src, dst, point_set, deadline, stream_ready, survey
                )
                self._prune_checkpoints(server, host)
                self._retain(server, dst)
            result = ServerResult(
                server.name, True, kind, point_set, changed, shipment.bytes, ship_seconds=shipment.seconds
            )
        except (ProviderError, DcctlError) as exc:
            result.error, result.hint = exc.message, exc.hint
            result.target_unreachable = isinstance(exc, ProviderTransferError) and exc.unreachable
        result.seconds = time.monotonic() - started
        return result

    def _connect(self, server: ProtectedServer, links: Links) -> tuple[Ssh, Ssh, DrHost]:
        """SSH to the source and to the DR host, libvirt on the source: the run's, opened at once."""
        source = SshTarget.from_uri(server.source.uri)
        links.prefetch(ssh=[(source, CONNECT_TIMEOUT), (self.target_ssh, DR_SITE_TIMEOUT)], libvirt=[server.source])
        try:
            dst = links.ssh(self.target_ssh, timeout=DR_SITE_TIMEOUT)
        except ProviderError as exc:
            raise ProviderTransferError(exc.message, hint=exc.hint, unreachable=True) from None
        return links.ssh(source), dst, links.libvirt(server.source)

    def _open_stream(self, server: ProtectedServer, src: Ssh) -> None:
        """Open (or reuse) the source host's shared connection to the DR host that the disk streams ride on. A
        failure here is not final: each stream opens its own connection then, and reports its own error."""
        remote = " ".join(q(a) for a in self._stream_command(server))
        src.run(f"mkdir -p -m 0700 {q(CONTROL_DIR)} && {remote} true", check=False, timeout=30)

    def _stream_command(self, server: ProtectedServer) -> list[str]:
        return self.target_ssh.openssh_command(shared_from=SshTarget.from_uri(server.source.uri).host)

    def _survey(self, server: ProtectedServer, src: Ssh) -> Survey:
        """The server's staging files in either place and the room for memory staging, in one round trip."""
        dirs = " ".join(q(staging_dir(server.source, server.name, place)) for place in ("memory", "disk"))
        _, out, _ = src.run(
            f"mkdir -p {q(staging_dir(server.source, server.name, 'memory'))}; "
            f"find {dirs} -maxdepth 1 -name '*.qcow2' -printf '%s %p\\n' 2>/dev/null; echo --; "
            "awk '/^MemAvailable:/ {print $2}' /proc/meminfo; "  # kB
            f"df -B1 --output=avail {MEMORY_STAGING} | tail -n 1",
            check=False,
        )
        listing, _, memory = out.partition("--\n")
        staged = {path: int(size) for size, path in (line.split(" ", 1) for line in listing.splitlines() if line)}
        try:
            available_kb, room = (int(n) for n in memory.split())
        except ValueError:  # no /proc/meminfo or no /dev/shm: a host to stage on disk
            return Survey(staged, 0)
        return Survey(staged, min(int(available_kb * 1024 * MEMORY_SHARE), room))

    def _sweep_staging(self, server: ProtectedServer, survey: Survey, src: Ssh) -> None:
        """Remove the server's staging files that no pending point owns. A run killed between QEMU's backup and the
        catalog leaves one (in memory: until the host reboots). Safe under the workload's DR lock: no other run
        stages for this server meanwhile."""
        owned = {
            PurePosixPath(staging_path(server.source, d.server, d.disk, d.point_set)).name
            for d in catalog.disk_points(self.store, self.workload.id, status="pending")
            if d.server == server.name
        }
        stale = [path for path in survey.staged if PurePosixPath(path).name not in owned]
        if stale:
            src.run("rm -f " + " ".join(q(path) for path in stale))
            for path in stale:
                del survey.staged[path]
            self.progress(f"{server.name}: removed {len(stale)} staging file(s) no point owns (left by a killed run)")

    def _finish_pending(
        self, server: ProtectedServer, survey: Survey, src: Ssh, dst: Ssh, stream_ready: Future[None]
    ) -> None:
        """Points whose transfer was interrupted: resume them (or mark them failed if their staging file is gone)."""
        for d in catalog.disk_points(self.store, self.workload.id, status="pending"):
            if d.server != server.name:
                continue
            places = [staging_path(server.source, d.server, d.disk, d.point_set, p) for p in ("memory", "disk")]
            staged = next((p for p in places if p in survey.staged), None)
            if staged is None:  # memory staging does not survive a reboot of the host; a disk can fail
                dst.run(f"rm -f {q(d.target_path + '.part')} {q(d.target_path)}")  # what reached the DR site
                catalog.mark_point(self.store, d.id, "failed")
                self.progress(f"{d.server}/{d.disk}: point {d.point_set} lost its staging file; marked failed")
                continue
            self.progress(f"{d.server}/{d.disk}: resuming the transfer of point {d.point_set}")
            stream_ready.result()
            parent = next((p for p in catalog.disk_points(self.store) if p.id == d.parent_id), None)
            src.run(f"{_chain_command(staged, parent)}true")  # a no-op unless the point predates chaining at the source
            self._ship_and_verify(server, d.id, staged, survey.staged[staged], d.target_path, src, dst, resume=True)

    def _take_and_ship(
        self,
        server: ProtectedServer,
        host: DrHost,
        src: Ssh,
        dst: Ssh,
        point_set: str,
        deadline: float,
        stream_ready: Future[None],
        survey: Survey,
    ) -> tuple[str, int, Shipment]:
        disks = host.disks(server.name)
        if not disks:
            raise DcctlError(f"server {server.name} has no file disks to replicate")
        existing = set(host.checkpoints(server.name))
        parents = self._newest_good(server.name)
        base = _base_checkpoint(parents, [disk.target for disk in disks])
        incremental = base if base in existing and all(disk.target in parents for disk in disks) else None
        kind = "incremental" if incremental else "full"
        checkpoint = f"dcctl-{point_set}"
        place = staging_place(
            server.source.dr_staging,
            host.point_bytes(server.name, [disk.target for disk in disks], incremental),
            len(disks),
            survey.memory_free,
        )
        targets = {d.target: staging_path(server.source, server.name, d.target, point_set, place) for d in disks}
        if place == "disk":  # the survey made the memory one
            src.run(f"mkdir -p {q(staging_dir(server.source, server.name, place))}")
        self.progress(f"{server.name}: {kind} point {point_set} ({', '.join(targets)}; staged in {place})")
        taken_at = now()
        try:
            host.backup(server.name, targets, checkpoint, incremental, deadline)
        except (ProviderError, DcctlError):
            src.run("rm -f " + " ".join(q(p) for p in targets.values()), check=False)  # no point: no staging left
            raise
        stream_ready.result()

        def ship(disk: Disk) -> tuple[int, Shipment]:
            staged = targets[disk.target]
            parent = parents.get(disk.target) if incremental else None
            file_size, size, changed = self._measure_and_chain(src, staged, parent)
            target_path = f"{replica_dir(self.target, self.workload.id, server.name, disk.target)}/{point_set}.qcow2"
            point_id = catalog.add_disk_point(
                self.store,
                point_set=point_set,
                workload=self.workload.id,
                server=server.name,
                disk=disk.target,
                kind=kind,
                parent_id=parent.id if parent else None,
                checkpoint=checkpoint,
                source_backend=server.source.id,
                target_backend=self.target.id,
                target_path=target_path,
                taken_at=taken_at,
                status="pending",
                size_bytes=size,
                changed_bytes=changed,
            )
            return changed, self._ship_and_verify(server, point_id, staged, file_size, target_path, src, dst)

        changed_total = 0
        shipped = Shipment()
        with ThreadPoolExecutor(len(disks)) as pool:  # the disks of a server travel side by side
            for changed, shipment in pool.map(ship, disks):
                changed_total += changed
                shipped += shipment
        return kind, changed_total, shipped

    def _newest_good(self, server: str) -> dict[str, catalog.DiskPoint]:
        """Each disk's newest good point: the parent of its next incremental."""
        good = catalog.disk_points(self.store, self.workload.id, status="good")
        return {d.disk: d for d in good if d.server == server}

    @staticmethod
    def _measure_and_chain(src: Ssh, staged: str, parent: catalog.DiskPoint | None) -> tuple[int, int, int]:
        """(staging file's size, virtual size, bytes of data in this point), after checking the staging file and
        chaining it to its parent's replica, in one round trip. An incremental's own clusters are those at depth 0.

        The chain is set here, not at the DR site, so the replica arrives as it stays, and the catalog's checksum is
        the replica file's; and a check here, of the bytes the replica will equal, spares the DR host one."""
        _, out, _ = src.run(
            f"qemu-img map -U --output=json {q(staged)} && qemu-img check -U -q {q(staged)} && "
            f"{_chain_command(staged, parent)}stat -c %s {q(staged)}"
        )
        listing, _, file_size = out.strip().rpartition("\n")
        extents = json.loads(listing)
        size = max((e["start"] + e["length"] for e in extents), default=0)
        own = sum(e["length"] for e in extents if e.get("data") and (parent is None or e.get("depth", 0) == 0))
        return int(file_size), size, own

    def _ship_and_verify(
        self,
        server: ProtectedServer,
        point_id: int,
        staged: str,
        size: int,
        target_path: str,
        src: Ssh,
        dst: Ssh,
        *,
        resume: bool = False,
    ) -> Shipment:
        """Stream the staging file (``size`` bytes) to the DR host, resuming a partial copy; verify, mark good."""
        part = target_path + ".part"
        have = 0  # a new point's part file does not exist yet (its name is the run's)
        if resume:
            _, out, _ = dst.run(_size_or_zero(part))
            have = int(out.strip() or 0)
            if have > size:
                dst.run(f"rm -f {q(part)}")
                have = 0
        sent, shipment = self._stream(server, point_id, staged, size, part, have, src, dst)
        if sent.received is not None and sent.received[1] != sent.checksum:
            dst.run(f"rm -f {q(part)}")
            src.run(f"rm -f {q(staged)}", check=False)  # the point is given up: its staging goes too
            catalog.mark_point(self.store, point_id, "failed")
            raise ProviderTransferError(
                f"checksum mismatch for {PurePosixPath(target_path).name}: source {sent.checksum}, "
                f"replica {sent.received[1]}",
                hint="the replica was discarded; replicate again",
            )
        # the staging file goes while the replica takes its name (a 100 MiB one in /dev/shm: ~45 ms to free). Should
        # the rename fail or the run die here, the next run finds the point without its staging file and gives it
        # up, removing what reached the DR site
        with ThreadPoolExecutor(1) as pool:
            removed = pool.submit(src.run, f"rm -f {q(staged)}")
            dst.run(f"mv -f {q(part)} {q(target_path)}")
            removed.result()
        catalog.mark_point(self.store, point_id, "good", verified_at=now(), checksum=sent.checksum)
        return shipment

    def _stream(
        self, server: ProtectedServer, point_id: int, staged: str, size: int, part: str, have: int, src: Ssh, dst: Ssh
    ) -> tuple[Sent, Shipment]:
        """Stream ``staged`` from byte ``have`` on, source host → DR host (``dcctl.dr.transfer``); the bytes that
        arrived are counted in the catalog even when the stream breaks (the next run resumes there). Raises unless
        all ``size`` bytes arrived; their checksums are the caller's to compare."""
        shipping = time.monotonic()
        sent = send(
            src,
            staged,
            have,
            self._stream_command(server),
            receive_command(part, have, size),
            timeout=self.timeout,
        )
        shipment = Shipment(seconds=time.monotonic() - shipping)
        reached: int | None = sent.received[0] if sent.received else None
        if reached is None:
            try:
                _, out, _ = dst.run(_size_or_zero(part), check=False, timeout=20)
                reached = int(out.strip() or 0)
            except ProviderError:
                pass  # the DR site is unreachable: how far it got is read on the next run
        if reached is not None:
            shipment.bytes = max(0, reached - have)
            self._add_shipped(point_id, shipment.bytes)
        if sent.received is None or reached != size:
            where = f"{reached:,} of {size:,} bytes" if reached is not None else f"an unknown byte of {size:,}"
            raise ProviderTransferError(
                f"transfer of {PurePosixPath(staged).name} to {self.target.id} stopped at {where} "
                f"({sent.error[-200:] or f'exit {sent.rc}'})",
                hint="the next 'dcctl dr replicate' resumes it from there",
                unreachable=reached is None,
            )
        return sent, shipment

    def _add_shipped(self, point_id: int, shipped: int) -> None:
        with self.store.transaction() as db:
            db.execute("UPDATE dr_points SET shipped_bytes = shipped_bytes + ? WHERE id = ?", (shipped, point_id))

    def _prune_checkpoints(self, server: ProtectedServer, host: DrHost) -> None:
        """Keep only the base of the next incremental."""
        keep = _base_checkpoint(self._newest_good(server.name), [disk.target for disk in host.disks(server.name)])
        for checkpoint in host.checkpoints(server.name):
            if checkpoint != keep:
                host.delete_checkpoint(server.name, checkpoint)

    def _retain(self, server: ProtectedServer, dst: Ssh) -> None:
        """Merge the oldest points of each disk's chain until the retention policy holds (the newest always stays)."""
        policy = self.workload.dr.retention if self.workload.dr else None
        if policy is None:
            return
        horizon = datetime.now(UTC) - timedelta(days=policy.days)
        disks = {d.disk for d in catalog.disk_points(self.store, self.workload.id) if d.server == server.name}
        for disk in sorted(disks):
            chain = self._chain(server.name, disk)
            for old in catalog.disk_points(self.store, self.workload.id, status="good"):
                if (old.server, old.disk) == (server.name, disk) and chain and old.taken_at < chain[0].taken_at:
                    dst.run(f"rm -f {q(old.target_path)}")  # a chain superseded by a newer full point
                    catalog.mark_point(self.store, old.id, "expired")
            while len(chain) > 1 and (len(chain) > policy.points or chain[1].taken_at < horizon):
                oldest, second = chain[0], chain[1]
                self.progress(
                    f"{server.name}/{disk}: retention merges point {oldest.point_set} into {second.point_set}"
                )
                dst.run(f"qemu-img commit -q -d {q(second.target_path)}")
                if len(chain) > 2:
                    third = chain[2]
                    dst.run(
                        f"qemu-img rebase -u -F qcow2 -b {q(PurePosixPath(oldest.target_path).name)} "
                        f"{q(third.target_path)}"
                    )
                dst.run(f"rm -f {q(second.target_path)}")
                catalog.mark_point(self.store, oldest.id, "expired")
                with self.store.transaction() as db:
                    db.execute(
                        "UPDATE dr_points SET kind = 'full', parent_id = NULL, target_path = ? WHERE id = ?",
                        (oldest.target_path, second.id),
                    )
                chain = self._chain(server.name, disk)

    def _chain(self, server: str, disk: str) -> list[catalog.DiskPoint]:
        """The good points of one disk from its newest full point on (older chains are expired)."""
        good = [
            d
            for d in catalog.disk_points(self.store, self.workload.id, status="good")
            if (d.server, d.disk) == (server, disk)
        ]
        fulls = [i for i, d in enumerate(good) if d.kind == "full"]
        return good[fulls[-1] :] if fulls else good


@dataclass
class Survey:
    """A source host's state for one server's run: its staging files (path → size, in either place) and how many
    bytes memory staging may take there (the least of MemAvailable's share and /dev/shm's room; 0 without either)."""

    staged: dict[str, int]
    memory_free: int


@dataclass
class Shipment:
    """What a transfer carried: bytes that reached the DR host, and the seconds the stream took."""

    bytes: int = 0
    seconds: float = 0.0

    def __iadd__(self, other: Shipment) -> Shipment:
        self.bytes += other.bytes
        self.seconds += other.seconds
        return self


def _size_or_zero(path: str) -> str:
    """The shell command printing a file's size, or 0 when it is not there (a part file before its first byte)."""
    return f"stat -c %s {q(path)} 2>/dev/null || echo 0"


def _base_checkpoint(newest: dict[str, catalog.DiskPoint], disks: list[str]) -> str | None:
    """The checkpoint the next incremental of ``disks`` starts from: the oldest of their newest good points'
    (``newest``: each disk's).

    A point set whose disks did not all arrive (one given up: its staging was lost) leaves the others' newer than
    that disk's. The next point then carries every disk's changes since the given-up disk's last good point: what
    that disk needs, and more than the others need (each is chained onto its own newest point)."""
    points = [newest[disk] for disk in disks if disk in newest]
    return min(points, key=lambda d: (d.taken_at, d.id)).checkpoint if points else None


def _chain_command(staged: str, parent: catalog.DiskPoint | None) -> str:
    """The shell command (with its ``&&``) making ``staged`` an incremental of its parent's replica (the relative
    name, as the replicas sit side by side at the DR site), or nothing for a full point."""
    if parent is None:
        return ""
    return f"qemu-img rebase -u -F qcow2 -b {q(PurePosixPath(parent.target_path).name)} {q(staged)} && "


class ProviderTransferError(ProviderError):
    """A transfer or verification did not complete; the catalog keeps the point pending (or failed)."""

    def __init__(self, message: str, *, hint: str = "", unreachable: bool = False) -> None:
        super().__init__(message, hint=hint)
        self.unreachable = unreachable
