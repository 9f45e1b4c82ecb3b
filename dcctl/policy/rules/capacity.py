"""Capacity: quotas fit the data center, and servers fit their tenancy's quotas."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterator

from dcctl.diagnostics import Severity
from dcctl.inventory import Inventory
from dcctl.inventory.model import Tenancy
from dcctl.policy.rule import Finding, rule
from dcctl.standards import Standards


@rule(
    "capacity-quota-within-dc",
    Severity.ERROR,
    "Tenancy quotas fit the data center's capacity × overcommit",
    "Provincial plan: elastic data centers on shared cloud capacity; GB/T 22239-2019 云计算 (resource isolation)",
)
def quota_within_dc(inv: Inventory, _standards: Standards) -> Iterator[Finding]:
    """The quotas a data center grants to the tenancies of one zone must fit the capacity of the backends serving that
    zone, multiplied by their overcommit ratios (CPU, RAM, storage). A quota the hardware cannot honour is a promise
    the data center cannot keep, and it hides the need for more capacity until the day it is needed."""
    granted: dict[tuple[str, str], list[int]] = defaultdict(lambda: [0, 0, 0])
    first_source: dict[tuple[str, str], Tenancy] = {}
    for t in inv.tenancies.values():
        key = (t.hosted_in, t.zone.value)
        g = granted[key]
        g[0] += t.quotas.vcpus
        g[1] += t.quotas.ram_gb
        g[2] += t.quotas.storage_gb
        first_source.setdefault(key, t)
    for (dc_id, zone), (vcpus, ram, storage) in sorted(granted.items()):
        if dc_id not in inv.data_centers:
            continue
        backends = [b for b in inv.data_centers[dc_id].backends if zone in {z.value for z in b.zones}]
        if not backends:
            continue  # net-zone-backend reports it
        cap_cpu = sum(b.capacity.vcpus * b.overcommit.cpu for b in backends)
        cap_ram = sum(b.capacity.ram_gb * b.overcommit.ram for b in backends)
        cap_sto = sum(b.capacity.storage_gb * b.overcommit.storage for b in backends)
        over = [
            f"{name} {want:,} > {have:,.0f}"
            for name, want, have in (
                ("vCPU", vcpus, cap_cpu),
                ("RAM GB", ram, cap_ram),
                ("storage GB", storage, cap_sto),
            )
            if want > have
        ]
        if over:
            t = first_source[(dc_id, zone)]
            yield Finding(
                f"quotas granted in '{dc_id}' ({zone}) exceed its capacity × overcommit: " + "; ".join(over),
                inv.data_centers[dc_id].where("backends"),
                hint="lower tenancy quotas, raise overcommit within its limits, or add backends "
                f"(first tenancy: {t.id} at {t.where()})",
                address=f"dc:{dc_id}",
            )


@rule(
    "capacity-servers-within-quota",
    Severity.ERROR,
    "A tenancy's servers fit its quotas",
    "OpenStack/libvirt quotas; a plan that cannot apply is refused before it starts",
)
def servers_within_quota(inv: Inventory, _standards: Standards) -> Iterator[Finding]:
    """The servers declared in a tenancy's workloads (count × flavor, plus volumes) must fit the tenancy's quotas:
    otherwise an apply would fail half-way with a quota error from the cloud. dcctl refuses such a plan up front."""
    for t in inv.tenancies.values():
        vcpus = ram_mb = storage = instances = 0
        for w in t.workloads:
            for g in w.servers:
                flavor = inv.flavors.get(g.flavor)
                instances += g.count
                if flavor is None:
                    continue
                vcpus += g.count * flavor.vcpus
                ram_mb += g.count * flavor.ram_mb
                storage += g.count * (flavor.disk_gb + sum(v.size_gb for v in g.volumes))
        q = t.quotas
        over = [
            f"{name} {want:,} > {quota:,}"
            for name, want, quota in (
                ("vCPU", vcpus, q.vcpus),
                ("RAM GB", -(-ram_mb // 1024), q.ram_gb),
                ("storage GB", storage, q.storage_gb),
                ("instances", instances, q.instances),
            )
            if want > quota
        ]
        if over:
            yield Finding(
                f"tenancy '{t.id}' declares more than its quotas allow: " + "; ".join(over),
                t.where("quotas"),
                hint="raise the tenancy's quotas or reduce its servers",
                address=f"tenancy:{t.id}",
            )
