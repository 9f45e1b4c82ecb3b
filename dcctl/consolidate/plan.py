"""Plan a legacy data center's consolidation (pure): per workload the move, what it takes at the target, the order and
the expected downtime — a function of the inventory and of what was observed (``Facts``), nothing else.

**Method.** *live* where both ends allow it: both libvirt, the same virtualization type (a running guest cannot change
accelerator), the guest running, and a libvirt provider that adopts a live-migrated domain as its own (libvirt keeps a
domain's UUID across migration; dcctl mints UUIDs per backend, see ``dcctl.providers.libvirt.migrate``). Storage is
copied along (shared-nothing: ``VIR_MIGRATE_NON_SHARED_DISK`` into volumes made beforehand). Otherwise *warm* when the
guest runs: changed-block rounds while it runs (the DR copier, ``dcctl.dr.replicate``), then a short freeze for the
last delta; *cold* when it is shut off (or asked for): one full copy of the frozen disks. ``--method`` overrides.

**Order** (``ORDER_RULE``). A server needs its tenancy's networks and the target's pool: each move creates them first.
Workloads move tenancy by tenancy (tenancies by id), so a tenancy is split across two data centers for as short a
time as possible; its ``hosted_in`` switches with its last workload. Within a tenancy, a workload whose networks more
of the others use goes first (a database the other tiers reach is a dependency of theirs), then by id.

**Capacity.** Each move is placed at the target with dcctl's own placement (capacity × overcommit, eligibility, anti-
affinity) after the moves before it; what a move needs is held against what placement leaves free on each target
backend. A tenancy's quotas must also fit the target: after its switch, the quotas granted in the target data center's
zone must not exceed the capacity × overcommit of the backends serving it (policy ``capacity-quota-within-dc``). Any
shortfall refuses the plan with the numbers (needed, free, on which backend).

**Expected downtime** (``DOWNTIME_RULE``): a model over the bytes each server's disks hold (measured on the host with
``du``, else the declared sizes as an upper bound) and ``Assumptions`` (link and disk throughput, boot time — defaults,
or the medians of earlier moves measured by dcctl).
"""

from __future__ import annotations

import dataclasses
import difflib
import enum
from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from dcctl.diagnostics import Diagnostics
from dcctl.errors import UsageError
from dcctl.inventory import Inventory
from dcctl.inventory.model import Backend, DataCenter, LibvirtBackend, Tenancy, Workload
from dcctl.placement import Server, place, servers

MiB = 2**20
GiB = 2**30

ORDER_RULE = (
    "each move first makes its tenancy's networks and the pool at the target (a server needs them); workloads move "
    "tenancy by tenancy (by id), so a tenancy is split across two data centers as briefly as possible and its "
    "hosted_in switches with its last workload; within a tenancy, a workload whose networks more of the others use "
    "goes first (a dependency of theirs), then by id"
)
DOWNTIME_RULE = (
    "live: the final pause of the migration (QEMU's 300 ms downtime limit plus switch-over); warm: freeze, the last "
    "delta (guest write rate × the previous round's length) copied and checksummed, applied, the disk's content "
    "digest on both hosts, then the boot at the target; cold: freeze, the whole disk copied and checksummed, the "
    "content digest, then the boot. Bytes are what the disks hold (measured with du, else their declared size); "
    "throughput and boot time are defaults unless dcctl measured earlier moves (then their medians)"
)


class Method(enum.StrEnum):
    LIVE = "live"
    WARM = "warm"
    COLD = "cold"
    NONE = "none"  # a workload without servers: only the inventory switches


class State(enum.StrEnum):
    PENDING = "pending"
    MOVED = "moved"  # every server already runs at the target (its tenancy's switch may still be due)
    INTERRUPTED = "interrupted"  # a server exists at both ends: an earlier run stopped midway


@dataclass(frozen=True)
class ServerState:
    """One dcctl server as observed on a backend."""

    key: str
    name: str
    backend: str
    running: bool
    disks: tuple[str, ...] = ()
    disk_bytes: int | None = None  # what its disks hold on the host (du); None when not measured


