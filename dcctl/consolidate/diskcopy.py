"""Cold and warm moves: the disks of a workload's servers copied to their volumes at the target with the DR copier
(``dcctl.dr.replicate``: a libvirt push backup per point — the whole disk, then only the blocks changed since the last
point — streamed host to host over SSH, SHA-256 compared at both ends, ``qemu-img check``), then verified by content.

The copier keeps its points in a catalog; a move uses a *scratch* catalog of its own (a state file of the move), so
the workload's record at the DR site — its chain, its RPO — is not touched. Each shipped point is applied to the
target volume at once: a full point becomes the volume (copied while the guest still runs, renamed when it is frozen);
an incremental is committed into it (``qemu-img rebase -u`` onto the volume, then ``qemu-img commit``), so the work
left for the frozen guest is the last delta. The copier takes points of active domains only: a frozen guest is
paused, and a shut-off one is started paused (its CPUs never run).
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import PurePosixPath

from dcctl.consolidate import digest
from dcctl.dr import catalog
from dcctl.dr.replicate import Progress, ProtectedServer, Replicator, new_point_set, replica_dir
from dcctl.dr.ssh import Ssh, SshTarget, q
from dcctl.errors import DcctlError
from dcctl.inventory.model import LibvirtBackend, Workload
from dcctl.providers.libvirt.migrate import MoveHost
from dcctl.state.store import Store

#: checkpoints a move leaves on a source domain start with this (DR's own are ``dcctl-<timestamp>``)
CHECKPOINT_PREFIX = "dcctl-move-"
#: warm rounds stop once a round carried less than this, or took less than ``SETTLED_SECONDS``
SETTLED_BYTES = 64 * 2**20
SETTLED_SECONDS = 5.0
MAX_ROUNDS = 5  # incremental rounds while the guest runs, at most


class VerifyError(DcctlError):
    """A moved server failed its verification: the move is rolled back."""


@dataclass
class ServerCopy:
    key: str
    name: str
    source: LibvirtBackend
    target: LibvirtBackend
    volumes: dict[str, str]  # disk target dev (vda) → the target volume's file
    disks: dict[str, str] = field(default_factory=dict)  # disk target dev → the source file
    was_running: bool = True


@dataclass
class RoundStats:
    kind: str
    changed_bytes: int = 0
    shipped_bytes: int = 0
    ship_seconds: float = 0.0
    seconds: float = 0.0


class DiskCopier:
    """Copies the disks of one workload's servers, round after round, into their target volumes."""

    def __init__(
        self,
        scratch: Store,
        workload: Workload,
        servers: Iterable[ServerCopy],
        *,
        progress: Progress,
        timeout: float,
    ) -> None:
        self.scratch = scratch
        # no DR policy: the copier's retention would merge points of a chain the move consumes as it goes
        self.workload = workload.model_copy(update={"dr": None})
        self.servers = list(servers)
        self.progress = progress
        self.replicators = {
            s.target.id: Replicator(scratch, self.workload, s.target, progress=progress, timeout=timeout)
            for s in self.servers
        }
        self.rounds: list[RoundStats] = []

    @property
    def shipped_bytes(self) -> int:
        return sum(r.shipped_bytes for r in self.rounds)

    @property
    def ship_seconds(self) -> float:
        return sum(r.ship_seconds for r in self.rounds)

    def round(self, *, final: bool) -> RoundStats:
        """One point of every server, shipped, verified and applied to its target volumes."""
        started = time.monotonic()
        point_set = "move-" + new_point_set()
        stats = RoundStats("full" if not self.rounds else "incremental")
        for s in self.servers:
            result = self.replicators[s.target.id].replicate(
                ProtectedServer(self.workload.id, s.key, s.name, s.source), point_set
            )
            if not result.ok:
                raise DcctlError(f"copying {s.name} failed: {result.error}", hint=result.hint)
            stats.kind = result.kind
            stats.changed_bytes += result.changed_bytes
            stats.shipped_bytes += result.shipped_bytes
            stats.ship_seconds += result.ship_seconds
            self._apply(s, point_set, final)
        stats.seconds = time.monotonic() - started
        self.rounds.append(stats)
        self.progress(
            f"{self.workload.id}: {stats.kind} round {len(self.rounds)}: {stats.changed_bytes / 2**20:.1f} MiB "
            f"changed, {stats.shipped_bytes / 2**20:.1f} MiB shipped in {stats.seconds:.1f}s"
        )
        return stats

    def _apply(self, s: ServerCopy, point_set: str, final: bool) -> None:
        points = [
            d
            for d in catalog.disk_points(self.scratch, self.workload.id, status="good")
            if d.point_set == point_set and d.server == s.name
        ]
        with Ssh(SshTarget.from_uri(s.target.uri)) as dst:
            for d in points:
                volume = s.volumes.get(d.disk)
                if volume is None:
                    raise DcctlError(f"disk {d.disk} of {s.name} has no volume at {s.target.id}")
                if d.kind == "full":
                    # while the guest runs, keep the full point (the next incremental's backing); frozen, rename it
                    place = "mv -f" if final else "cp --sparse=always"
                    dst.run(
                        f"{place} {q(d.target_path)} {q(volume + '.part')} && mv -f {q(volume + '.part')} {q(volume)}"
                    )
                else:
                    dst.run(
                        f"qemu-img rebase -u -F qcow2 -b {q(volume)} {q(d.target_path)} && "
                        f"qemu-img commit -q {q(d.target_path)}",
                        timeout=600,
                    )

    def cleanup(self) -> None:
        """Remove the shipped points at the targets (the volumes keep the data)."""
        for s in self.servers:
            where = str(PurePosixPath(replica_dir(s.target, self.workload.id, s.name, "vda")).parent)
            with Ssh(SshTarget.from_uri(s.target.uri)) as dst:
                dst.run(f"rm -rf {q(where)}; rmdir {q(str(PurePosixPath(where).parent))} 2>/dev/null || true")


