"""libvirt's disaster-recovery primitives for dcctl/dr: checkpoints, push backups (full or changed blocks only),
and the small domain lifecycle drills and failovers need. Part of the provider: the only place that imports libvirt."""

from __future__ import annotations

import contextlib
import functools
import threading
import time
import xml.etree.ElementTree as ET
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar
from xml.sax.saxutils import quoteattr

import libvirt

from dcctl.inventory.model import LibvirtBackend
from dcctl.providers.base import NotFound, PermanentError, TransientError
from dcctl.providers.libvirt.provider import _undefine, open_connection, translate

_M = TypeVar("_M", bound=Callable[..., Any])


def _one_call_at_a_time(method: _M) -> _M:
    """Threads sharing a DrHost (the servers of one DR run) take turns on its connection: libvirt 9.0's libssh
    client stalls 5-10 s when the replies of calls in flight together arrive back to back (seen here as a 5.0 s
    ``listAllCheckpoints`` in 1 of 8 runs; see SERIAL_TRANSPORTS in the provider). Each call is short; waits (a
    backup job's) are taken outside the turn."""

    @functools.wraps(method)
    def serial(self: DrHost, *args: Any, **kwargs: Any) -> Any:
        with self.turn:
            return method(self, *args, **kwargs)

    return serial  # type: ignore[return-value]


CHECKPOINT_PREFIX = "dcctl-"


@dataclass(frozen=True)
class Disk:
    target: str  # vda
    path: str  # the file on the host