@dataclass(frozen=True)
class Facts:
    """What was observed before planning. Empty facts (nothing observed) plan from the inventory alone."""

    servers: tuple[ServerState, ...] = ()
    unobserved: Mapping[str, str] = field(default_factory=dict)  # backend → why it could not be observed
    live_unsupported: str = ""  # why no libvirt move can be live on this dcctl ("" = it can)
    observed: bool = False  # the backends were observed (else the plan is the inventory's alone)

    def where(self, key: str) -> list[ServerState]:
        return [s for s in self.servers if s.key == key]


@dataclass(frozen=True)
class Assumptions:
    """The figures the downtime model uses (throughput in MiB/s, times in seconds)."""

    bandwidth_mib_s: float = 100.0  # host to host (SSH stream, or QEMU's migration stream)
    disk_mib_s: float = 200.0  # local read or write (backup job, raw conversion)
    hash_mib_s: float = 300.0  # sha256
    boot_seconds: float = 60.0  # start to service at the target
    dirty_mib_s: float = 2.0  # guest writes while warm rounds run
    live_pause_seconds: float = 0.5  # QEMU's default 300 ms downtime limit + switch-over
    overhead_seconds: float = 3.0  # per server and round: SSH sessions, qemu-img check, define
    basis: str = "defaults"

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclass(frozen=True)
class Resources:
    vcpus: float = 0.0
    ram_mb: float = 0.0
    storage_gb: float = 0.0

    def __add__(self, other: Resources) -> Resources:
        return Resources(self.vcpus + other.vcpus, self.ram_mb + other.ram_mb, self.storage_gb + other.storage_gb)

    def __sub__(self, other: Resources) -> Resources:
        return Resources(self.vcpus - other.vcpus, self.ram_mb - other.ram_mb, self.storage_gb - other.storage_gb)

    def fits_in(self, room: Resources) -> bool:
        return self.vcpus <= room.vcpus and self.ram_mb <= room.ram_mb and self.storage_gb <= room.storage_gb

    def text(self) -> str:
        return f"{self.vcpus:g} vCPU, {self.ram_mb:g} MiB RAM, {self.storage_gb:g} GB storage"

    def to_dict(self) -> dict[str, float]:
        return dataclasses.asdict(self)


@dataclass(frozen=True)
class ServerMove:
    key: str
    name: str
    source_backend: str
    target_backend: str | None  # None: it fits nowhere at the target
    running: bool
    needs: Resources
    copy_bytes: int
    copy_basis: str  # "measured" (du on the host) or "declared" (flavor and volume sizes: an upper bound)
    ram_bytes: int
    exists: bool = True  # observed at its source (a server never applied has nothing to move)

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["needs"] = self.needs.to_dict()
        return d


@dataclass(frozen=True)
class Estimate:
    downtime_seconds: float
    duration_seconds: float
    parts: Mapping[str, float] = field(default_factory=dict)  # the downtime's components

    def to_dict(self) -> dict[str, Any]:
        return {
            "downtime_seconds": round(self.downtime_seconds, 2),
            "duration_seconds": round(self.duration_seconds, 2),
            "parts": {k: round(v, 2) for k, v in self.parts.items()},
        }


@dataclass(frozen=True)
class WorkloadMove:
    step: int
    workload: str
    name: str
    tenancy: str
    mlps_level: int
    state: State
    method: Method
    why: str  # why this method
    live_blocked: str  # why it cannot be live ("" when it is)
    servers: tuple[ServerMove, ...]
    networks: tuple[str, ...]
    after: tuple[str, ...]  # workloads of the same tenancy that share a network with it and move before it
    switches_tenancy: bool  # the tenancy's last workload: its hosted_in switches with this move
    estimate: Estimate

    @property
    def needs(self) -> Resources:
        total = Resources()
        for s in self.servers:
            total = total + s.needs
        return total

    @property
    def source_backends(self) -> list[str]:
        return sorted({s.source_backend for s in self.servers})

    @property
    def target_backends(self) -> list[str]:
        return sorted({s.target_backend for s in self.servers if s.target_backend})

    def to_dict(self) -> dict[str, Any]:
        return {
            "step": self.step,
            "workload": self.workload,
            "name": self.name,
            "tenancy": self.tenancy,
            "mlps_level": self.mlps_level,
            "state": self.state.value,
            "method": self.method.value,
            "why": self.why,
            "live_blocked": self.live_blocked,
            "servers": [s.to_dict() for s in self.servers],
            "needs": self.needs.to_dict(),
            "networks": list(self.networks),
            "after": list(self.after),
            "switches_tenancy": self.switches_tenancy,
            "estimate": self.estimate.to_dict(),
        }


