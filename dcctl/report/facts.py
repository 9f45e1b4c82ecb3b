"""Gather an evidence report's facts: the inventory, a live observation, state, the DR catalog, audit and policy.

The result is one JSON-able document (``docs/report-schema.json``, ``format_version`` below); every renderer formats
that same document, so the HTML an auditor reads and the JSON a tool reads cannot disagree. Nothing is invented: a
figure that needs a live observation of a backend that was not (or could not be) observed is ``null`` next to an
``observation`` saying why; a DR figure never measured is ``null`` with status ``not_measured``.
"""

from __future__ import annotations

import os
from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from dcctl import __version__
from dcctl.api import Validation
from dcctl.inventory.model import Backend, LibvirtBackend, OpenStackBackend, Tenancy, Workload
from dcctl.placement import servers as declared_servers
from dcctl.resources import ObservedResource
from dcctl.standards import Standards, load_standards
from dcctl.state.store import Store

if TYPE_CHECKING:
    from dcctl.plan.build import Observation
    from dcctl.plan.model import Plan

#: version of the report document; bump on any incompatible change of docs/report-schema.json
FORMAT_VERSION = 1
SCHEMA_ID = "https://dcctl.invalid/schemas/report-1.json"
#: newest audit entries shown in the change history (the verification covers all of them)
HISTORY_LIMIT = 200

#: rules whose holding is the network-isolation evidence
ISOLATION_RULES = ("net-zone-exclusive", "net-zone-backend", "net-cidr-overlap", "mlps-l4-dedicated-pool")

Doc = dict[str, Any]


@dataclass
class Observed:
    """What a live observation found, per backend; ``status`` of every backend of the inventory."""

    requested: bool
    at: str | None = None
    status: dict[str, tuple[str, str]] = field(default_factory=dict)  # backend → (status, reason)
    resources: dict[str, list[ObservedResource]] = field(default_factory=dict)  # only observed backends
    drift: Plan | None = None

    def ok(self, backend: str) -> bool:
        return self.status.get(backend, ("", ""))[0] == "observed"


# ------------------------------------------------------------------------------------------------ gathering
def gather(
    path: str | Path,
    *,
    state: str | Path | None = None,
    observe: bool = True,
    now: datetime | None = None,
) -> Doc:
    """Build the report document for an inventory; observes its backends live unless ``observe`` is False."""
    from dcctl import api
    from dcctl.state import open_store

    validation = api.validate(path)
    now = now or datetime.now(UTC)
    if observe and validation.valid:
        from dcctl.engine.session import Session

        with Session(path, state_path=state) as session:
            observed = observe_session(session)
            return collect(validation, session.store, observed, now=now)
    store = open_store(path, state)
    try:
        reason = "observation not requested (--no-observe)" if not observe else "the inventory has errors"
        status = "not_requested" if not observe else "skipped"
        observed = Observed(False, status=dict.fromkeys(validation.inventory.backends, (status, reason)))
        return collect(validation, store, observed, now=now)
    finally:
        store.close()


def observe_session(session: Any) -> Observed:
    """Observe every backend a session has a provider for (the observation ``Session.status`` is built on: status
    entries drop sizes, capacity needs them), then ask the session for drift."""
    at = datetime.now(UTC).isoformat(timespec="seconds")
    observations: Mapping[str, Observation] = session.observe()
    out = Observed(True, at=at)
    for bid, (_, backend) in session.inv.backends.items():
        obs = observations.get(bid)
        if obs is None:
            out.status[bid] = ("unsupported", f"this dcctl cannot observe {backend.type} backends yet")
        elif obs.error is not None:
            out.status[bid] = ("unreachable", obs.error.message)
        else:
            out.status[bid] = ("observed", "")
            out.resources[bid] = list(obs.resources)
    if out.resources:
        out.drift = session.drift()
    return out


# ---------------------------------------------------------------------------------------------------- helpers
def _iso(value: datetime | None) -> str | None:
    return value.isoformat(timespec="seconds") if value else None


def _secs(value: timedelta | None) -> float | None:
    return round(value.total_seconds(), 1) if value is not None else None


