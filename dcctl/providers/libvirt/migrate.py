"""Moving servers between libvirt hosts (consolidation): live migration with a copy of the storage, the domain XML as
it must read on the target, and the few lifecycle calls cold and warm moves need beyond DR's. Part of the provider:
with ``dr.py`` and ``provider.py``, the only modules that import libvirt.

**Identity.** dcctl finds its own domains by metadata and a UUID derived from (province, backend, key). libvirt keeps a
domain's UUID across a live migration (it refuses a destination XML with another: "Target domain uuid … does not match
source"), so a migrated domain carries the UUID minted for its *source* backend. Its metadata records that backend in
``<dcctl:uuid-backend>``; a provider that accepts ``uuid == stable_uuid(province, meta['uuid-backend'], key)`` adopts
the domain as its own (``adopts_migrated_identity`` asks the provider). Until it does, consolidation plans no live
moves: the target would see a foreign domain and refuse to plan around it.
"""

from __future__ import annotations

import contextlib
import threading
import time
import xml.etree.ElementTree as ET
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import PurePosixPath

import libvirt

from dcctl.inventory.model import LibvirtBackend
from dcctl.providers.base import PermanentError, TransientError
from dcctl.providers.libvirt.dr import DrHost
from dcctl.providers.libvirt.mapping import NS
from dcctl.providers.libvirt.provider import translate
from dcctl.resources import stable_uuid

#: metadata child naming the backend whose identity minted a migrated domain's UUID
UUID_BACKEND = "uuid-backend"

LIVE_UNSUPPORTED = (
    "this dcctl's libvirt provider does not yet adopt a live-migrated domain: libvirt keeps a domain's UUID across "
    "migration, dcctl derives it per backend, so the target would see a foreign domain (the provider must accept "
    "<dcctl:uuid-backend>; see README, Consolidation)"
)

_P2P = libvirt.VIR_MIGRATE_PEER2PEER
_LIVE_FLAGS = (
    libvirt.VIR_MIGRATE_LIVE
    | libvirt.VIR_MIGRATE_PERSIST_DEST
    | libvirt.VIR_MIGRATE_UNDEFINE_SOURCE
    | libvirt.VIR_MIGRATE_NON_SHARED_DISK
    | libvirt.VIR_MIGRATE_AUTO_CONVERGE
)


def adopts_migrated_identity(backend: LibvirtBackend, province: str) -> bool:
    """Whether the libvirt provider for ``backend`` owns a domain whose UUID was minted on another backend (asked of
    the provider itself: no connection is opened)."""
    from dcctl.providers.libvirt.provider import LibvirtProvider

    probe = LibvirtProvider(backend, province)
    key, origin = "server:dcctl-probe/probe/1", "dcctl-probe-origin"
    meta = {"key": key, "province": province, "backend": backend.id, UUID_BACKEND: origin}
    try:
        return bool(probe._owned(meta, stable_uuid(province, origin, key)))
    finally:
        probe.close()


@dataclass(frozen=True)
class LiveStats:
    """What libvirt measured of a completed migration."""

    downtime_ms: float | None  # how long the guest was paused (the final stop-and-copy and switch-over)
    elapsed_ms: float | None
    memory_bytes: int | None
    seconds: float  # wall time of the call
    mode: str = "peer-to-peer"  # or through dcctl's connections (when the hosts cannot reach each other's libvirtd)
    raw: Mapping[str, float] = field(default_factory=dict)  # libvirt's completed-job statistics, as it gave them

    def to_dict(self) -> dict[str, object]:
        return {**{k: v for k, v in self.__dict__.items() if k != "raw"}, "libvirt": dict(self.raw)}


def retarget_xml(
    xml: str,
    *,
    backend: str,
    digest: str,
    disk_paths: Mapping[str, str],
    console_path: str | None,
) -> str:
    """A domain's (migratable) XML as it must read on another backend: its disks at ``disk_paths`` (target dev →
    file), its serial logs and sockets in ``console_path``, its metadata naming the new ``backend`` and spec
    ``digest``, and the backend that minted its UUID (kept from an earlier move, else the one it leaves)."""
    ET.register_namespace("dcctl", NS)
    root = ET.fromstring(xml)
    meta = root.find(f"metadata/{{{NS}}}resource")
    if meta is None:
        raise PermanentError("the domain carries no dcctl metadata: it is not dcctl's to move")
    old_backend = meta.findtext(f"{{{NS}}}backend", "")
    if meta.find(f"{{{NS}}}{UUID_BACKEND}") is None:
        minted = ET.SubElement(meta, f"{{{NS}}}{UUID_BACKEND}")
        minted.text = old_backend
    for child, value in (("backend", backend), ("digest", digest)):
        node = meta.find(f"{{{NS}}}{child}")
        if node is None:
            node = ET.SubElement(meta, f"{{{NS}}}{child}")
        node.text = value
    for disk in root.findall("devices/disk"):
        source, target = disk.find("source"), disk.find("target")
        if disk.get("device", "disk") != "disk" or source is None or target is None or not source.get("file"):
            continue
        dev = target.get("dev", "")
        if dev not in disk_paths:
            raise PermanentError(f"disk {dev} of the domain has no volume at the target")
        source.set("file", disk_paths[dev])
    if console_path is not None:
        for device in [*root.findall("devices/serial"), *root.findall("devices/console")]:
            source = device.find("source")
            if source is not None and source.get("path"):
                source.set("path", f"{console_path.rstrip('/')}/{PurePosixPath(source.get('path', '')).name}")
    return ET.tostring(root, encoding="unicode")