@dataclass(frozen=True)
class BackendRoom:
    """A target backend: capacity × overcommit, what placement gives the servers staying, what the moves take."""

    backend: str
    capacity: Resources
    used: Resources
    taken: Resources

    @property
    def free_before(self) -> Resources:
        return self.capacity - self.used

    @property
    def free_after(self) -> Resources:
        return self.capacity - self.used - self.taken

    def to_dict(self) -> dict[str, Any]:
        return {
            "backend": self.backend,
            "capacity": self.capacity.to_dict(),
            "used": self.used.to_dict(),
            "taken": self.taken.to_dict(),
            "free_before": self.free_before.to_dict(),
            "free_after": self.free_after.to_dict(),
        }


@dataclass
class ConsolidationPlan:
    legacy_dc: str
    legacy_name: str
    target_dc: str | None
    target_name: str
    moves: list[WorkloadMove] = field(default_factory=list)
    tenancies: list[str] = field(default_factory=list)  # hosted in the legacy data center
    switch_only: list[str] = field(default_factory=list)  # tenancies without workloads: only hosted_in switches
    rooms: list[BackendRoom] = field(default_factory=list)
    assumptions: Assumptions = field(default_factory=Assumptions)
    diagnostics: Diagnostics = field(default_factory=Diagnostics)

    @property
    def refused(self) -> bool:
        return self.diagnostics.has_errors()

    @property
    def pending(self) -> list[WorkloadMove]:
        return [m for m in self.moves if m.state is not State.MOVED]

    def to_dict(self) -> dict[str, Any]:
        return {
            "legacy_dc": self.legacy_dc,
            "legacy_name": self.legacy_name,
            "target_dc": self.target_dc,
            "target_name": self.target_name,
            "refused": self.refused,
            "tenancies": self.tenancies,
            "switch_only": self.switch_only,
            "moves": [m.to_dict() for m in self.moves],
            "rooms": [r.to_dict() for r in self.rooms],
            "expected_downtime_seconds": round(sum(m.estimate.downtime_seconds for m in self.pending), 2),
            "expected_duration_seconds": round(sum(m.estimate.duration_seconds for m in self.pending), 2),
            "order_rule": ORDER_RULE,
            "downtime_rule": DOWNTIME_RULE,
            "assumptions": self.assumptions.to_dict(),
            "diagnostics": [d.to_dict() for d in self.diagnostics.sorted()],
        }


