"""DR operations over an opened inventory: which servers are protected and where they run, then replicate, drill,
fail over, fail back — each recorded in the catalog and the audit log."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager, suppress
from typing import Any

from dcctl.dr import catalog
from dcctl.dr.links import Links
from dcctl.dr.recovery import Recovery, RecoveryResult
from dcctl.dr.replicate import (
    DR_SITE_TIMEOUT,
    Progress,
    ProtectedServer,
    ReplicationResult,
    Replicator,
    ServerResult,
    _quiet,
    dr_backend_for,
    new_point_set,
)
from dcctl.dr.ssh import CONNECT_TIMEOUT, SshTarget
from dcctl.engine.apply import take_locks
from dcctl.engine.session import Session
from dcctl.errors import DcctlError, UsageError
from dcctl.inventory.model import LibvirtBackend, Workload
from dcctl.plan.build import observe_all
from dcctl.state.audit import AuditEvent, record
from dcctl.state.store import Holder


def protected_workloads(session: Session, only: Iterable[str] = ()) -> list[Workload]:
    wanted = list(only)
    inv = session.inv
    for wid in wanted:
        if wid not in inv.workloads:
            raise UsageError(f"no workload '{wid}' in this inventory", hint="see 'dcctl dr status'")
        if inv.workloads[wid][1].dr is None:
            raise UsageError(f"workload '{wid}' has no DR policy", hint="add 'dr: {rpo: …, rto: …}' to it")
    return [w for _, w in (inv.workloads[i] for i in sorted(inv.workloads)) if w.dr and (not wanted or w.id in wanted)]


def protected_servers(session: Session, workloads: list[Workload]) -> dict[str, list[ProtectedServer]]:
    """Each workload's servers as they run now, observed once on the hosts they may run on (not the DR site's)."""
    eligible = {
        w.id: {b.id for b in session.inv.eligible_backends(session.inv.workloads[w.id][0], w)} for w in workloads
    }
    wanted = set().union(*eligible.values()) if eligible else set()
    providers = {b: p for b, p in session.providers().items() if b in wanted}
    found: dict[str, list[ProtectedServer]] = {w.id: [] for w in workloads}
    for backend_id, obs in observe_all(providers).items():
        backend = session.inv.backends[backend_id][1]
        if obs.error is not None or not isinstance(backend, LibvirtBackend):
            continue
        for r in obs.resources:
            if r.kind != "server" or not r.managed or not r.key.startswith("server:"):
                continue
            workload_id = r.key.removeprefix("server:").split("/", 1)[0]
            if backend_id in eligible.get(workload_id, ()):
                found[workload_id].append(ProtectedServer(workload_id, r.key, r.name, backend))
    return {w: sorted(servers, key=lambda s: s.key) for w, servers in found.items()}


@contextmanager
def _one_run_per_workload(
    session: Session, workloads: Iterable[str], command: str, progress: Progress
) -> Iterator[None]:
    """The workloads' DR locks (``dr:<workload>``, in the state's lock table) for the run: a scheduled ``dr run``
    and an operator's replicate, drill or failover of the same workload would otherwise take points of the same
    disks, or resume the same transfer into the same part file, side by side. A dead run's lock is taken over."""
    names = sorted({f"dr:{w}" for w in workloads})
    holder = Holder.me(command)
    take_locks(session.store, names, holder, None, lambda event: progress(event.message))
    try:
        yield
    finally:
        session.store.unlock(names, holder)


def _audit(session: Session, action: str, target: str, ok: bool, detail: dict[str, Any]) -> None:
    record(
        session.store, AuditEvent(action=action, target=target, outcome="succeeded" if ok else "failed", detail=detail)
    )


#: servers replicated at once: each is mostly waiting (on QEMU's backup job, a stream, a digest on another host)
PARALLEL_SERVERS = 4


def replicate(
    session: Session,
    workloads: Iterable[str] = (),
    *,
    progress: Progress = _quiet,
    parallel: int = PARALLEL_SERVERS,
) -> list[ReplicationResult]:
    """A point of every server of the protected workloads (all, or those named), ``parallel`` servers at a time.
    A DR site that stops answering fails the server that found out; servers not yet started toward it are skipped
    (reported as such) rather than each waiting for it in turn."""
    chosen = [w for w in protected_workloads(session, workloads) if _runs_at_source(session, w, progress)]
    with _one_run_per_workload(session, [w.id for w in chosen], "dr replicate", progress):
        return _replicate(session, chosen, progress, parallel)