def endpoint(backend: Backend) -> str:
    """Where a backend is, for people: the host of a libvirt URI (never its query string, user or key paths), or a
    cloud's clouds.yaml name and region (never its credentials)."""
    if isinstance(backend, LibvirtBackend):
        parts = urlsplit(backend.uri)
        host = parts.hostname or ""
        return f"{parts.scheme}://{host}" if host else f"{parts.scheme}://{parts.path.split('?', 1)[0]}"
    if isinstance(backend, OpenStackBackend):
        return f"cloud {backend.cloud}" + (f" / {backend.region}" if backend.region else "")
    return ""  # pragma: no cover - closed union


def _workload_of(key: str) -> str | None:
    """``server:<workload>/<group>/<n>[/disk:x]`` → the workload id."""
    scope, _, rest = key.partition(":")
    return rest.split("/", 1)[0] if scope == "server" and rest else None


@dataclass
class _Use:
    vcpus: float = 0
    ram_gb: float = 0
    storage_gb: float = 0
    servers: int = 0
    running: int = 0

    def doc(self) -> Doc:
        return {
            "vcpus": round(self.vcpus, 2),
            "ram_gb": round(self.ram_gb, 2),
            "storage_gb": round(self.storage_gb, 2),
            "servers": self.servers,
            "running": self.running,
        }


def _usage(resources: Iterable[ObservedResource]) -> tuple[_Use, dict[str, _Use], dict[str, set[str]]]:
    """Observed usage of a backend, of each workload on it, and the backends each workload's servers run on."""
    total = _Use()
    per: dict[str, _Use] = defaultdict(_Use)
    where: dict[str, set[str]] = defaultdict(set)
    for r in resources:
        if not r.managed:
            continue
        wid = _workload_of(r.key)
        if r.kind == "server":
            running = 1 if r.attrs.get("running") else 0
            vcpus, ram = float(r.attrs.get("vcpus", 0) or 0), float(r.attrs.get("ram_mb", 0) or 0) / 1024
            total.servers += 1
            total.running += running
            total.vcpus += vcpus
            total.ram_gb += ram
            if wid:
                per[wid].servers += 1
                per[wid].running += running
                per[wid].vcpus += vcpus
                per[wid].ram_gb += ram
                where[wid].add(r.backend)
        elif r.kind == "volume":
            size = float(r.attrs.get("size_gb", 0) or 0)
            total.storage_gb += size
            if wid:
                per[wid].storage_gb += size
    return total, per, where


# ---------------------------------------------------------------------------------------------------- collect
def collect(validation: Validation, store: Store, observed: Observed, *, now: datetime | None = None) -> Doc:
    """The report document from a validated inventory, the state store and what was observed."""
    from dcctl.state import audit

    now = now or datetime.now(UTC)
    inv = validation.inventory
    std = load_standards()
    province = inv.province
    dr_edition = province.standards.dr if province else "GB/T 20988-2025"
    levels_from, _ = std.dr_levels(dr_edition)

    backend_use: dict[str, _Use] = {}
    workload_use: dict[str, _Use] = defaultdict(_Use)
    workload_where: dict[str, set[str]] = defaultdict(set)
    for bid, resources in observed.resources.items():
        total, per, where = _usage(resources)
        backend_use[bid] = total
        for wid, use in per.items():
            w = workload_use[wid]
            w.vcpus += use.vcpus
            w.ram_gb += use.ram_gb
            w.storage_gb += use.storage_gb
            w.servers += use.servers
            w.running += use.running
        for wid, backends in where.items():
            workload_where[wid] |= backends

    verification = audit.verify(store)
    history = list(audit.entries(store, limit=HISTORY_LIMIT, newest_first=True))
    per_workload_audit: Counter[str] = Counter()
    for e in audit.entries(store):
        owner = _workload_of(e.target.split(":", 1)[1]) if ":" in e.target else None
        per_workload_audit[owner or e.target] += 1

    ctx = _Ctx(validation, store, observed, std, now, backend_use, workload_use, workload_where)
    doc: Doc = {
        "$schema": SCHEMA_ID,
        "format_version": FORMAT_VERSION,
        "generated_at": now.isoformat(timespec="seconds"),
        "dcctl_version": __version__,
        "inventory": {
            "path": inv.root,
            "digest": inv.digest,
            "files": len(inv.files),
            "valid": validation.valid,
        },
        "province": {
            "id": province.id if province else None,
            "name": province.name if province else None,
            "name_en": (province.name_en or None) if province else None,
            "dr_site": province.dr_site if province else None,
            "standards": {
                "dr": dr_edition,
                "dr_levels_from": levels_from,
                "dr_source_note": str(std.raw["gbt20988"][levels_from].get("source_note", "")).strip(),
                "mlps": province.standards.mlps if province else "GB/T 22239-2019",
            },
            "audit_retention_days": province.audit.retention_days if province else None,
            "audit_retention_minimum_days": std.minimum_audit_retention_days,
        },
        "observation": _observation(ctx),
        "estate": _estate(ctx),
        "tenancies": [_tenancy(ctx, t) for t in sorted(inv.tenancies.values(), key=lambda t: t.id)],
        "networks": _networks(ctx),
        "workloads": [
            _workload(ctx, t, w, verification.ok, per_workload_audit.get(wid, 0))
            for wid, (t, w) in sorted(inv.workloads.items())
        ],
        "policy": {
            "errors": len(validation.diagnostics.errors),
            "warnings": len(validation.diagnostics.warnings),
            "findings": [d.to_dict() for d in validation.diagnostics.sorted()],
        },
        "drift": _drift(ctx),
        "legacy_data_centers": _legacy(ctx),
        "runs": _runs(store),
        "audit": {
            "verification": verification.to_dict(),
            "entries_total": audit.count(store),
            "entries": [e.to_dict() for e in history],
        },
    }
    return doc