# --------------------------------------------------------------------------------------------------- planning
def plan_consolidation(
    inv: Inventory,
    legacy_dc: str,
    facts: Facts | None = None,
    *,
    method: Method | None = None,
    only: Collection[str] = (),
    assumptions: Assumptions | None = None,
) -> ConsolidationPlan:
    """The consolidation plan of one legacy data center (all its workloads, or ``only`` these)."""
    facts = facts or Facts()
    assumptions = assumptions or Assumptions()
    dc = _legacy(inv, legacy_dc)
    target = inv.data_centers.get(dc.consolidate_into or "")
    plan = ConsolidationPlan(
        dc.id, dc.name, dc.consolidate_into, target.name if target else "", assumptions=assumptions
    )
    diags = plan.diagnostics
    tenancies = sorted(inv.tenancies_in(dc.id), key=lambda t: t.id)
    plan.tenancies = [t.id for t in tenancies]
    if not dc.legacy:
        diags.error(
            "consolidate-not-legacy",
            f"data center '{dc.id}' is not marked legacy: only legacy data centers are consolidated",
            hint="mark it 'legacy: true' with 'consolidate_into: <data center>'",
            source=dc.where(),
        )
        return plan
    if target is None:
        diags.error(
            "consolidate-no-target",
            f"legacy data center '{dc.id}' names no consolidation target"
            + (f" ('{dc.consolidate_into}' is not defined)" if dc.consolidate_into else ""),
            hint="set 'consolidate_into' to its city's data center or the provincial one",
            source=dc.where("consolidate_into") if dc.consolidate_into else dc.where("legacy"),
        )
        return plan
    ordered = order_workloads(tenancies)
    wanted = set(only)
    in_dc = {w.id for _, w in ordered}
    for wid in sorted(wanted - in_dc):
        close = difflib.get_close_matches(wid, sorted(in_dc), n=3, cutoff=0.5)
        raise UsageError(
            f"workload '{wid}' is not hosted in legacy data center '{dc.id}'",
            hint=("did you mean " + " or ".join(close) + "?")
            if close
            else f"its workloads: {', '.join(sorted(in_dc))}",
        )
    for bid, why in sorted(facts.unobserved.items()):
        diags.warning(
            "consolidate-not-observed",
            f"backend '{bid}' could not be observed ({why}): the plan assumes its servers run and uses declared sizes",
            source=inv.backends[bid][1].where() if bid in inv.backends else None,
        )
    after_inv = switch_tenancies(inv, [t.id for t in tenancies], target.id)
    target_ids = {b.id for b in target.backends}
    states = {w.id: _state(facts, inv, w, target_ids) for _, w in ordered}
    selected = [(t, w) for t, w in ordered if not wanted or w.id in wanted]
    # where every server runs now: observed, else where placement puts it today (a move's servers stay pinned there
    # until its turn, so they take no room at the target before it)
    observed = _existing(facts, inv, dc)
    pins = {**{k: b for k, (_, b) in place(inv, observed, Diagnostics()).items()}, **observed}
    pending_keys = {s.key for _, w in ordered if states[w.id] is not State.MOVED for s in servers(inv, {w.id})}
    used = _usage(place(after_inv, pins, Diagnostics()), exclude=pending_keys)
    last_selected = {t.id: w.id for t, w in selected}
    chosen_ids = {w.id for _, w in selected}
    unselected = {t.id for t, w in ordered if w.id not in chosen_ids and states[w.id] is not State.MOVED}
    assigned: dict[str, str] = {}  # server key → target backend, move after move
    taken: dict[str, Resources] = {}
    for step, (tenancy, workload) in enumerate(selected, start=1):
        state = states[workload.id]
        own = list(servers(inv, {workload.id}))
        keys = {s.key for s in own}
        if state is State.MOVED:
            moves = [_server_move(s, facts, pins[s.key], pins[s.key]) for s in own]
        else:
            existing = {k: b for k, b in {**pins, **assigned}.items() if k not in keys}
            placed = place(after_inv, existing, Diagnostics())
            moves = []
            for s in own:
                where = placed.get(s.key)
                moves.append(_server_move(s, facts, pins.get(s.key, ""), where[1] if where else None))
            if workload.backend is not None and workload.backend not in target_ids:
                diags.error(
                    "consolidate-pinned",
                    f"workload '{workload.id}' is pinned to backend '{workload.backend}', not one of '{target.id}': "
                    "it would stay where it is",
                    hint=f"remove its 'backend:' or pin it to a backend of '{target.id}' first",
                    source=workload.where("backend"),
                    address=f"workload:{workload.id}",
                )
            elif any(m.target_backend not in target_ids for m in moves):
                _shortfall(diags, after_inv, target, tenancy, workload, moves, _usage(placed, exclude=keys))
            else:
                for m in moves:
                    assert m.target_backend is not None
                    assigned[m.key] = m.target_backend
                    taken[m.target_backend] = taken.get(m.target_backend, Resources()) + m.needs
        chosen, why, blocked = _method(inv, workload, moves, facts, method, state, diags)
        plan.moves.append(
            WorkloadMove(
                step=step,
                workload=workload.id,
                name=workload.name,
                tenancy=tenancy.id,
                mlps_level=workload.mlps_level,
                state=state,
                method=chosen,
                why=why,
                live_blocked=blocked,
                servers=tuple(moves),
                networks=tuple(sorted({n for g in workload.servers for n in g.networks})),
                after=tuple(_after(workload, [w for t2, w in ordered if t2.id == tenancy.id])),
                switches_tenancy=last_selected[tenancy.id] == workload.id and tenancy.id not in unselected,
                estimate=estimate(chosen, moves, assumptions),
            )
        )
    plan.switch_only = [t.id for t in tenancies if not t.workloads] if not wanted else []
    plan.rooms = [
        BackendRoom(b.id, _capacity(b), used.get(b.id, Resources()), taken.get(b.id, Resources()))
        for b in sorted(target.backends, key=lambda b: b.id)
    ]
    switching = [t for t in tenancies if t.id in {m.tenancy for m in plan.moves if m.switches_tenancy}]
    switching += [t for t in tenancies if t.id in plan.switch_only]
    _check_quotas(diags, inv, target, switching)
    _check_policy(diags, inv, {t.id for t in switching}, target.id)
    return plan


