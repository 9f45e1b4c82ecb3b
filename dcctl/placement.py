"""Placement: which backend each server runs on, within capacity × overcommit, spreading groups (anti-affinity).

Placement is sticky: a server that already exists on a backend stays there. New servers go to the eligible backend
(zone, level, dedicated pool — ``Inventory.eligible_backends``) with the most free vCPU that still fits them, avoiding
backends that already run a server of the same group when ``anti_affinity`` is set and another backend can take it.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field

from dcctl.diagnostics import Diagnostics
from dcctl.inventory import Inventory
from dcctl.inventory.model import Backend, Flavor, ServerGroup, Tenancy, Workload


@dataclass(frozen=True)
class Server:
    """One server of a group, expanded from ``count``."""

    tenancy: Tenancy
    workload: Workload
    group: ServerGroup
    index: int  # 1-based
    flavor: Flavor

    @property
    def key(self) -> str:
        return f"server:{self.workload.id}/{self.group.name}/{self.index}"

    @property
    def group_key(self) -> str:
        return f"{self.workload.id}/{self.group.name}"


@dataclass
class _Room:
    backend: Backend
    vcpus: float
    ram_mb: float
    storage_gb: float
    groups: dict[str, int] = field(default_factory=dict)

    def fits(self, s: Server) -> bool:
        return self.vcpus >= s.flavor.vcpus and self.ram_mb >= s.flavor.ram_mb and self.storage_gb >= _storage(s)

    def take(self, s: Server) -> None:
        self.vcpus -= s.flavor.vcpus
        self.ram_mb -= s.flavor.ram_mb
        self.storage_gb -= _storage(s)
        self.groups[s.group_key] = self.groups.get(s.group_key, 0) + 1


def _storage(s: Server) -> int:
    return s.flavor.disk_gb + sum(v.size_gb for v in s.group.volumes)


def servers(inv: Inventory, workloads: set[str] | None = None) -> Iterator[Server]:
    """Every server the inventory declares (optionally only of some workloads), in a stable order."""
    for wid in sorted(inv.workloads):
        if workloads is not None and wid not in workloads:
            continue
        tenancy, workload = inv.workloads[wid]
        for group in workload.servers:
            flavor = inv.flavors.get(group.flavor)
            if flavor is None:
                continue
            for i in range(1, group.count + 1):
                yield Server(tenancy, workload, group, i, flavor)


def place(
    inv: Inventory,
    existing: Mapping[str, str],
    diags: Diagnostics,
    workloads: set[str] | None = None,
) -> dict[str, tuple[Server, str]]:
    """Place every server; ``existing`` maps server keys to the backend they already run on.

    Returns server key → (server, backend id). Servers that fit nowhere are reported in ``diags`` and left out.
    """
    rooms: dict[str, _Room] = {
        bid: _Room(
            b,
            b.capacity.vcpus * b.overcommit.cpu,
            b.capacity.ram_gb * 1024 * b.overcommit.ram,
            b.capacity.storage_gb * b.overcommit.storage,
        )
        for bid, (_, b) in inv.backends.items()
    }
    placed: dict[str, tuple[Server, str]] = {}
    # Servers of every workload count against capacity, even when only some workloads are targeted.
    everything = list(servers(inv))
    pending: list[Server] = []
    for s in everything:
        where = existing.get(s.key)
        if where in rooms:
            rooms[where].take(s)
            placed[s.key] = (s, where)
        else:
            pending.append(s)
    for s in pending:
        eligible = [rooms[b.id] for b in inv.eligible_backends(s.tenancy, s.workload) if b.id in rooms]
        fitting = [r for r in eligible if r.fits(s)]
        if not fitting:
            if workloads is None or s.workload.id in workloads:
                free = "; ".join(
                    f"{r.backend.id}: {r.vcpus:g} vCPU, {r.ram_mb:g} MiB, {r.storage_gb:g} GB free" for r in eligible
                )
                diags.error(
                    "placement-no-capacity",
                    f"server '{s.key}' ({s.flavor.vcpus} vCPU, {s.flavor.ram_mb} MiB, {_storage(s)} GB) fits on no "
                    f"eligible backend ({free or 'none eligible'})",
                    hint="add capacity or backends, raise overcommit within its limits, or reduce the servers",
                    source=s.group.where("count"),
                    address=s.key,
                )
            continue
        if s.group.anti_affinity:
            fewest = min(r.groups.get(s.group_key, 0) for r in fitting)
            fitting = [r for r in fitting if r.groups.get(s.group_key, 0) == fewest]
        best = max(fitting, key=lambda r: (r.vcpus, r.ram_mb, r.backend.id))
        best.take(s)
        placed[s.key] = (s, best.backend.id)
    if workloads is not None:
        placed = {k: v for k, v in placed.items() if v[0].workload.id in workloads}
    return placed