@dataclass
class _Ctx:
    validation: Validation
    store: Store
    observed: Observed
    std: Standards
    now: datetime
    backend_use: dict[str, _Use]
    workload_use: dict[str, _Use]
    workload_where: dict[str, set[str]]

    @property
    def inv(self) -> Any:
        return self.validation.inventory

    def obs(self, backend: str) -> Doc:
        status, reason = self.observed.status.get(backend, ("not_requested", "observation not requested"))
        return {"status": status, "reason": reason}


def _observation(ctx: _Ctx) -> Doc:
    counted = Counter(s for s, _ in ctx.observed.status.values())
    return {
        "requested": ctx.observed.requested,
        "at": ctx.observed.at,
        "backends": len(ctx.inv.backends),
        "counts": {
            k: counted.get(k, 0) for k in ("observed", "unreachable", "unsupported", "not_requested", "skipped")
        },
    }


def _capacity(b: Backend) -> tuple[Doc, Doc]:
    cap = {"vcpus": b.capacity.vcpus, "ram_gb": b.capacity.ram_gb, "storage_gb": b.capacity.storage_gb}
    alloc = {
        "vcpus": round(b.capacity.vcpus * b.overcommit.cpu, 2),
        "ram_gb": round(b.capacity.ram_gb * b.overcommit.ram, 2),
        "storage_gb": round(b.capacity.storage_gb * b.overcommit.storage, 2),
    }
    return cap, alloc