def _legacy(inv: Inventory, legacy_dc: str) -> DataCenter:
    dc = inv.data_centers.get(legacy_dc)
    if dc is None:
        legacy = sorted(d.id for d in inv.data_centers.values() if d.legacy)
        close = difflib.get_close_matches(legacy_dc, sorted(inv.data_centers), n=3, cutoff=0.5)
        raise UsageError(
            f"no data center '{legacy_dc}' in this inventory",
            hint=("did you mean " + " or ".join(close) + "?")
            if close
            else f"legacy data centers: {', '.join(legacy) or 'none'}",
        )
    return dc


def switch_tenancies(inv: Inventory, tenancies: Iterable[str], target_dc: str) -> Inventory:
    """The inventory as it will read once these tenancies are hosted in ``target_dc`` (a copy; ``inv`` is kept)."""
    moved = {tid: inv.tenancies[tid].model_copy(update={"hosted_in": target_dc}) for tid in tenancies}
    new_tenancies = {tid: moved.get(tid, t) for tid, t in inv.tenancies.items()}
    new_workloads = {wid: (moved.get(t.id, t), w) for wid, (t, w) in inv.workloads.items()}
    return dataclasses.replace(inv, tenancies=new_tenancies, workloads=new_workloads)


def order_workloads(tenancies: Iterable[Tenancy]) -> list[tuple[Tenancy, Workload]]:
    """``ORDER_RULE``: tenancy by tenancy (by id); within one, the workload whose networks more others use first."""
    out: list[tuple[Tenancy, Workload]] = []
    for tenancy in sorted(tenancies, key=lambda t: t.id):
        uses = {w.id: {n for g in w.servers for n in g.networks} for w in tenancy.workloads}

        def sharing(w: Workload, uses: dict[str, set[str]] = uses) -> int:
            return sum(1 for other, nets in uses.items() if other != w.id and nets & uses[w.id])

        out.extend((tenancy, w) for w in sorted(tenancy.workloads, key=lambda w: (-sharing(w), w.id)))
    return out


def _after(workload: Workload, in_order: list[Workload]) -> list[str]:
    mine = {n for g in workload.servers for n in g.networks}
    before = in_order[: [w.id for w in in_order].index(workload.id)]
    return [w.id for w in before if mine & {n for g in w.servers for n in g.networks}]


def _existing(facts: Facts, inv: Inventory, dc: DataCenter) -> dict[str, str]:
    """Server key → backend it runs on, as observed; a server seen at both ends (an interrupted move) counts where
    it came from."""
    legacy = {b.id for b in dc.backends}
    out: dict[str, str] = {}
    for s in facts.servers:
        if s.key not in out or s.backend in legacy:
            out[s.key] = s.backend
    return {k: b for k, b in out.items() if b in inv.backends}


def _state(facts: Facts, inv: Inventory, workload: Workload, target_ids: set[str]) -> State:
    keys = [s.key for s in servers(inv, {workload.id})]
    if not keys:
        return State.PENDING
    at_target = [k for k in keys if any(x.backend in target_ids for x in facts.where(k))]
    elsewhere = [k for k in keys if any(x.backend not in target_ids for x in facts.where(k))]
    if at_target and elsewhere:
        return State.INTERRUPTED
    if len(at_target) == len(keys):
        return State.MOVED
    return State.PENDING


def _capacity(b: Backend) -> Resources:
    return Resources(
        b.capacity.vcpus * b.overcommit.cpu,
        b.capacity.ram_gb * 1024 * b.overcommit.ram,
        b.capacity.storage_gb * b.overcommit.storage,
    )