class MoveHost(DrHost):
    """One libvirt host, for moving servers to or from it. Use as a context manager."""

    def __enter__(self) -> MoveHost:
        return self

    def xml(self, name: str, *, migratable: bool = False) -> str:
        flags = libvirt.VIR_DOMAIN_XML_MIGRATABLE if migratable else 0
        try:
            return str(self._dom(name).XMLDesc(flags))
        except libvirt.libvirtError as exc:
            raise translate(exc, f"XML of {name}") from None

    def paused(self, name: str) -> bool:
        dom = self._dom(name)
        return bool(dom.isActive()) and dom.info()[0] == libvirt.VIR_DOMAIN_PAUSED

    def start_paused(self, name: str) -> None:
        """Start QEMU with the guest's CPUs stopped (a shut-off guest's disks can then be backed up; it never runs)."""
        dom = self._dom(name)
        try:
            if not dom.isActive():
                dom.createWithFlags(libvirt.VIR_DOMAIN_START_PAUSED)
        except libvirt.libvirtError as exc:
            raise translate(exc, f"starting {name} paused") from None

    def cpu_seconds(self, name: str) -> float:
        return float(self._dom(name).info()[4]) / 1e9

    def set_autostart(self, name: str) -> None:
        with contextlib.suppress(libvirt.libvirtError):
            self._dom(name).setAutostart(1)

    def define_xml(self, xml: str, *, start: bool) -> None:
        """Define (and start) a domain from its full XML, e.g. a source domain restored after a failed move."""
        self.define(xml, start=start)

    def migrate_live(
        self,
        name: str,
        dest: MoveHost,
        dest_xml: str,
        disks: list[str],
        address: str,
        deadline: float,
    ) -> LiveStats:
        """Live-migrate ``name`` to ``dest`` with its storage (into volumes that already exist there, copied while the
        guest runs), persistently, undefining it here. Peer to peer first: this host's libvirtd drives the migration
        with the destination's libvirtd (reached with the destination backend's URI, so the key and known_hosts that
        URI names must exist on this host too); the switch-over then never waits on dcctl, and a dcctl that dies
        midway leaves libvirt to finish or cancel cleanly. If that connection cannot be made, dcctl drives the
        migration itself through its own two connections (the guest's pause then includes relaying libvirt's
        control messages; measured at seconds on the lab, against ~0.2 s peer to peer). An unfinished migration is
        aborted at ``deadline``: the guest then keeps running here."""
        params = {
            libvirt.VIR_MIGRATE_PARAM_URI: f"tcp://{address}",
            libvirt.VIR_MIGRATE_PARAM_DEST_XML: dest_xml,
            libvirt.VIR_MIGRATE_PARAM_PERSIST_XML: dest_xml,
            libvirt.VIR_MIGRATE_PARAM_MIGRATE_DISKS: disks,
        }
        started = time.monotonic()
        mode = "peer-to-peer"
        try:
            self._migrate(name, deadline, lambda d: d.migrateToURI3(dest.backend.uri, params, _LIVE_FLAGS | _P2P))
        except libvirt.libvirtError as exc:
            if dest.exists(name) or not self.running(name):
                raise translate(exc, f"live migration of {name} to {dest.backend.id}") from None
            mode = f"through dcctl (peer to peer failed: {exc.get_error_message()})"
            try:
                self._migrate(name, deadline, lambda d: d.migrate3(dest.conn, params, _LIVE_FLAGS))
            except libvirt.libvirtError as again:
                raise translate(again, f"live migration of {name} to {dest.backend.id}") from None
        seconds = time.monotonic() - started
        moved = dest._dom(name)
        dest.set_autostart(name)
        stats: dict[str, object] = {}
        with contextlib.suppress(libvirt.libvirtError):
            stats = moved.jobStats(libvirt.VIR_DOMAIN_JOB_STATS_COMPLETED)

        def number(key: str) -> float | None:
            value = stats.get(key)
            return float(value) if isinstance(value, int | float) else None

        memory = number("memory_total")
        raw = {k: float(v) for k, v in stats.items() if isinstance(v, int | float)}
        return LiveStats(
            number("downtime"), number("time_elapsed"), int(memory) if memory else None, seconds, mode, raw
        )

    def _migrate(self, name: str, deadline: float, call: Callable[[libvirt.virDomain], object]) -> None:
        """Run a migration call on a worker thread, aborting the job at ``deadline``; its libvirt error is raised."""
        dom = self._dom(name)
        outcome: dict[str, libvirt.libvirtError] = {}

        def migrate() -> None:
            try:
                call(dom)
            except libvirt.libvirtError as exc:
                outcome["error"] = exc

        worker = threading.Thread(target=migrate, name=f"migrate-{name}", daemon=True)
        worker.start()
        while worker.is_alive():
            worker.join(timeout=0.2)
            if worker.is_alive() and time.monotonic() > deadline:
                with contextlib.suppress(libvirt.libvirtError):
                    dom.abortJob()
                worker.join(timeout=120)
                raise TransientError(f"the live migration of {name} did not finish in time (aborted; it runs here)")
        if "error" in outcome:
            raise outcome["error"]