def _estate(ctx: _Ctx) -> Doc:
    inv = ctx.inv
    applied = ctx.store.applied()
    applied_servers = Counter(b for (b, _), r in applied.items() if r.kind == "server")
    dcs = []
    tiers: dict[str, Doc] = {}
    for dc in sorted(inv.data_centers.values(), key=lambda d: (_TIER_ORDER.get(d.tier.value, 9), d.id)):
        backends = []
        for b in dc.backends:
            cap, alloc = _capacity(b)
            use = ctx.backend_use.get(b.id) if ctx.observed.ok(b.id) else None
            backends.append(
                {
                    "id": b.id,
                    "type": b.type,
                    "endpoint": endpoint(b),
                    "zones": [z.value for z in b.zones],
                    "level": b.level,
                    "dedicated": b.dedicated,
                    "capacity": cap,
                    "overcommit": {"cpu": b.overcommit.cpu, "ram": b.overcommit.ram, "storage": b.overcommit.storage},
                    "allocatable": alloc,
                    "used": use.doc() if use is not None else None,
                    "applied_servers": applied_servers.get(b.id, 0),
                    "observation": ctx.obs(b.id),
                }
            )
        entry = {
            "id": dc.id,
            "name": dc.name,
            "tier": dc.tier.value,
            "role": dc.role.value,
            "city": dc.city,
            "legacy": dc.legacy,
            "consolidate_into": dc.consolidate_into,
            "tenancies": sorted(t.id for t in inv.tenancies_in(dc.id)),
            "backends": backends,
            "allocatable": _sum([b["allocatable"] for b in backends]),
            "used": _sum([b["used"] for b in backends if b["used"] is not None]),
            "observed_backends": sum(1 for b in backends if b["used"] is not None),
        }
        dcs.append(entry)
        tier = tiers.setdefault(
            dc.tier.value,
            {"tier": dc.tier.value, "data_centers": 0, "backends": 0, "observed_backends": 0, "_a": [], "_u": []},
        )
        tier["data_centers"] += 1
        tier["backends"] += len(backends)
        tier["observed_backends"] += entry["observed_backends"]
        tier["_a"].append(entry["allocatable"])
        tier["_u"].append(entry["used"])
    by_tier = []
    for t in sorted(tiers.values(), key=lambda t: _TIER_ORDER.get(t["tier"], 9)):
        by_tier.append(
            {
                "tier": t["tier"],
                "data_centers": t["data_centers"],
                "backends": t["backends"],
                "observed_backends": t["observed_backends"],
                "allocatable": _sum(t["_a"]),
                # an aggregate is shown only when every part of it was observed
                "used": _sum(t["_u"]) if t["observed_backends"] == t["backends"] and t["backends"] else None,
            }
        )
    for d in dcs:
        if not d["backends"] or d["observed_backends"] < len(d["backends"]):
            d["used"] = None
    return {"tiers": by_tier, "data_centers": dcs}


_TIER_ORDER = {"provincial": 0, "municipal": 1, "county": 2, "department": 3}


def _sum(items: list[Doc]) -> Doc:
    out: Doc = {"vcpus": 0.0, "ram_gb": 0.0, "storage_gb": 0.0}
    for item in items:
        for k in out:
            out[k] += float(item.get(k, 0) or 0)
    return {k: round(v, 2) for k, v in out.items()}


def _requested(t: Tenancy, ctx: _Ctx) -> Doc:
    wanted = {w.id for w in t.workloads}
    req = {"vcpus": 0, "ram_gb": 0.0, "storage_gb": 0, "instances": 0}
    for s in declared_servers(ctx.inv, wanted):
        req["vcpus"] += s.flavor.vcpus
        req["ram_gb"] += s.flavor.ram_mb / 1024
        req["storage_gb"] += s.flavor.disk_gb + sum(v.size_gb for v in s.group.volumes)
        req["instances"] += 1
    req["ram_gb"] = round(req["ram_gb"], 2)
    return req


def _dr_target(ctx: _Ctx, w: Workload) -> str | None:
    if w.dr is None:
        return None
    return w.dr.target or (ctx.inv.province.dr_site if ctx.inv.province else None)