def _needs(s: Server) -> Resources:
    return Resources(s.flavor.vcpus, s.flavor.ram_mb, s.flavor.disk_gb + sum(v.size_gb for v in s.group.volumes))


def _usage(placed: Mapping[str, tuple[Server, str]], exclude: set[str]) -> dict[str, Resources]:
    used: dict[str, Resources] = {}
    for key, (s, backend) in placed.items():
        if key not in exclude:
            used[backend] = used.get(backend, Resources()) + _needs(s)
    return used


def _server_move(s: Server, facts: Facts, source: str, dest: str | None) -> ServerMove:
    seen = next((x for x in facts.where(s.key) if x.backend == source), None)
    declared = _needs(s).storage_gb
    measured = seen.disk_bytes if seen is not None else None
    return ServerMove(
        key=s.key,
        name=seen.name if seen else f"dcctl-{s.workload.id}-{s.group.name}-{s.index}",
        source_backend=source,
        target_backend=dest,
        running=seen.running if seen is not None else True,
        needs=_needs(s),
        copy_bytes=measured if measured is not None else int(declared * GiB),
        copy_basis="measured" if measured is not None else "declared",
        ram_bytes=s.flavor.ram_mb * MiB,
        exists=seen is not None or not facts.observed,
    )


def _shortfall(
    diags: Diagnostics,
    inv: Inventory,
    target: DataCenter,
    tenancy: Tenancy,
    workload: Workload,
    moves: list[ServerMove],
    usage: Mapping[str, Resources],
) -> None:
    """A workload that does not fit at the target: what it needs, and what each eligible backend has free."""
    needed = Resources()
    for m in moves:
        needed = needed + m.needs
    eligible = inv.eligible_backends(tenancy.model_copy(update={"hosted_in": target.id}), workload)
    if not eligible:
        zones = ", ".join(f"{b.id} ({'/'.join(z.value for z in b.zones)}, level {b.level})" for b in target.backends)
        diags.error(
            "consolidate-no-eligible-backend",
            f"no backend of '{target.id}' can run workload '{workload.id}' ({tenancy.zone.value}, MLPS level "
            f"{workload.mlps_level}{', dedicated pool' if workload.mlps_level >= 4 else ''}): {zones or 'none'}",
            hint=f"add a backend to '{target.id}' serving the {tenancy.zone.value} at level "
            f"{workload.mlps_level} or above",
            source=target.where("backends"),
            address=f"workload:{workload.id}",
        )
        return
    free = "; ".join(f"{b.id} has {(_capacity(b) - usage.get(b.id, Resources())).text()} free" for b in eligible)
    diags.error(
        "consolidate-no-capacity",
        f"workload '{workload.id}' does not fit in '{target.id}': it needs {needed.text()} "
        f"({len(moves)} servers); {free} (capacity × overcommit, less what placement gives the servers already there "
        "and the moves before it)",
        hint=f"add capacity to '{target.id}' (or raise its overcommit within limits), or move fewer workloads",
        source=target.where("backends"),
        address=f"workload:{workload.id}",
    )


