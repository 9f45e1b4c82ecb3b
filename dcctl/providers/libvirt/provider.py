"""The libvirt provider: the only module that imports libvirt.

Observation lists each kind once per host (domains, networks, pools, volumes) and reads only dcctl's own objects.
Every operation is idempotent (deterministic names and UUIDs: a re-run after a crash redefines the same object), every
wait has a deadline, and a libvirt object that carries a dcctl name without dcctl's metadata is never touched.
"""

from __future__ import annotations

import contextlib
import functools
import os
import queue
import threading
import urllib.parse
import weakref
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from typing import Any, ClassVar, TypeVar

import libvirt

from dcctl import failpoints
from dcctl.inventory import Inventory
from dcctl.inventory.model import LibvirtBackend
from dcctl.placement import Server
from dcctl.providers.base import (
    Conflict,
    FieldChanges,
    NotFound,
    PermanentError,
    ProgressCallback,
    ProviderError,
    TransientError,
    wait_until,
)
from dcctl.providers.libvirt import mapping
from dcctl.resources import NAME_PREFIX, DesiredResource, ObservedResource, stable_uuid

# libvirt prints every error to stderr by default; dcctl reports them itself.
libvirt.registerErrorHandler(lambda _ctx, _err: None, None)

#: keepalive on connections over a network: a host whose link died is dropped after about 5 × 3 s, instead of hanging
#: a call (or the close of its connection) until TCP gives up many minutes later
KEEPALIVE_INTERVAL, KEEPALIVE_COUNT = 5, 3


_EVENT_LOOP_LOCK = threading.Lock()


def _start_event_loop() -> None:
    """libvirt's keepalive needs an event loop: run the default one on a daemon thread, once per process. The lock
    matters: observe_all opens the first connections from several threads at once, and two loops (two
    virEventRegisterDefaultImpl calls) crash libvirt (SIGSEGV seen in a live migration after a parallel observe)."""
    with _EVENT_LOOP_LOCK:
        _start_event_loop_once()


@functools.cache
def _start_event_loop_once() -> None:
    libvirt.virEventRegisterDefaultImpl()

    def run() -> None:
        while True:
            libvirt.virEventRunDefaultImpl()

    threading.Thread(target=run, name="libvirt-events", daemon=True).start()


def _transport(uri: str) -> str:
    """A libvirt URI's transport: ``qemu+libssh://…`` → ``libssh``; none written (``qemu:///system``) → ``""``."""
    return urllib.parse.urlsplit(uri).scheme.partition("+")[2]


def _over_network(uri: str) -> bool:
    """Whether a libvirt URI reaches its daemon over a network (ssh, libssh, tls, tcp, …; a host name alone means
    tls) rather than through a local socket (``qemu:///system``, ``test+unix:///default``) or in-process."""
    transport = _transport(uri)
    return transport not in ("", "unix") or (not transport and bool(urllib.parse.urlsplit(uri).hostname))


def open_connection(uri: str) -> libvirt.virConnect:
    """Open a libvirt connection; one over a network gets keepalives, so that a dead host fails calls instead of
    hanging them. A local socket needs none, and goes without the event loop they need, which wakes on every call."""
    networked = _over_network(uri)
    if networked:
        _start_event_loop()
    conn = libvirt.open(uri)
    if networked:
        with contextlib.suppress(libvirt.libvirtError):
            conn.setKeepAlive(KEEPALIVE_INTERVAL, KEEPALIVE_COUNT)
    return conn


_NOT_FOUND = {
    libvirt.VIR_ERR_NO_DOMAIN,
    libvirt.VIR_ERR_NO_NETWORK,
    libvirt.VIR_ERR_NO_STORAGE_POOL,
    libvirt.VIR_ERR_NO_STORAGE_VOL,
}
_TRANSIENT = {
    libvirt.VIR_ERR_OPERATION_TIMEOUT,
    libvirt.VIR_ERR_NO_CONNECT,
    libvirt.VIR_ERR_RPC,
    libvirt.VIR_ERR_SYSTEM_ERROR,
    libvirt.VIR_ERR_AGENT_UNRESPONSIVE,
    libvirt.VIR_ERR_OPERATION_ABORTED,
}
_UNDEFINE_FLAGS = (
    libvirt.VIR_DOMAIN_UNDEFINE_MANAGED_SAVE
    | libvirt.VIR_DOMAIN_UNDEFINE_SNAPSHOTS_METADATA
    | libvirt.VIR_DOMAIN_UNDEFINE_NVRAM
    | getattr(libvirt, "VIR_DOMAIN_UNDEFINE_CHECKPOINTS_METADATA", 0)
)