def _tenancy(ctx: _Ctx, t: Tenancy) -> Doc:
    from dcctl.dr import catalog

    inv = ctx.inv
    dc = inv.data_centers.get(t.hosted_in)
    candidates = {b.id for w in t.workloads for b in inv.eligible_backends(t, w)}
    candidates |= {b.id for b in inv.serving(t.hosted_in, t.zone)}
    observed_all = bool(candidates) and all(ctx.observed.ok(b) for b in candidates)
    used: Doc | None = None
    if observed_all:
        use = _Use()
        for w in t.workloads:
            u = ctx.workload_use.get(w.id)
            if u:
                use.vcpus += u.vcpus
                use.ram_gb += u.ram_gb
                use.storage_gb += u.storage_gb
                use.servers += u.servers
                use.running += u.running
        used = {
            "vcpus": round(use.vcpus, 2),
            "ram_gb": round(use.ram_gb, 2),
            "storage_gb": round(use.storage_gb, 2),
            "instances": use.servers,
        }
    running_on = sorted({b for w in t.workloads for b in ctx.workload_where.get(w.id, set())})
    data = [
        {
            "backend": bid,
            "data_center": inv.backends[bid][0].id,
            "observed": observed_all,
        }
        # where its servers were seen; if that cannot be known, where they may run (marked not observed)
        for bid in (running_on if observed_all else sorted(candidates))
        if bid in inv.backends
    ]
    backups = []
    for w in t.workloads:
        target = _dr_target(ctx, w)
        if target is None:
            continue
        pts = catalog.points(ctx.store, w.id)
        last = catalog.last_good_point(ctx.store, w.id)
        backups.append(
            {
                "workload": w.id,
                "data_center": target,
                "backends": sorted({d.target_backend for p in pts for d in p.disks}),
                "locations": _locations(last.disks) if last else [],
                "points": len(pts),
                "last_good_at": _iso(last.taken_at) if last else None,
            }
        )
    city = inv.cities.get(t.city) if t.city else None
    return {
        "id": t.id,
        "name": t.name,
        "kind": t.kind.value,
        "city": t.city,
        "city_name": city.name if city else None,
        "hosted_in": t.hosted_in,
        "hosted_in_name": dc.name if dc else None,
        "hosted_in_tier": dc.tier.value if dc else None,
        "zone": t.zone.value,
        "quotas": {
            "vcpus": t.quotas.vcpus,
            "ram_gb": t.quotas.ram_gb,
            "storage_gb": t.quotas.storage_gb,
            "instances": t.quotas.instances,
        },
        "requested": _requested(t, ctx),
        "used": used,
        "observation": {
            "status": "observed" if observed_all else "not_observed",
            "reason": "" if observed_all else _why_not(ctx, sorted(candidates)),
        },
        "data_locations": data,
        "backups": backups,
        "workloads": [w.id for w in t.workloads],
    }


def _locations(disks: Iterable[Any]) -> list[str]:
    """Where a point's disks are kept, per DR backend: the directory they share (``backend:/dir``)."""
    by_backend: dict[str, list[str]] = defaultdict(list)
    for d in disks:
        by_backend[d.target_backend].append(d.target_path.rsplit("/", 1)[0] or "/")
    return [f"{b}:{os.path.commonpath(dirs)}" for b, dirs in sorted(by_backend.items())]


def _why_not(ctx: _Ctx, backends: list[str]) -> str:
    if not backends:
        return "no backend of its data center serves its zone"
    missing = [b for b in backends if not ctx.observed.ok(b)]
    reasons = sorted({ctx.observed.status.get(b, ("", "observation not requested"))[1] for b in missing})
    return f"{', '.join(missing)}: {reasons[0] if len(reasons) == 1 else '; '.join(reasons)}"


def _networks(ctx: _Ctx) -> Doc:
    inv = ctx.inv
    codes = Counter(d.code for d in ctx.validation.diagnostics)
    rules = _rule_titles()
    zones = []
    for zone in ("intranet", "extranet"):
        zones.append(
            {
                "zone": zone,
                "backends": sorted(bid for bid, (_, b) in inv.backends.items() if zone in {z.value for z in b.zones}),
                "tenancies": sorted(t.id for t in inv.tenancies.values() if t.zone.value == zone),
                "networks": [
                    {"tenancy": t.id, "id": n.id, "cidr": str(n.cidr), "mode": n.mode}
                    for t in sorted(inv.tenancies.values(), key=lambda t: t.id)
                    if t.zone.value == zone
                    for n in t.networks
                ],
            }
        )
    checks = [
        {
            "id": rule,
            "title": rules.get(rule, rule),
            "kind": "policy",
            "status": "violated" if codes.get(rule) else "holds",
            "findings": codes.get(rule, 0),
        }
        for rule in ISOLATION_RULES
    ]
    # observed: every server dcctl runs sits on a backend serving its tenancy's zone
    wrong, seen = 0, 0
    for bid, resources in ctx.observed.resources.items():
        zones_of = {z.value for z in inv.backends[bid][1].zones} if bid in inv.backends else set()
        for r in resources:
            wid = _workload_of(r.key) if r.kind == "server" and r.managed else None
            if wid and wid in inv.workloads:
                seen += 1
                if inv.workloads[wid][0].zone.value not in zones_of:
                    wrong += 1
    checks.append(
        {
            "id": "observed-servers-in-zone",
            "title": "Every observed server runs on a backend of its tenancy's zone",
            "kind": "observed",
            "status": ("violated" if wrong else "holds") if ctx.observed.resources else "not_observed",
            "findings": wrong,
            "checked": seen,
        }
    )
    return {"zones": zones, "checks": checks}