class DrHost:
    """One libvirt host, for DR work. Use as a context manager."""

    def __init__(self, backend: LibvirtBackend) -> None:
        self.backend = backend
        self.turn = threading.RLock()
        try:
            self.conn = open_connection(backend.uri)
        except libvirt.libvirtError as exc:
            raise TransientError(
                f"cannot connect to backend '{backend.id}': {exc.get_error_message()}",
                hint="is the host up (scripts/lab status) and its host key known?",
            ) from None

    def __enter__(self) -> DrHost:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        with contextlib.suppress(libvirt.libvirtError):
            self.conn.close()

    def _dom(self, name: str) -> libvirt.virDomain:
        try:
            return self.conn.lookupByName(name)
        except libvirt.libvirtError as exc:
            raise translate(exc, f"server {name} on {self.backend.id}") from None

    @_one_call_at_a_time
    def exists(self, name: str) -> bool:
        try:
            self.conn.lookupByName(name)
        except libvirt.libvirtError as exc:
            if exc.get_error_code() == libvirt.VIR_ERR_NO_DOMAIN:
                return False
            raise translate(exc, f"server {name}") from None
        return True

    @_one_call_at_a_time
    def disks(self, name: str) -> list[Disk]:
        root = ET.fromstring(self._dom(name).XMLDesc(0))
        out = []
        for d in root.findall("devices/disk"):
            src, tgt = d.find("source"), d.find("target")
            if d.get("device", "disk") == "disk" and src is not None and tgt is not None and src.get("file"):
                out.append(Disk(tgt.get("dev", ""), src.get("file", "")))
        return out

    @_one_call_at_a_time
    def point_bytes(self, name: str, disks: list[str], since: str | None) -> int:
        """At most how many bytes of data a point of ``disks`` holds: what changed since checkpoint ``since`` (QEMU's
        dirty bitmaps, read through libvirt), or the disks' whole size for a full point."""
        dom = self._dom(name)
        try:
            if since is None:
                return sum(dom.blockInfo(disk)[0] for disk in disks)
            xml = dom.checkpointLookupByName(since, 0).getXMLDesc(libvirt.VIR_DOMAIN_CHECKPOINT_XML_SIZE)
        except libvirt.libvirtError as exc:
            raise translate(exc, f"the size of a point of {name}") from None
        sizes = {d.get("name"): int(d.get("size", "0")) for d in ET.fromstring(xml).findall("disks/disk")}
        return sum(sizes.get(disk, 0) for disk in disks)

    @_one_call_at_a_time
    def running(self, name: str) -> bool:
        return bool(self._dom(name).isActive())

    @_one_call_at_a_time
    def checkpoints(self, name: str) -> list[str]:
        """dcctl's checkpoints of a domain, oldest first."""
        dom = self._dom(name)
        try:
            found = dom.listAllCheckpoints(0)
        except libvirt.libvirtError as exc:
            raise translate(exc, f"checkpoints of {name}") from None
        named = [(c.getName(), c) for c in found if c.getName().startswith(CHECKPOINT_PREFIX)]
        return [n for n, _ in sorted(named, key=lambda item: _created(item[1]))]

    @_one_call_at_a_time
    def delete_checkpoint(self, name: str, checkpoint: str, *, metadata_only: bool = False) -> None:
        """Delete a checkpoint and its bitmaps; gone already is fine. libvirt cannot remove the bitmaps of a stopped
        domain: there, remove them from the disks yourself (``qemu-img bitmap --remove``) and pass
        ``metadata_only``."""
        flags = libvirt.VIR_DOMAIN_CHECKPOINT_DELETE_METADATA_ONLY if metadata_only else 0
        try:
            self._dom(name).checkpointLookupByName(checkpoint, 0).delete(flags)
        except libvirt.libvirtError as exc:
            if exc.get_error_code() == libvirt.VIR_ERR_NO_DOMAIN_CHECKPOINT:
                return
            err = translate(exc, f"checkpoint {checkpoint} of {name}")
            if not isinstance(err, NotFound):
                raise err from None

    def backup(
        self,
        name: str,
        targets: dict[str, str],
        checkpoint: str,
        incremental_from: str | None,
        deadline: float,
    ) -> None:
        """Push backup of ``targets`` (disk target → file on this host) consistent at one instant, with a new
        checkpoint; only the blocks changed since ``incremental_from`` when given. Waits until the job ends."""
        with self.turn:
            dom = self._dom(name)
        disks = "".join(
            f"<disk name={quoteattr(dev)} type='file'><target file={quoteattr(path)}/><driver type='qcow2'/></disk>"
            for dev, path in targets.items()
        )
        incremental = f"<incremental>{checkpoint_escape(incremental_from)}</incremental>" if incremental_from else ""
        backup_xml = f"<domainbackup mode='push'>{incremental}<disks>{disks}</disks></domainbackup>"
        bitmaps = "".join(f"<disk name={quoteattr(dev)} checkpoint='bitmap'/>" for dev in targets)
        checkpoint_xml = (
            f"<domaincheckpoint><name>{checkpoint_escape(checkpoint)}</name><disks>{bitmaps}</disks></domaincheckpoint>"
        )
        try:
            with self.turn:
                dom.backupBegin(backup_xml, checkpoint_xml, 0)
        except libvirt.libvirtError as exc:
            if exc.get_error_code() == libvirt.VIR_ERR_OPERATION_INVALID and "inactive" in str(exc):
                raise PermanentError(
                    f"server {name} is not running: libvirt takes backups of running domains only",
                    hint="start it (dcctl apply) and replicate again",
                ) from None
            raise translate(exc, f"backup of {name}") from None
        delay = 0.01
        while True:
            try:
                with self.turn:
                    kind = dom.jobInfo()[0]
            except libvirt.libvirtError as exc:
                raise translate(exc, f"backup job of {name}") from None
            if kind in (libvirt.VIR_DOMAIN_JOB_NONE, libvirt.VIR_DOMAIN_JOB_COMPLETED):
                break
            if kind == libvirt.VIR_DOMAIN_JOB_FAILED:
                raise TransientError(f"the backup job of {name} failed")
            if time.monotonic() > deadline:
                with self.turn:
                    dom.abortJob()
                raise TransientError(f"the backup job of {name} did not finish in time (aborted)")
            time.sleep(delay)
            delay = min(delay * 1.25, 0.05)  # an incremental's job takes ~0.1-0.3 s: its end is seen within ~30 ms
        with self.turn:
            stats = dom.jobStats(libvirt.VIR_DOMAIN_JOB_STATS_COMPLETED)
        if stats.get("type") == libvirt.VIR_DOMAIN_JOB_FAILED:
            raise TransientError(f"the backup job of {name} failed: {stats.get('errmsg', '')}")

    @_one_call_at_a_time
    def suspend(self, name: str) -> None:
        dom = self._dom(name)
        if dom.isActive() and dom.info()[0] != libvirt.VIR_DOMAIN_PAUSED:
            dom.suspend()

    @_one_call_at_a_time
    def resume(self, name: str) -> None:
        dom = self._dom(name)
        if dom.isActive() and dom.info()[0] == libvirt.VIR_DOMAIN_PAUSED:
            dom.resume()

    @_one_call_at_a_time
    def stop(self, name: str) -> None:
        dom = self._dom(name)
        if dom.isActive():
            dom.destroy()

    @_one_call_at_a_time
    def start(self, name: str) -> None:
        dom = self._dom(name)
        if not dom.isActive():
            dom.create()

    @_one_call_at_a_time
    def define(self, xml: str, *, start: bool = True) -> None:
        try:
            dom = self.conn.defineXML(xml)
            if start and not dom.isActive():
                dom.create()
        except libvirt.libvirtError as exc:
            raise translate(exc, "defining a DR domain") from None

    @_one_call_at_a_time
    def remove(self, name: str) -> None:
        """Stop and undefine a domain dcctl's DR made (drill or failover copy); gone already is fine."""
        try:
            dom = self.conn.lookupByName(name)
        except libvirt.libvirtError as exc:
            if exc.get_error_code() == libvirt.VIR_ERR_NO_DOMAIN:
                return
            raise translate(exc, f"server {name}") from None
        if dom.isActive():
            dom.destroy()
        _undefine(dom)

    @_one_call_at_a_time
    def define_network(self, xml: str) -> None:
        try:
            net = self.conn.networkDefineXML(xml)
            if not net.isActive():
                net.create()
        except libvirt.libvirtError as exc:
            raise translate(exc, "defining a DR network") from None

    @_one_call_at_a_time
    def remove_network(self, name: str) -> None:
        try:
            net = self.conn.networkLookupByName(name)
        except libvirt.libvirtError as exc:
            if exc.get_error_code() == libvirt.VIR_ERR_NO_NETWORK:
                return
            raise translate(exc, f"network {name}") from None
        if net.isActive():
            net.destroy()
        net.undefine()


def checkpoint_escape(name: str | None) -> str:
    """Checkpoint names are dcctl-made ([a-z0-9-]); escape anyway."""
    return (name or "").replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _created(checkpoint: libvirt.virDomainCheckpoint) -> int:
    root = ET.fromstring(checkpoint.getXMLDesc(0))
    return int(root.findtext("creationTime", "0"))
