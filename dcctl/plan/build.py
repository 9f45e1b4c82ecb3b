"""Compute a plan: observe every backend once (in parallel), place servers, diff desired × observed, scope by target.

The diff matches desired and observed resources by (backend, kind, name): names are a pure function of inventory keys,
so a resource dcctl made is found again whatever happened to the state file, and a foreign object with a name dcctl
wants is reported (and left alone) instead of being adopted or overwritten.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime

from dcctl import __version__
from dcctl.diagnostics import Diagnostics
from dcctl.errors import UsageError
from dcctl.inventory import Inventory
from dcctl.placement import Server, place
from dcctl.plan.model import Action, Change, Mode, Plan, Reason
from dcctl.providers.base import Provider, ProviderError
from dcctl.resources import DesiredResource, ObservedResource, digest
from dcctl.state.store import AppliedResource

#: Creation order of every provider's kinds (deletion runs in reverse): what a resource needs comes before it.
KIND_ORDER = (
    # shared per cloud or host
    "pool",
    "flavor",
    "image",
    # a tenancy's own space (OpenStack)
    "project",
    "group",
    "role_assignment",
    "quota",
    "security_group",
    "keypair",
    "server_group",
    # networks and storage
    "network",
    "subnet",
    "router",
    "volume",
    # servers, then what attaches to them
    "server",
    "volume_attachment",
)


def kind_rank(kind: str) -> int:
    return KIND_ORDER.index(kind) if kind in KIND_ORDER else len(KIND_ORDER)


@dataclass
class Observation:
    backend: str
    resources: list[ObservedResource] = field(default_factory=list)
    error: ProviderError | None = None

    @property
    def fingerprint(self) -> str:
        return digest(sorted(r.fingerprint for r in self.resources if r.managed))


@dataclass(frozen=True)
class Scope:
    """What a ``--target`` selects. ``None`` everywhere means the whole inventory."""

    workloads: frozenset[str] | None = None
    tenancies: frozenset[str] | None = None
    backends: frozenset[str] | None = None

    @property
    def everything(self) -> bool:
        return self.workloads is None

    def covers(self, kind: str, key: str, name: str, backend: str) -> bool:
        """Whether a resource belongs to the target, by its key: ``server:<workload>/…`` and ``workload:<id>/…``
        belong to a workload, ``tenancy:<id>/…`` to a tenancy; anything else (a pool, a flavor, an image) is shared
        infrastructure, brought along only when a targeted resource on the same backend needs it."""
        if self.workloads is None:
            return True
        if self.backends is not None and backend not in self.backends:
            return False
        scope, _, rest = key.partition(":")
        owner = rest.split("/", 1)[0]
        if scope in ("server", "workload"):
            return owner in self.workloads
        if scope == "tenancy":
            return self.tenancies is not None and owner in self.tenancies
        if scope == "volume":  # a volume found without its server: judge by the name dcctl gave it
            return any(name.startswith(f"dcctl-{w}-") for w in self.workloads)
        return False


def resolve_targets(inv: Inventory, targets: Iterable[str]) -> Scope:
    """``--target`` ids (tenancy, workload, data center or backend) → the workloads, tenancies and backends in scope."""
    targets = list(targets)
    if not targets:
        return Scope()
    workloads: set[str] = set()
    tenancies: set[str] = set()
    for target in targets:
        if target in inv.workloads:
            workloads.add(target)
        elif target in inv.tenancies:
            tenancies.add(target)
            workloads.update(w.id for w in inv.tenancies[target].workloads)
        elif target in inv.data_centers:
            for t in inv.tenancies_in(target):
                tenancies.add(t.id)
                workloads.update(w.id for w in t.workloads)
        elif target in inv.backends:
            for t, w in inv.workloads.values():
                if any(b.id == target for b in inv.eligible_backends(t, w)):
                    workloads.add(w.id)
                    tenancies.add(t.id)
        else:
            known = list(inv.workloads) + list(inv.tenancies) + list(inv.data_centers) + list(inv.backends)
            close = difflib.get_close_matches(target, known, n=3, cutoff=0.5)
            raise UsageError(
                f"--target '{target}' is no workload, tenancy, data center or backend of this inventory",
                hint=("did you mean " + " or ".join(close) + "?") if close else "see 'dcctl status' for ids",
            )
    backends = {
        b.id
        for t in inv.tenancies.values()
        if t.id in tenancies or any(w.id in workloads for w in t.workloads)
        for b in inv.serving(t.hosted_in, t.zone)
    } | {t for t in targets if t in inv.backends}
    return Scope(frozenset(workloads), frozenset(tenancies), frozenset(backends))


def observe_all(providers: Mapping[str, Provider], concurrency: int = 8) -> dict[str, Observation]:
    """Observe every backend at once (each provider lists each kind once)."""

    def one(item: tuple[str, Provider]) -> Observation:
        backend, provider = item
        try:
            return Observation(backend, provider.observe())
        except ProviderError as exc:
            return Observation(backend, error=exc)

    with ThreadPoolExecutor(max_workers=max(1, min(concurrency, len(providers)))) as pool:
        return {o.backend: o for o in pool.map(one, sorted(providers.items()))}


def _existing_servers(observations: Mapping[str, Observation]) -> dict[str, str]:
    return {
        r.key: r.backend
        for o in observations.values()
        for r in o.resources
        if r.kind == "server" and r.managed and r.key.startswith("server:")
    }


def build_plan(
    inv: Inventory,
    providers: Mapping[str, Provider],
    observations: Mapping[str, Observation],
    applied: Mapping[tuple[str, str], AppliedResource],
    *,
    mode: Mode = Mode.NORMAL,
    scope: Scope | None = None,
    targets: tuple[str, ...] = (),
) -> Plan:
    scope = scope or Scope()
    diags = Diagnostics()
    for o in observations.values():
        if o.error is not None:
            dc, unreachable = inv.backends[o.backend]
            diags.error(
                "backend-unreachable",
                f"cannot observe backend '{o.backend}' of '{dc.id}': {o.error.message}",
                hint=o.error.hint or "fix the backend or leave it out with --target",
                source=unreachable.where(),
                address=f"backend:{o.backend}",
            )
    placed = place(inv, _existing_servers(observations), diags)
    by_backend: dict[str, list[Server]] = {b: [] for b in providers}
    for server, backend in placed.values():
        if backend in by_backend:
            by_backend[backend].append(server)

    changes: list[Change] = []
    for backend, provider in sorted(providers.items()):
        obs = observations.get(backend)
        if obs is None or obs.error is not None:
            continue
        desired = provider.desired(inv, by_backend[backend])
        diags.extend(getattr(provider, "diagnostics", ()))  # what the provider had to leave out, and why
        if mode is Mode.DESTROY:
            desired = (
                [] if scope.everything else [d for d in desired if not scope.covers(d.kind, d.key, d.name, backend)]
            )
        keep_dr = not (mode is Mode.DESTROY and scope.everything)
        changes.extend(_diff(provider, backend, desired, obs.resources, applied, diags, keep_dr=keep_dr))

    changes = _scoped(changes, scope, mode)
    ordered = sorted(
        (c for c in changes if c.action is Action.DELETE), key=lambda c: (-kind_rank(c.kind), c.backend, c.key)
    ) + sorted(
        (c for c in changes if c.action is not Action.DELETE), key=lambda c: (kind_rank(c.kind), c.backend, c.key)
    )
    return Plan(
        inventory=inv.root,
        inventory_digest=inv.digest,
        mode=mode,
        created_at=datetime.now(UTC).isoformat(timespec="seconds"),
        dcctl_version=__version__,
        observed={b: o.fingerprint for b, o in sorted(observations.items()) if o.error is None},
        changes=ordered,
        diagnostics=diags,
        targets=targets,
    )


def _diff(
    provider: Provider,
    backend: str,
    desired: list[DesiredResource],
    observed: list[ObservedResource],
    applied: Mapping[tuple[str, str], AppliedResource],
    diags: Diagnostics,
    *,
    keep_dr: bool = True,
) -> list[Change]:
    found = {(o.kind, o.name): o for o in observed}
    changes: list[Change] = []
    for d in desired:
        o = found.pop((d.kind, d.name), None)
        common = {
            "key": d.key,
            "kind": d.kind,
            "backend": backend,
            "name": d.name,
            "depends_on": d.depends_on,
            "source": d.source,
            "spec": dict(d.spec),
        }
        if o is None:
            reason = Reason.MISSING_ON_BACKEND if (backend, d.key) in applied else Reason.NEW_IN_INVENTORY
            changes.append(Change(action=Action.CREATE, reason=reason, **common))  # type: ignore[arg-type]
            continue
        if not o.managed:
            diags.error(
                "foreign-resource",
                f"{d.kind} '{d.name}' already exists on backend '{backend}' but was not created by dcctl (for {d.key})",
                hint="dcctl will not touch it: rename or remove it by hand, or give the dcctl object another id",
                source=d.source,
                address=d.key,
            )
            continue
        fields = provider.plan(d, o)
        observed_state = {"provider_id": o.provider_id, **dict(o.attrs)}
        if fields.requires_replace:
            action, reason = Action.REPLACE, Reason.FIELD_FORCES_REPLACE
        elif fields.changed:
            action, reason = Action.UPDATE, Reason.FIELDS_DIFFER
        else:
            action, reason = Action.NOOP, Reason.IN_SYNC
        changes.append(
            Change(
                action=action,
                reason=reason,
                changed_fields=fields.changed,
                replace_fields=fields.requires_replace,
                before={"observed": observed_state, **(dict(fields.before) if fields.before else {})},
                after=dict(fields.after) if fields.after else None,
                **common,  # type: ignore[arg-type]
            )
        )
    for (kind, name), o in sorted(found.items()):
        if not o.managed:
            continue  # foreign and not wanted: not ours to judge
        if o.key.startswith("dr:") and keep_dr:
            continue  # a drill or failover copy: dcctl dr owns it (only a full destroy removes it)
        changes.append(
            Change(
                key=o.key,
                kind=kind,
                backend=backend,
                name=name,
                action=Action.DELETE,
                reason=Reason.REMOVED_FROM_INVENTORY,
                before={"observed": {"provider_id": o.provider_id, **dict(o.attrs)}},
            )
        )
    return changes


def _scoped(changes: list[Change], scope: Scope, mode: Mode) -> list[Change]:
    if mode is Mode.DESTROY:
        changes = [
            Change(**{**c.__dict__, "reason": Reason.DESTROY_REQUESTED}) if c.action is Action.DELETE else c
            for c in changes
        ]
    if scope.everything:
        return changes
    kept = [c for c in changes if scope.covers(c.kind, c.key, c.name, c.backend)]
    # what the targeted resources need (their networks and volumes, the backend's pool) comes along
    making = [c for c in kept if c.action is not Action.DELETE]
    needed = {(c.backend, d) for c in making for d in c.depends_on}
    busy = {c.backend for c in making if c.action is not Action.NOOP}
    ids = {c.id for c in kept}
    shared = {"server", "workload", "tenancy", "volume"}
    extra = [
        c
        for c in changes
        if c.id not in ids
        and c.action is not Action.DELETE
        and ((c.backend, c.key) in needed or (c.key.partition(":")[0] not in shared and c.backend in busy))
    ]
    return extra + kept