def translate(exc: libvirt.libvirtError, what: str) -> ProviderError:
    """libvirt's error → dcctl's typed error, with libvirt's own message kept."""
    code = exc.get_error_code()
    message = f"{what}: {exc.get_error_message() or exc}"
    if code in _NOT_FOUND:
        return NotFound(message)
    if code in _TRANSIENT:
        return TransientError(message)
    if code == libvirt.VIR_ERR_AUTH_FAILED:
        return PermanentError(message, hint="check the SSH key and known_hosts in the backend's URI")
    return PermanentError(message)


class _Connections:
    """A small pool of connections to one host, one per change in flight: a change's calls can be long (create,
    start, a wait), and libvirtd works on only a few calls of one connection at once (max_client_requests, 5)."""

    def __init__(self, uri: str, size: int) -> None:
        self.uri = uri
        self.size = size
        self.idle: queue.LifoQueue[libvirt.virConnect] = queue.LifoQueue()
        self.opened: list[libvirt.virConnect] = []
        self.lock = threading.Lock()

    def _open(self) -> libvirt.virConnect:
        try:
            conn = open_connection(self.uri)
        except libvirt.libvirtError as exc:
            raise TransientError(
                f"cannot connect to {_redact(self.uri)}: {exc.get_error_message()}",
                hint="is the host up (scripts/lab status) and its host key in the known_hosts the URI names?",
            ) from None
        with self.lock:
            self.opened.append(conn)
        return conn

    @contextmanager
    def get(self) -> Iterator[libvirt.virConnect]:
        try:
            conn = self.idle.get_nowait()
        except queue.Empty:
            with self.lock:
                full = len(self.opened) >= self.size
            conn = self.idle.get(timeout=600) if full else self._open()
        try:
            yield conn
        finally:
            self.idle.put(conn)

    def close(self) -> None:
        with self.lock:
            for conn in self.opened:
                with contextlib.suppress(libvirt.libvirtError):
                    conn.close()
            self.opened.clear()


#: connections whose driver refused _UNDEFINE_FLAGS (libvirt's test driver knows no NVRAM or checkpoint flags): they
#: get a plain undefine straight away instead of a refused call first, for every domain
_PLAIN_UNDEFINE: weakref.WeakSet[libvirt.virConnect] = weakref.WeakSet()


def _undefine(dom: libvirt.virDomain) -> None:
    """Undefine with its snapshot, checkpoint and NVRAM metadata; drivers that know no such flags get a plain one."""
    conn = dom.connect()
    if conn not in _PLAIN_UNDEFINE:
        try:
            dom.undefineFlags(_UNDEFINE_FLAGS)
            return
        except libvirt.libvirtError as exc:
            if exc.get_error_code() not in (libvirt.VIR_ERR_INVALID_ARG, libvirt.VIR_ERR_NO_SUPPORT):
                raise
            _PLAIN_UNDEFINE.add(conn)
    dom.undefine()


def _key_volumes(observed: list[ObservedResource]) -> list[ObservedResource]:
    """Volumes carry no metadata: a volume attached to a dcctl server takes its key from the server's."""
    by_path = {}
    for r in observed:
        if r.kind == "server" and r.managed:
            for path in r.attrs.get("disks", []):
                disk = path.rsplit("/", 1)[-1].removeprefix(f"{r.name}-").removesuffix(".qcow2")
                by_path[path] = f"{r.key}/disk:{disk}"
    return [
        ObservedResource(r.kind, by_path[r.provider_id], r.backend, r.name, r.provider_id, r.attrs, r.managed)
        if r.kind == "volume" and r.provider_id in by_path
        else r
        for r in observed
    ]