def _check_quotas(diags: Diagnostics, inv: Inventory, target: DataCenter, switching: list[Tenancy]) -> None:
    """After the switch, the quotas granted in the target's zone must fit its backends' capacity × overcommit."""
    for zone in sorted({t.zone for t in switching}):
        backends = [b for b in target.backends if zone in b.zones]
        if not backends:
            continue  # eligibility reports it per workload
        cap = Resources()
        for b in backends:
            c = _capacity(b)
            cap = cap + Resources(c.vcpus, c.ram_mb / 1024, c.storage_gb)
        granted = Resources()
        for t in inv.tenancies.values():
            if t.hosted_in == target.id and t.zone == zone:
                granted = granted + Resources(t.quotas.vcpus, t.quotas.ram_gb, t.quotas.storage_gb)
        asked = Resources()
        for t in switching:
            if t.zone == zone:
                asked = asked + Resources(t.quotas.vcpus, t.quotas.ram_gb, t.quotas.storage_gb)
        free = cap - granted
        if asked.fits_in(free):
            continue
        short = [
            f"{name} {want:g} > {have:g} free"
            for name, want, have in (
                ("vCPU", asked.vcpus, free.vcpus),
                ("RAM GB", asked.ram_mb, free.ram_mb),
                ("storage GB", asked.storage_gb, free.storage_gb),
            )
            if want > have
        ]
        names = ", ".join(b.id for b in backends)
        diags.error(
            "consolidate-no-capacity",
            f"the quotas of {', '.join(t.id for t in switching if t.zone == zone)} do not fit in '{target.id}' "
            f"({zone.value}): they need {asked.vcpus:g} vCPU, {asked.ram_mb:g} GB RAM, {asked.storage_gb:g} GB "
            f"storage; {names} ha{'s' if len(backends) == 1 else 've'} {cap.vcpus:g} vCPU, {cap.ram_mb:g} GB RAM, "
            f"{cap.storage_gb:g} GB storage (capacity × overcommit), of which quotas already grant {granted.vcpus:g} "
            f"vCPU, {granted.ram_mb:g} GB RAM, {granted.storage_gb:g} GB: short {'; '.join(short)}",
            hint=f"add capacity to '{target.id}' or raise its overcommit within limits, or lower the tenancies' "
            "quotas (policy capacity-quota-within-dc would fail after the switch)",
            source=backends[0].where("capacity"),
            address=f"dc:{target.id}",
        )


def _check_policy(diags: Diagnostics, inv: Inventory, switching: set[str], target_dc: str) -> None:
    """Every other rule must still hold once the tenancies are switched (quotas are checked above, with numbers)."""
    from dcctl.policy import check_policy

    if not switching:
        return
    before = {(d.code, d.message) for d in check_policy(inv).errors}
    reported = {d.address for d in diags.errors if d.address}
    for d in check_policy(switch_tenancies(inv, switching, target_dc)).errors:
        if d.code == "capacity-quota-within-dc" or (d.code, d.message) in before or d.address in reported:
            continue
        diags.error(
            "consolidate-breaks-policy",
            f"after the move the inventory would fail {d.code}: {d.message}",
            hint=d.hint,
            source=d.source,
            address=d.address,
        )


# ------------------------------------------------------------------------------------------------------ method
def _method(
    inv: Inventory,
    workload: Workload,
    moves: list[ServerMove],
    facts: Facts,
    requested: Method | None,
    state: State,
    diags: Diagnostics,
) -> tuple[Method, str, str]:
    """(method, why, why-not-live)."""
    if not moves:
        return Method.NONE, "no servers: only the inventory switches", "no servers"
    if state is State.MOVED:
        return Method.NONE, "already runs at the target", ""
    unseen = sorted({m.source_backend for m in moves if m.source_backend in facts.unobserved})
    if unseen:
        diags.error(
            "consolidate-source-unobserved",
            f"workload '{workload.id}' runs on {', '.join(unseen)}, which could not be observed: dcctl does not move "
            "what it cannot see",
            hint="bring the backend back (scripts/lab status), then plan again",
            address=f"workload:{workload.id}",
        )
        return requested or Method.COLD, "source not observed", "source not observed"
    if not any(m.exists for m in moves):
        return Method.NONE, "none of its servers exists yet: only the inventory switches (apply makes them)", ""
    ends = [inv.backends[b][1] for m in moves for b in (m.source_backend, m.target_backend or "") if b in inv.backends]
    foreign = sorted({b.id for b in ends if not isinstance(b, LibvirtBackend)})
    if foreign:
        diags.error(
            "consolidate-unsupported-backend",
            f"workload '{workload.id}' would move through {', '.join(foreign)}, which is not a libvirt backend: "
            "dcctl moves servers between libvirt hosts only",
            hint="move it by image export and re-create it with dcctl apply",
            address=f"workload:{workload.id}",
        )
        return Method.COLD, "not a libvirt backend", "not a libvirt backend"
    blocked = live_blocked(inv, moves, facts)
    running = all(m.running for m in moves if m.exists)
    if requested is None:
        if not blocked:
            return Method.LIVE, "both ends allow live migration", ""
        if running:
            return Method.WARM, "running; live not possible", blocked
        return Method.COLD, "shut off: nothing to keep running", blocked
    if requested is Method.LIVE and blocked:
        diags.error(
            "consolidate-live-unavailable",
            f"workload '{workload.id}' cannot move live: {blocked}",
            hint="use --method warm (changed-block rounds while it runs, then a short stop) or cold",
            address=f"workload:{workload.id}",
        )
    if requested is Method.WARM and not running:
        diags.error(
            "consolidate-warm-needs-running",
            f"workload '{workload.id}' has servers that are shut off: warm rounds copy a running guest",
            hint="use --method cold (a shut-off guest has no downtime to save)",
            address=f"workload:{workload.id}",
        )
    return requested, "asked for", blocked


