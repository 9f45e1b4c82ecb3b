"""The merged, indexed inventory of one province: every object by id, plus the ids seen in files that failed to load."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field

from dcctl.diagnostics import SourceRange
from dcctl.inventory.model import (
    Backend,
    Catalog,
    City,
    DataCenter,
    Flavor,
    Image,
    Province,
    Tenancy,
    Workload,
    Zone,
)


@dataclass
class Inventory:
    """What the YAML declares, after validation.

    Objects that failed validation are absent; their ids are in ``seen``.
    """

    root: str
    files: tuple[str, ...] = ()
    digest: str = ""
    province: Province | None = None
    catalogs: list[Catalog] = field(default_factory=list)
    cities: dict[str, City] = field(default_factory=dict)
    flavors: dict[str, Flavor] = field(default_factory=dict)
    images: dict[str, Image] = field(default_factory=dict)
    data_centers: dict[str, DataCenter] = field(default_factory=dict)
    backends: dict[str, tuple[DataCenter, Backend]] = field(default_factory=dict)
    tenancies: dict[str, Tenancy] = field(default_factory=dict)
    workloads: dict[str, tuple[Tenancy, Workload]] = field(default_factory=dict)
    #: credentials found (and removed) while loading: (where, what), never the secret itself
    secret_keys: list[tuple[SourceRange, str]] = field(default_factory=list)
    #: ids written in the files per kind, including objects that failed validation (to avoid cascades of
    #: "unknown reference" errors when the referenced object merely had a typo of its own).
    seen: dict[str, set[str]] = field(default_factory=dict)

    def serving(self, dc_id: str, zone: Zone) -> list[Backend]:
        """Backends of a data center that serve a zone: where that zone's tenancies may be placed."""
        dc = self.data_centers.get(dc_id)
        return [b for b in dc.backends if zone in b.zones] if dc else []

    def candidate_backends(self, tenancy: Tenancy, workload: Workload) -> list[Backend]:
        """Where a workload asks to run: its pinned backend, or every backend of its data center serving its zone."""
        if workload.backend is not None:
            found = self.backends.get(workload.backend)
            return [found[1]] if found else []
        return self.serving(tenancy.hosted_in, tenancy.zone)

    def eligible_backends(self, tenancy: Tenancy, workload: Workload) -> list[Backend]:
        """Where a workload may be placed: candidates in its zone, rated at its MLPS level or above, and a dedicated
        pool exactly when it is a level-4 system. Policy rules and the engine's placement both use this."""
        return [
            b
            for b in self.candidate_backends(tenancy, workload)
            if tenancy.zone in b.zones and b.level >= workload.mlps_level and b.dedicated == (workload.mlps_level >= 4)
        ]

    def tenancies_in(self, dc_id: str) -> Iterator[Tenancy]:
        return (t for t in self.tenancies.values() if t.hosted_in == dc_id)

    @property
    def dr_site(self) -> DataCenter | None:
        if self.province is None:
            return None
        return self.data_centers.get(self.province.dr_site)

    def server_count(self) -> int:
        return sum(g.count for _, w in self.workloads.values() for g in w.servers)