#: reads in flight on one connection while observing. libvirtd works on several calls of one client at once (up to
#: its max_client_requests, 5 by default): on the test driver, 1,000 domains' XML took 0.125 s one call at a time,
#: 0.068 s four at a time, and a whole observe of them (2,000 calls) 0.38 → 0.28 s.
OBSERVE_READS = 4
#: transports on which calls go one at a time: libvirt 9.0's libssh client stalls 5-10 s (a keepalive tick) when
#: replies to calls in flight together arrive back to back (measured on the lab: 40 domains' XML four at a time, a
#: stall in 4 of 5 rounds; over OpenSSH, ``qemu+ssh``, none); libssh2 buffers the same way
SERIAL_TRANSPORTS = frozenset({"libssh", "libssh2"})

_T = TypeVar("_T")
_R = TypeVar("_R")


def _one_cpu() -> set[int] | None:
    """One CPU of those this process may run on: where a connection's readers run together (see ``_read_all``)."""
    try:
        return {min(os.sched_getaffinity(0))}
    except (AttributeError, OSError):  # no affinity on this platform
        return None


def _read_all(read: Callable[[_T], _R], items: list[_T], readers: int) -> list[_R]:
    """``read(item)`` for every item, ``readers`` calls in flight, results in the items' order; the first error
    raised is raised here.

    The readers share one CPU. A libvirt client lets one thread at a time work a connection's socket, and that
    thread hands each reply to the thread waiting for it: a wake-up per call, a costly one when the waiter sleeps
    on another CPU (an inter-processor interrupt; in a VM, an exit to the hypervisor). The GIL already runs one
    reader at a time, so sharing a CPU costs them nothing, and libvirtd keeps the other CPUs. Measured on this
    project's 2-CPU VM, 1,000 test-driver domains (2,000 calls): an observe took 0.22 s (0.15-0.24) with the
    readers free to move, 0.10 s (0.10-0.12) on one CPU. Only these short-lived threads are pinned; the process,
    and anything it starts, keep their affinity."""
    if readers < 2 or len(items) < 2 * readers:
        return [read(item) for item in items]
    out: list[Any] = [None] * len(items)
    cpu = _one_cpu()

    def read_slice(first: int) -> None:  # every readers-th item: one task per reader, not a future per call
        if cpu is not None:
            with contextlib.suppress(OSError):  # a cpuset changed under us: read unpinned
                os.sched_setaffinity(0, cpu)  # 0: this thread only (Linux affinity is per thread)
        out[first::readers] = [read(item) for item in items[first::readers]]

    with ThreadPoolExecutor(readers, thread_name_prefix="libvirt-observe") as pool:
        list(pool.map(read_slice, range(readers)))  # list(): the first error is raised here
    return out


def _redact(uri: str) -> str:
    """URIs never carry passwords in dcctl (refused at validation); still, never print a query string."""
    return uri.split("?", 1)[0]