def converge(copier: DiskCopier) -> None:
    """Warm: the full round, then incremental rounds while the guest runs, until one carries little."""
    copier.round(final=False)
    for _ in range(MAX_ROUNDS):
        last = copier.round(final=False)
        if last.changed_bytes < SETTLED_BYTES or last.seconds < SETTLED_SECONDS:
            return


def freeze(servers: Iterable[ServerCopy]) -> None:
    """Stop the guests' CPUs (running ones paused, shut-off ones started paused): the disks stop changing."""
    for s in servers:
        with MoveHost(s.source) as host:
            if host.running(s.name):
                host.suspend(s.name)
            else:
                host.start_paused(s.name)


def power_off(servers: Iterable[ServerCopy]) -> None:
    for s in servers:
        with MoveHost(s.source) as host:
            host.stop(s.name)


def restore_sources(servers: Iterable[ServerCopy]) -> list[str]:
    """Put the source servers back as they were (the rollback's half at the source): paused ones resumed, stopped
    ones started if they ran before; the move's checkpoints removed. Returns the servers started again (they boot)."""
    started = []
    for s in servers:
        with MoveHost(s.source) as host:
            if not host.exists(s.name):
                raise DcctlError(f"{s.name} is no longer defined at {s.source.id}: cannot restore it")
            if restore(host, s.name, was_running=s.was_running):
                started.append(s.name)
    return started


def restore(host: MoveHost, name: str, *, was_running: bool | None) -> bool:
    """One source server back as it was before the move (``was_running``; None: unknown — then a guest that runs
    keeps running, a paused one is resumed, a stopped one stays stopped), without the move's checkpoints (libvirt
    deletes checkpoints of active domains only: a server that stays off is started paused for that, then stopped).
    True if it was started (it boots)."""
    started = False
    stop_after = was_running is False
    if host.paused(name):
        if not stop_after:
            host.resume(name)
    elif not host.running(name):
        if was_running:
            host.start(name)
            started = True
        else:
            host.start_paused(name)
            stop_after = True
    for checkpoint in host.checkpoints(name):
        if checkpoint.startswith(CHECKPOINT_PREFIX):
            host.delete_checkpoint(name, checkpoint)
    if stop_after:
        host.stop(name)
    return started


def content_digests(servers: Iterable[ServerCopy]) -> dict[str, tuple[str, str]]:
    """``server/dev`` → (digest of the source disk, digest of the target volume), computed on both hosts at once."""
    jobs: list[tuple[str, LibvirtBackend, str, str]] = []
    for s in servers:
        for dev, volume in sorted(s.volumes.items()):
            jobs.append((f"{s.name}/{dev}#source", s.source, s.disks[dev], _scratch(s.source, s.name, dev)))
            jobs.append((f"{s.name}/{dev}#target", s.target, volume, _scratch(s.target, s.name, dev)))

    def one(job: tuple[str, LibvirtBackend, str, str]) -> tuple[str, str]:
        label, backend, image, scratch = job
        with Ssh(SshTarget.from_uri(backend.uri)) as ssh:
            ssh.run(f"mkdir -p {q(str(PurePosixPath(scratch).parent))}")
            _, out, _ = ssh.run(digest.remote_command(image, scratch), timeout=3600)
        return label, out.strip()

    with ThreadPoolExecutor(max_workers=max(1, min(4, len(jobs)))) as pool:
        found = dict(pool.map(one, jobs))
    out = {}
    for label in sorted(found):
        if label.endswith("#source"):
            disk = label.removesuffix("#source")
            out[disk] = (found[label], found[disk + "#target"])
    return out


def _scratch(backend: LibvirtBackend, server: str, dev: str) -> str:
    return f"{backend.dr_path.rstrip('/')}/staging/consolidate-{server}-{dev}.raw"
