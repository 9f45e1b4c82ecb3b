"""DR operations over an opened inventory: which servers are protected and where they run, then replicate, drill,
fail over, fail back — each recorded in the catalog and the audit log."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from dcctl.dr import catalog
from dcctl.dr.recovery import Recovery, RecoveryResult
from dcctl.dr.replicate import (
    Progress,
    ProtectedServer,
    ReplicationResult,
    Replicator,
    ServerResult,
    _quiet,
    dr_backend_for,
    new_point_set,
)
from dcctl.engine.session import Session
from dcctl.errors import DcctlError, UsageError
from dcctl.inventory.model import LibvirtBackend, Workload
from dcctl.plan.build import observe_all


def protected_workloads(session: Session, only: Iterable[str] = ()) -> list[Workload]:
    wanted = list(only)
    inv = session.inv
    for wid in wanted:
        if wid not in inv.workloads:
            raise UsageError(f"no workload '{wid}' in this inventory", hint="see 'dcctl dr status'")
        if inv.workloads[wid][1].dr is None:
            raise UsageError(f"workload '{wid}' has no DR policy", hint="add 'dr: {rpo: …, rto: …}' to it")
    return [w for _, w in (inv.workloads[i] for i in sorted(inv.workloads)) if w.dr and (not wanted or w.id in wanted)]


def servers_of(session: Session, workload: Workload) -> list[ProtectedServer]:
    """The workload's servers as they run now, observed on the hosts it may run on only (not the DR site's)."""
    tenancy = session.inv.workloads[workload.id][0]
    eligible = {b.id for b in session.inv.eligible_backends(tenancy, workload)}
    providers = {b: p for b, p in session.providers().items() if b in eligible}
    found = []
    for backend_id, obs in observe_all(providers).items():
        if obs.error is not None:
            continue
        backend = session.inv.backends[backend_id][1]
        for r in obs.resources:
            if r.kind == "server" and r.managed and r.key.startswith(f"server:{workload.id}/"):
                if not isinstance(backend, LibvirtBackend):
                    continue
                found.append(ProtectedServer(workload.id, r.key, r.name, backend))
    return sorted(found, key=lambda s: s.key)


def _audit(session: Session, action: str, target: str, ok: bool, detail: dict[str, Any]) -> None:
    try:
        from dcctl.state.audit import AuditEvent, record
    except ImportError:  # the audit trail arrives with its own module
        return
    record(
        session.store, AuditEvent(action=action, target=target, outcome="succeeded" if ok else "failed", detail=detail)
    )


def replicate(
    session: Session, workloads: Iterable[str] = (), *, progress: Progress = _quiet
) -> list[ReplicationResult]:
    results = []
    for workload in protected_workloads(session, workloads):
        tenancy = session.inv.workloads[workload.id][0]
        if catalog.active_site(session.store, workload.id) == "dr":
            progress(f"{workload.id}: runs at the DR site since a failover; skipped (fail back first)")
            continue
        target = dr_backend_for(session.inv, tenancy, workload)
        result = ReplicationResult(workload.id, target.id)
        servers = servers_of(session, workload)
        if not servers:
            raise DcctlError(
                f"workload '{workload.id}' has no server running on a libvirt backend to replicate",
                hint="apply the inventory first (dcctl apply)",
            )
        replicator = Replicator(session.store, workload, target, progress=progress)
        point_set = new_point_set()
        unreachable: ServerResult | None = None
        for server in servers:
            if unreachable is not None:  # the DR site stopped answering: do not wait for it once per server
                result.servers.append(
                    ServerResult(server.name, False, error=f"skipped: {unreachable.error}", hint=unreachable.hint)
                )
                continue
            res = replicator.replicate(server, point_set)
            if res.target_unreachable:
                unreachable = res
            result.servers.append(res)
            _audit(
                session,
                "dr.replicate",
                f"{server.source.id}:{server.key}",
                res.ok,
                {
                    "point_set": point_set,
                    "kind": res.kind,
                    "shipped_bytes": res.shipped_bytes,
                    "target": target.id,
                    "error": res.error,
                },
            )
        results.append(result)
    return results


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