def _replicate(session: Session, chosen: list[Workload], progress: Progress, parallel: int) -> list[ReplicationResult]:
    with Links() as links:
        _open_links(session, chosen, links)  # while the observation below finds where the servers run
        return _replicate_servers(session, chosen, protected_servers(session, chosen), links, progress, parallel)


def _open_links(session: Session, chosen: list[Workload], links: Links) -> None:
    """Start connecting to the DR sites and to the libvirt hosts the workloads may run on."""
    for workload in chosen:
        tenancy = session.inv.workloads[workload.id][0]
        with suppress(DcctlError):  # no DR site: _replicate_servers says so
            links.prefetch(
                ssh=[(SshTarget.from_uri(dr_backend_for(session.inv, tenancy, workload).uri), DR_SITE_TIMEOUT)]
            )
        for backend in session.inv.eligible_backends(tenancy, workload):
            if isinstance(backend, LibvirtBackend):
                with suppress(DcctlError):  # a URI not reached over SSH: the server's own run says so
                    links.prefetch(ssh=[(SshTarget.from_uri(backend.uri), CONNECT_TIMEOUT)], libvirt=[backend])


def _replicate_servers(
    session: Session,
    chosen: list[Workload],
    servers: dict[str, list[ProtectedServer]],
    links: Links,
    progress: Progress,
    parallel: int,
) -> list[ReplicationResult]:
    results: list[ReplicationResult] = []
    jobs: list[tuple[ReplicationResult, Replicator, ProtectedServer, str]] = []
    for workload in chosen:
        if not servers[workload.id]:
            raise DcctlError(
                f"workload '{workload.id}' has no server running on a libvirt backend to replicate",
                hint="apply the inventory first (dcctl apply)",
            )
        target = dr_backend_for(session.inv, session.inv.workloads[workload.id][0], workload)
        result = ReplicationResult(workload.id, target.id)
        replicator = Replicator(session.store, workload, target, progress=progress)
        point_set = new_point_set()
        results.append(result)
        jobs += [(result, replicator, server, point_set) for server in servers[workload.id]]
    unreachable: dict[str, ServerResult] = {}  # DR backend → the first server that found it not answering

    def run(job: tuple[ReplicationResult, Replicator, ProtectedServer, str]) -> ServerResult:
        result, replicator, server, point_set = job
        seen = unreachable.get(result.target_backend)
        if seen is not None:
            return ServerResult(server.name, False, error=f"skipped: {seen.error}", hint=seen.hint)
        res = replicator.replicate(server, point_set, links)
        if res.target_unreachable:
            unreachable.setdefault(result.target_backend, res)
        _audit(
            session,
            "dr.replicate",
            f"{server.source.id}:{server.key}",
            res.ok,
            {
                "point_set": point_set,
                "kind": res.kind,
                "shipped_bytes": res.shipped_bytes,
                "target": result.target_backend,
                "error": res.error,
            },
        )
        return res

    with ThreadPoolExecutor(max(1, parallel)) as pool:
        for (result, *_), res in zip(jobs, pool.map(run, jobs), strict=True):
            result.servers.append(res)
    return results


def _runs_at_source(session: Session, workload: Workload, progress: Progress) -> bool:
    if catalog.active_site(session.store, workload.id) == "dr":
        progress(f"{workload.id}: runs at the DR site since a failover; skipped (fail back first)")
        return False
    return True


def _sources(session: Session, workload: Workload) -> dict[str, LibvirtBackend]:
    """Server name → the backend it runs on, from the last point (works when the source cannot be observed)."""
    point = catalog.last_good_point(session.store, workload.id)
    if point is None:
        raise DcctlError(f"workload '{workload.id}' was never replicated", hint="dcctl dr replicate first")
    out = {}
    for d in point.disks:
        backend = session.inv.backends[d.source_backend][1]
        assert isinstance(backend, LibvirtBackend)
        out[d.server] = backend
    return out


def recover(
    session: Session, workload_id: str, kind: str, *, planned: bool = True, progress: Progress = _quiet
) -> RecoveryResult:
    [workload] = protected_workloads(session, [workload_id])
    recovery = Recovery(session.inv, session.store, workload, progress=progress)
    with _one_run_per_workload(session, [workload_id], f"dr {kind}", progress):
        if kind == "drill":
            result = recovery.drill()
        elif kind == "failover":
            result = recovery.failover(_sources(session, workload), planned=planned)
        else:
            result = recovery.failback(_sources(session, workload))
    _audit(
        session,
        f"dr.{kind}",
        workload_id,
        result.ok,
        {"rto_seconds": result.rto_seconds, "point_set": result.point_set, "error": result.error},
    )
    return result