def _rule_titles() -> dict[str, str]:
    from dcctl.policy import RULES

    return {rid: r.title for rid, r in RULES.items()}


def _workload(ctx: _Ctx, t: Tenancy, w: Workload, chain_ok: bool, audit_entries: int) -> Doc:
    inv = ctx.inv
    std = ctx.std
    mlps = std.mlps_level(w.mlps_level, inv.province.standards.mlps if inv.province else "GB/T 22239-2019")
    eligible = inv.eligible_backends(t, w)
    observed_on = sorted(ctx.workload_where.get(w.id, set()))
    placed_known = bool(eligible) and all(ctx.observed.ok(b.id) for b in eligible)
    dr = _dr(ctx, w)
    controls: list[Doc] = []

    def control(cid: str, status: str, note: str, **evidence: Any) -> None:
        """A control that applies, its status, and its evidence as facts (``note`` picks the sentence)."""
        controls.append({"id": cid, "status": status, "note": note, "evidence": evidence})

    if mlps.dr_required:
        bound = min(x for x in (mlps.rpo_max, w.dr.rpo if w.dr else None, timedelta(days=1)) if x is not None)
        if dr is None:
            control("offsite-realtime-backup", "not_met", "no_policy", bound_seconds=bound.total_seconds())
        elif dr["rpo_measured_seconds"] is None or dr["last_good_point"] is None:
            control("offsite-realtime-backup", "not_measured", "no_point", points=dr["points"]["total"])
        else:
            last = dr["last_good_point"]
            control(
                "offsite-realtime-backup",
                "met" if dr["rpo_measured_seconds"] <= bound.total_seconds() else "not_met",
                "measured",
                point_set=last["point_set"],
                taken_at=last["taken_at"],
                targets=last["target_backends"],
                good=dr["points"]["good"],
                total=dr["points"]["total"],
                rpo_seconds=dr["rpo_measured_seconds"],
                bound_seconds=bound.total_seconds(),
            )
    if mlps.rto_max is not None:
        if dr is None or dr["rto_measured_seconds"] is None:
            control("realtime-switchover", "not_measured", "no_drill", drills=len(dr["drills"]) if dr else 0)
        else:
            control(
                "realtime-switchover",
                "met" if dr["rto_measured_seconds"] <= mlps.rto_max.total_seconds() else "not_met",
                "measured",
                rto_seconds=dr["rto_measured_seconds"],
                bound_seconds=mlps.rto_max.total_seconds(),
                drills=len(dr["drills"]),
            )
    if mlps.dedicated_pool:
        dedicated = [b.id for b in eligible if b.dedicated]
        control(
            "dedicated-pool",
            "met" if eligible and len(dedicated) == len(eligible) else "not_met",
            "backends",
            backends=[b.id for b in eligible],
            dedicated=dedicated,
        )
    levels = [b.level for b in eligible]
    control(
        "platform-level",
        "met" if levels and min(levels) >= w.mlps_level else "not_met",
        "backends",
        backends=[f"{b.id} L{b.level}" for b in eligible],
        level=w.mlps_level,
    )
    chain = "verified" if chain_ok else "broken"
    control("audit-trail", "met" if chain_ok else "not_met", chain, entries=audit_entries)
    return {
        "id": w.id,
        "name": w.name,
        "tenancy": t.id,
        "zone": t.zone.value,
        "data_center": t.hosted_in,
        "mlps_level": w.mlps_level,
        "mlps_requires": list(mlps.requires),
        "servers": sum(g.count for g in w.servers),
        "eligible_backends": [b.id for b in eligible],
        "running_on": observed_on if placed_known else None,
        "used": ctx.workload_use[w.id].doc() if placed_known and w.id in ctx.workload_use else None,
        "observation": {
            "status": "observed" if placed_known else "not_observed",
            "reason": "" if placed_known else _why_not(ctx, [b.id for b in eligible]),
        },
        "controls": controls,
        "dr": dr,
    }


