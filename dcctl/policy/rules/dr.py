"""Disaster recovery topology: one provincial DR site, and every protected system replicates to it."""

from __future__ import annotations

from collections.abc import Iterator

from dcctl.diagnostics import Severity
from dcctl.inventory import Inventory
from dcctl.inventory.model import DataCenterRole, Tier
from dcctl.policy.rule import Finding, rule
from dcctl.standards import Standards


@rule(
    "dr-site-provincial",
    Severity.ERROR,
    "The province names one provincial DR site",
    "Provincial plan: 省级灾备中心; GB/T 20988-2025 §6.4 (DR-site siting)",
)
def dr_site_provincial(inv: Inventory, _standards: Standards) -> Iterator[Finding]:
    """Important city data is backed up at the provincial DR site (省级灾备中心), so the province must name exactly
    that site: a provincial-tier data center with `role: dr`, not legacy, with at least one backend to receive the
    replicas in every zone whose systems replicate to it (an intranet replica never lands on an extranet backend)."""
    p = inv.province
    if p is None:
        return
    dc = inv.data_centers.get(p.dr_site)
    if dc is None:
        return  # reported as ref-unknown
    problems = []
    if dc.tier is not Tier.PROVINCIAL:
        problems.append(f"its tier is {dc.tier.value}")
    if dc.role is not DataCenterRole.DR:
        problems.append("its role is not 'dr'")
    if dc.legacy:
        problems.append("it is legacy")
    if not dc.backends:
        problems.append("it has no backends to hold replicas")
    else:
        served = {z for b in dc.backends for z in b.zones}
        needed = {t.zone for t, w in inv.workloads.values() if w.dr is not None}
        problems.extend(
            f"it has no {zone.value} backend for the {zone.value} systems that replicate to it"
            for zone in sorted(needed - served)
        )
    if problems:
        yield Finding(
            f"province.dr_site '{dc.id}' is not a usable provincial DR site: " + "; ".join(problems),
            p.where("dr_site"),
            hint="point dr_site at a provincial data center with 'role: dr' and backends",
            address=f"dc:{dc.id}",
        )


@rule(
    "dr-target-provincial-site",
    Severity.ERROR,
    "Protected systems replicate to the provincial DR site",
    "Provincial plan: cities build no DR sites, important data is backed up at the provincial DR site",
)
def dr_target(inv: Inventory, _standards: Standards) -> Iterator[Finding]:
    """Every protected workload (one with a `dr:` policy) has exactly one DR target: the province's DR site.
    A workload naming another target (a city DR site, another production data center) is refused."""
    p = inv.province
    if p is None:
        return
    for tenancy, w in inv.workloads.values():
        if w.dr is not None and w.dr.target is not None and w.dr.target != p.dr_site:
            yield Finding(
                f"workload '{w.id}' replicates to '{w.dr.target}', not to the provincial DR site '{p.dr_site}'",
                w.dr.where("target"),
                hint=f"remove 'target:' (it defaults to '{p.dr_site}') or set it to '{p.dr_site}'",
                address=f"workload:{w.id}",
            )
        dc = inv.data_centers.get(tenancy.hosted_in)
        if w.dr is not None and dc is not None and dc.id == p.dr_site:
            yield Finding(
                f"workload '{w.id}' runs in the DR site itself and cannot replicate to it",
                w.where("dr"),
                hint="host production tenancies in a production data center",
                address=f"workload:{w.id}",
            )