def live_blocked(inv: Inventory, moves: list[ServerMove], facts: Facts) -> str:
    """Why these servers cannot be live-migrated ("" when they can)."""
    from dcctl.providers.libvirt.mapping import virt_type

    if facts.live_unsupported:
        return facts.live_unsupported
    for m in (m for m in moves if m.exists):
        if m.target_backend is None:
            return f"{m.name} has no place at the target"
        source, target = inv.backends[m.source_backend][1], inv.backends[m.target_backend][1]
        assert isinstance(source, LibvirtBackend) and isinstance(target, LibvirtBackend)
        if not facts.where(m.key):
            return f"{m.name} was not observed running"
        if not m.running:
            return f"{m.name} is shut off"
        if virt_type(source) != virt_type(target):
            return (
                f"{m.source_backend} runs {virt_type(source)} guests and {m.target_backend} {virt_type(target)}: "
                "a running guest cannot change accelerator"
            )
        if (source.console_path is None) != (target.console_path is None):
            return "one end logs serial consoles to files (console_path), the other does not"
        if migration_address(target) is None:
            return f"{m.target_backend}'s URI names no host the migration stream can reach"
    return ""


def migration_address(backend: LibvirtBackend) -> str | None:
    """The address QEMU's migration stream goes to: the host of the backend's remote URI."""
    from urllib.parse import urlsplit

    parts = urlsplit(backend.uri)
    return parts.hostname if parts.scheme.startswith("qemu+") and parts.hostname else None


# ---------------------------------------------------------------------------------------------------- estimate
def estimate(method: Method, moves: Iterable[ServerMove], a: Assumptions) -> Estimate:
    """``DOWNTIME_RULE`` for the servers of one workload (copied one after another, booted together)."""
    moves = list(moves)
    if method is Method.NONE or not moves:
        return Estimate(0.0, 0.0)
    bw, disk, hsh = a.bandwidth_mib_s * MiB, a.disk_mib_s * MiB, a.hash_mib_s * MiB
    per_byte = 1 / disk + 1 / bw + 2 / hsh  # backup job, ship, sha256 at both ends
    digest = sum(m.copy_bytes for m in moves) * (1 / disk + 1 / hsh)  # raw conversion + hash, both hosts at once
    if method is Method.LIVE:
        duration = sum((m.ram_bytes + m.copy_bytes) / bw for m in moves) + a.overhead_seconds * len(moves)
        return Estimate(a.live_pause_seconds, duration, {"pause": a.live_pause_seconds})
    if method is Method.COLD:
        copy = sum(m.copy_bytes * per_byte + a.overhead_seconds for m in moves)
        parts = {"copy": copy, "verify": digest, "boot": a.boot_seconds}
        downtime = sum(parts.values())
        return Estimate(downtime, downtime, parts)
    rounds_time = 0.0
    last = 0.0
    for m in moves:
        took = m.copy_bytes * per_byte + a.overhead_seconds  # the full round, while the guest runs
        rounds_time += took
        for _ in range(4):  # incremental rounds until the delta is small
            delta = a.dirty_mib_s * MiB * took
            took = delta * per_byte + a.overhead_seconds
            rounds_time += took
            if delta < 64 * MiB:
                break
        last += a.dirty_mib_s * MiB * took * (per_byte + 1 / disk) + a.overhead_seconds
    parts = {"last_delta": last, "verify": digest, "boot": a.boot_seconds}
    downtime = sum(parts.values())
    return Estimate(downtime, rounds_time + downtime, parts)