class LibvirtProvider:
    name: ClassVar[str] = "libvirt"
    kinds: ClassVar[tuple[str, ...]] = mapping.KINDS

    def __init__(self, backend: LibvirtBackend, province: str, concurrency: int = 4) -> None:
        self.backend = backend
        self.province = province
        # libvirt's test driver keeps its state per connection (test:///FILE) or per process (test:///default):
        # one connection, held for the provider's lifetime, sees one consistent host.
        size = 1 if backend.uri.startswith("test:") else concurrency
        self.conns = _Connections(backend.uri, size)
        self.concurrency = concurrency
        #: calls in flight on the connection while observing
        self.readers = 1 if _transport(backend.uri) in SERIAL_TRANSPORTS else OBSERVE_READS
        #: dcctl's pool per connection (a handle names the pool by its name and UUID, both dcctl's: it outlives a
        #: redefinition of the pool)
        self._pools: dict[libvirt.virConnect, libvirt.virStoragePool] = {}

    # ---------------------------------------------------------------------------------------------- desired
    def desired(self, inv: Inventory, servers: Iterable[Server]) -> list[DesiredResource]:
        return mapping.desired_for(inv, self.backend, servers)

    # ---------------------------------------------------------------------------------------------- observe
    def observe(self) -> list[ObservedResource]:
        """One list call per kind; XML is read only for objects with dcctl's name prefix. Objects with that prefix
        but without this inventory's metadata come back with ``managed=False``: seen, never touched."""
        with self.conns.get() as conn:
            try:
                if self.readers > 1:  # storage and networks beside the domains (the longest list)
                    with ThreadPoolExecutor(1, thread_name_prefix="libvirt-observe") as aside:
                        storage = aside.submit(self._observe_storage, conn)
                        domains = list(self._observe_domains(conn))
                        out = storage.result() + domains
                else:
                    out = self._observe_storage(conn) + list(self._observe_domains(conn))
            except libvirt.libvirtError as exc:
                raise translate(exc, f"observing {self.backend.id}") from None
        return _key_volumes(out)

    def _owned(self, meta: dict[str, str], uuid: str) -> bool:
        """dcctl made it for this province and backend: its metadata says so, and its UUID is the one dcctl derives —
        for this backend, or for the backend a live migration brought it from (libvirt keeps a domain's UUID across
        a migration; ``<dcctl:uuid-backend>`` names the backend that minted it, see providers/libvirt/migrate.py)."""
        key = meta.get("key", "")
        if meta.get("province") != self.province or meta.get("backend") != self.backend.id or not key:
            return False
        return uuid == stable_uuid(self.province, meta.get("uuid-backend") or self.backend.id, key)

    def _observe_storage(self, conn: libvirt.virConnect) -> list[ObservedResource]:
        return [*self._observe_pool(conn), *self._observe_networks(conn)]

    def _observe_pool(self, conn: libvirt.virConnect) -> Iterator[ObservedResource]:
        pool_key = f"backend:{self.backend.id}/pool"
        for pool in conn.listAllStoragePools(0):
            if pool.name() != mapping.POOL_NAME:
                continue
            attrs = mapping.parse_pool(pool.XMLDesc(0))
            attrs["active"] = bool(pool.isActive())
            managed = attrs["uuid"] == stable_uuid(self.province, self.backend.id, pool_key)
            yield ObservedResource("pool", pool_key, self.backend.id, pool.name(), attrs["uuid"], attrs, managed)
            if not attrs["active"]:
                continue
            self._pools[conn] = pool
            pool.refresh(0)
            base = attrs["path"].rstrip("/")
            vols = [vol for vol in pool.listAllVolumes(0) if vol.name().startswith(NAME_PREFIX)]
            for vol, info in zip(vols, _read_all(lambda v: v.info(), vols, self.readers), strict=True):
                name = vol.name()
                key = f"volume:{name}"  # the key of an attached volume comes from its server (_key_volumes)
                vattrs = {"size_gb": round(info[1] / 2**30, 3), "path": f"{base}/{name}"}
                yield ObservedResource("volume", key, self.backend.id, name, vattrs["path"], vattrs, managed)

    def _observe_networks(self, conn: libvirt.virConnect) -> Iterator[ObservedResource]:
        active = {n.name() for n in conn.listAllNetworks(libvirt.VIR_CONNECT_LIST_NETWORKS_ACTIVE)}
        for net in conn.listAllNetworks(0):
            name = net.name()
            if name.startswith(NAME_PREFIX):
                attrs = mapping.parse_network(net.XMLDesc(0))
                attrs["active"] = name in active
                yield self._identified("network", name, attrs)

    def _observe_domains(self, conn: libvirt.virConnect) -> Iterator[ObservedResource]:
        """Running or not comes with the XML (libvirt writes the id of an active domain only): no second listing."""
        doms = [dom for dom in conn.listAllDomains(0) if dom.name().startswith(NAME_PREFIX)]
        found = _read_all(lambda d: mapping.parse_domain(d.XMLDesc(0)), doms, self.readers)
        for dom, attrs in zip(doms, found, strict=True):
            yield self._identified("server", dom.name(), attrs)

    def _identified(self, kind: str, name: str, attrs: dict[str, Any]) -> ObservedResource:
        """A network or domain keyed by its dcctl metadata when it is this inventory's, else foreign (unmanaged)."""
        meta = attrs.pop("metadata")
        if self._owned(meta, attrs["uuid"]):
            attrs["digest"] = meta.get("digest", "")
            return ObservedResource(kind, meta["key"], self.backend.id, name, attrs["uuid"], attrs)
        return ObservedResource(kind, f"{kind}:{name}", self.backend.id, name, attrs["uuid"], attrs, False)

    # ------------------------------------------------------------------------------------------------- plan
    def plan(self, desired: DesiredResource, observed: ObservedResource) -> FieldChanges:
        spec, attrs = desired.spec, observed.attrs
        changed: list[str] = []
        replace: list[str] = []
        before: dict[str, Any] = {}
        after: dict[str, Any] = {}

        def differ(field: str, want: Any, have: Any, *, forces_replace: bool = False) -> None:
            if want != have:
                changed.append(field)
                before[field], after[field] = have, want
                if forces_replace:
                    replace.append(field)

        if desired.kind == "server":
            differ("vcpus", spec["vcpus"], attrs.get("vcpus"))
            differ("ram_mb", spec["ram_mb"], attrs.get("ram_mb"))
            differ("disks", [d["path"] for d in spec["disks"]], attrs.get("disks"))
            differ("networks", list(spec["networks"]), attrs.get("networks"))
            differ("running", True, attrs.get("running"))
            if not changed and attrs.get("digest") != desired.spec_digest:
                differ("spec", desired.spec_digest, attrs.get("digest"))
        elif desired.kind == "network":
            differ("mode", spec["mode"], attrs.get("mode"), forces_replace=True)
            if spec["mode"] != "isolated":
                differ("cidr", spec["cidr"], attrs.get("cidr"), forces_replace=True)
            differ("bridge", spec["bridge"], attrs.get("bridge"), forces_replace=True)
            differ("active", True, attrs.get("active"))
        elif desired.kind == "volume":
            have = attrs.get("size_gb")
            if have is not None and spec["size_gb"] > have:
                differ("size_gb", spec["size_gb"], have)
        elif desired.kind == "pool":
            differ("path", spec["path"], attrs.get("path"), forces_replace=True)
            differ("active", True, attrs.get("active"))
        return FieldChanges(tuple(changed), tuple(replace), before or None, after or None)

    # ------------------------------------------------------------------------------------------------ apply
    def apply(
        self,
        desired: DesiredResource,
        observed: ObservedResource | None,
        *,
        deadline: float,
        on_progress: ProgressCallback,
    ) -> ObservedResource:
        with self.conns.get() as conn:
            try:
                if desired.kind == "pool":
                    self._apply_pool(conn, desired)
                elif desired.kind == "network":
                    self._apply_network(conn, desired, observed)
                elif desired.kind == "volume":
                    self._apply_volume(conn, desired, observed)
                elif desired.kind == "server":
                    self._apply_server(conn, desired, observed, deadline, on_progress)
                else:  # pragma: no cover - closed set
                    raise PermanentError(f"libvirt cannot make a {desired.kind}")
            except libvirt.libvirtError as exc:
                raise translate(exc, f"{desired.kind} {desired.name} on {self.backend.id}") from None
        return ObservedResource(desired.kind, desired.key, self.backend.id, desired.name, desired.name)

    def _xml(self, desired: DesiredResource) -> str:
        return mapping.render_xml(desired, self.province)

    def _pool(self, conn: libvirt.virConnect) -> libvirt.virStoragePool:
        """dcctl's pool on this connection, looked up once (observe and making the pool renew the handle)."""
        pool = self._pools.get(conn)
        if pool is None:
            pool = self._pools[conn] = conn.storagePoolLookupByName(mapping.POOL_NAME)
        return pool

    def _apply_pool(self, conn: libvirt.virConnect, desired: DesiredResource) -> None:
        try:
            pool = conn.storagePoolLookupByName(desired.name)
        except libvirt.libvirtError as exc:
            if exc.get_error_code() != libvirt.VIR_ERR_NO_STORAGE_POOL:
                raise
            pool = conn.storagePoolDefineXML(self._xml(desired), 0)
            failpoints.reach("libvirt.pool-defined")
        self._pools[conn] = pool
        if not pool.isActive():
            pool.build(0)
            pool.create(0)
        pool.setAutostart(1)

    def _apply_network(
        self, conn: libvirt.virConnect, desired: DesiredResource, observed: ObservedResource | None
    ) -> None:
        if observed is not None and observed.attrs.get("active") and self._network_needs_restart(desired, observed):
            conn.networkLookupByName(desired.name).destroy()
        net = conn.networkDefineXML(self._xml(desired))
        failpoints.reach("libvirt.network-defined")
        if not net.isActive():
            net.create()
        net.setAutostart(1)

    def _network_needs_restart(self, desired: DesiredResource, observed: ObservedResource) -> bool:
        return bool(self.plan(desired, observed).requires_replace)

    def _apply_volume(
        self, conn: libvirt.virConnect, desired: DesiredResource, observed: ObservedResource | None
    ) -> None:
        pool = self._pool(conn)
        if observed is None:  # observe listed every volume of the pool: this one was not there
            try:
                pool.createXML(self._xml(desired), 0)
                return
            except libvirt.libvirtError:
                if desired.name not in pool.listVolumes():  # made meanwhile: it is grown below if it must be
                    raise
        vol = pool.storageVolLookupByName(desired.name)
        want = int(desired.spec["size_gb"]) * 2**30
        if vol.info()[1] < want:
            vol.resize(want, 0)

    def _apply_server(
        self,
        conn: libvirt.virConnect,
        desired: DesiredResource,
        observed: ObservedResource | None,
        deadline: float,
        on_progress: ProgressCallback,
    ) -> None:
        restart = False
        if observed is not None:
            self.verify_owned(observed)
            changes = self.plan(desired, observed)
            restart = bool(set(changes.changed) & {"vcpus", "ram_mb", "disks", "networks", "spec"}) and bool(
                observed.attrs.get("running")
            )
            if observed.provider_id != stable_uuid(self.province, self.backend.id, desired.key):
                # a live-migrated domain: libvirt cannot redefine it under this backend's UUID, so it takes that
                # identity now — any change restarts it anyway (or it is not running)
                migrated = conn.lookupByName(desired.name)
                if migrated.isActive():
                    on_progress("restarting under this backend's identity (it was live-migrated here)")
                    migrated.destroy()
                _undefine(migrated)
                restart = False
        dom = conn.defineXML(self._xml(desired))
        failpoints.reach("libvirt.domain-defined")
        dom.setAutostart(1)
        if restart:
            on_progress("restarting to apply the new definition")
            dom.destroy()
        if restart or observed is None or not dom.isActive():  # a domain observe did not list was not running
            on_progress("starting")
            try:
                dom.createWithFlags(0)  # create() costs a second call: a lookup for the new domain's id
            except libvirt.libvirtError:
                if not dom.isActive():  # unless it was started meanwhile, which is what was asked
                    raise
            failpoints.reach("libvirt.domain-started")
        wait_until(
            lambda: bool(dom.isActive()),
            deadline=deadline,
            what=f"server {desired.name} to run",
            where=self.backend.id,
            on_progress=on_progress,
            max_delay=1.0,
        )

    # ----------------------------------------------------------------------------------------------- delete
    def verify_owned(self, observed: ObservedResource) -> None:
        if not observed.managed:
            raise Conflict(
                f"{observed.kind} '{observed.name}' on {self.backend.id} was not created by dcctl "
                f"(no dcctl metadata for this inventory, or another UUID: {observed.provider_id})",
                hint="dcctl never touches it: rename or remove it by hand, or rename the dcctl object in the inventory",
            )

    def delete(self, observed: ObservedResource, *, deadline: float) -> None:
        self.verify_owned(observed)
        with self.conns.get() as conn:
            try:
                if observed.kind == "server":
                    dom = conn.lookupByName(observed.name)
                    if dom.isActive():
                        dom.destroy()
                        failpoints.reach("libvirt.domain-destroyed")
                    _undefine(dom)
                elif observed.kind == "volume":
                    self._pool(conn).storageVolLookupByName(observed.name).delete(0)
                elif observed.kind == "network":
                    net = conn.networkLookupByName(observed.name)
                    if net.isActive():
                        net.destroy()
                    net.undefine()
                elif observed.kind == "pool":
                    pool = conn.storagePoolLookupByName(observed.name)
                    if pool.isActive():
                        pool.destroy()
                    pool.undefine()
                    self._pools.clear()
            except libvirt.libvirtError as exc:
                err = translate(exc, f"deleting {observed.kind} {observed.name}")
                if not isinstance(err, NotFound):
                    raise err from None

    def close(self) -> None:
        self._pools.clear()
        self.conns.close()