def _dr(ctx: _Ctx, w: Workload) -> Doc | None:
    from dcctl.dr import catalog

    if w.dr is None:
        return None
    store = ctx.store
    pts = catalog.points(store, w.id)
    last = catalog.last_good_point(store, w.id)
    rpo = catalog.measured_rpo(store, w.id, at=ctx.now)
    rto = catalog.best_rto(store, w.id)
    edition = ctx.inv.province.standards.dr if ctx.inv.province else "GB/T 20988-2025"
    levels_from, levels = ctx.std.dr_levels(edition)
    achieved = ctx.std.dr_level_achieved(edition, rpo, rto)
    named = next((lv for lv in levels if lv.level == achieved), None)
    rpo_target, rto_target = w.dr.rpo.total_seconds(), w.dr.rto.total_seconds()
    return {
        "target": _dr_target(ctx, w),
        "rpo_target_seconds": rpo_target,
        "rto_target_seconds": rto_target,
        "rpo_measured_seconds": _secs(rpo),
        "rpo_status": "not_measured" if rpo is None else ("met" if rpo.total_seconds() <= rpo_target else "not_met"),
        "rto_measured_seconds": _secs(rto),
        "rto_status": "not_measured" if rto is None else ("met" if rto.total_seconds() <= rto_target else "not_met"),
        "points": {
            "total": len(pts),
            "good": sum(1 for p in pts if p.good),
            "failed": sum(1 for p in pts if any(d.status == "failed" for d in p.disks)),
        },
        "last_good_point": {
            "point_set": last.point_set,
            "taken_at": _iso(last.taken_at),
            "kind": last.kind,
            "disks": len(last.disks),
            "size_bytes": last.size_bytes,
            "shipped_bytes": last.shipped_bytes,
            "target_backends": sorted({d.target_backend for d in last.disks}),
        }
        if last
        else None,
        "drills": [
            {
                "id": d.id,
                "kind": d.kind,
                "point_set": d.point_set,
                "started_at": _iso(d.started_at),
                "finished_at": _iso(d.finished_at),
                "rto_seconds": d.rto_seconds,
                "ok": d.ok,
            }
            for d in catalog.drills(store, w.id)
        ],
        "active_site": catalog.active_site(store, w.id),
        "gbt20988": {
            "edition": edition,
            "levels_from": levels_from,
            "level_achieved": achieved,
            "level_name": named.name if named else None,
            "level_name_en": named.name_en if named else None,
        },
    }


def _drift(ctx: _Ctx) -> Doc:
    plan = ctx.observed.drift
    statuses = [s for s, _ in ctx.observed.status.values()]
    if plan is None or not ctx.observed.resources:
        return {"status": "not_observed", "backends_observed": 0, "changes": []}
    status = "observed" if all(s == "observed" for s in statuses) else "partial"
    changes = [
        {
            "backend": c.backend,
            "kind": c.kind,
            "key": c.key,
            "action": c.action.value,
            "what": "removed outside dcctl" if c.action.value == "create" else ", ".join(c.changed_fields),
        }
        for c in plan.changes
    ]
    return {"status": status, "backends_observed": len(ctx.observed.resources), "changes": changes}


def _legacy(ctx: _Ctx) -> list[Doc]:
    inv = ctx.inv
    out = []
    for dc in sorted(inv.data_centers.values(), key=lambda d: d.id):
        if not dc.legacy:
            continue
        hosted = sorted(inv.tenancies_in(dc.id), key=lambda t: t.id)
        target = inv.data_centers.get(dc.consolidate_into) if dc.consolidate_into else None
        out.append(
            {
                "id": dc.id,
                "name": dc.name,
                "tier": dc.tier.value,
                "city": dc.city,
                "consolidate_into": dc.consolidate_into,
                "consolidate_into_name": target.name if target else None,
                "tenancies": [t.id for t in hosted],
                "workloads": sum(len(t.workloads) for t in hosted),
                "servers": sum(g.count for t in hosted for w in t.workloads for g in w.servers),
            }
        )
    return out


def _runs(store: Store, limit: int = 20) -> list[Doc]:
    rows = store.db.execute(
        'SELECT id, command, status, started_at, finished_at, "user", host, plan_digest FROM runs '
        "ORDER BY id DESC LIMIT ?",
        (limit,),
    ).fetchall()
    keys = ("id", "command", "status", "started_at", "finished_at", "user", "host", "plan_digest")
    return [dict(zip(keys, r, strict=True)) for r in rows]
