"""Where tenancies live and which data centers may exist: the provincial plan's two-tier hosting rules."""

from __future__ import annotations

from collections.abc import Iterator

from dcctl.diagnostics import Severity
from dcctl.inventory import Inventory
from dcctl.inventory.model import DataCenter, DataCenterRole, TenancyKind, Tier
from dcctl.policy.rule import Finding, rule
from dcctl.standards import Standards

PLAN = "Provincial e-government plan: two-tier data centers (省级、市级), counties hosted (托管)"


def _valid_hosts(inv: Inventory, city: str | None) -> list[DataCenter]:
    return [
        dc
        for dc in inv.data_centers.values()
        if not dc.legacy
        and dc.role is DataCenterRole.PRODUCTION
        and (dc.tier is Tier.PROVINCIAL or (dc.tier is Tier.MUNICIPAL and city is not None and dc.city == city))
    ]


@rule(
    "hosting-own-city-or-province",
    Severity.ERROR,
    "Tenancies are hosted in their own city's data center or the province's",
    PLAN,
)
def own_city_or_province(inv: Inventory, _standards: Standards) -> Iterator[Finding]:
    """County governments build no data centers: each county (or district, or department without capacity of its
    own) is hosted as a tenancy in its own city's data center or in the provincial one (县级政府原则上不建数据中心，
    依托市级或省级数据中心托管). A tenancy in another city's data center, or in the DR site, breaks the two-tier model;
    a provincial department (a tenancy without a city) belongs in the provincial data center. A tenancy still running
    in a legacy data center must at least be in its own city's."""
    for t in inv.tenancies.values():
        dc = inv.data_centers.get(t.hosted_in)
        if dc is None:
            continue
        if t.kind in (TenancyKind.COUNTY, TenancyKind.DISTRICT) and t.city is None:
            yield Finding(
                f"{t.kind.value} tenancy '{t.id}' does not say which city it belongs to",
                t.where(),
                hint="add 'city: <city id>' so dcctl can check where it may be hosted",
            )
            continue
        if dc.legacy and dc.city == t.city:
            continue  # still where it always ran; dc-legacy-awaiting-consolidation reports it
        if dc.role is DataCenterRole.DR and not dc.legacy:
            problem = "is hosted in the DR site, which holds replicas, not production tenancies"
        elif dc.tier is Tier.PROVINCIAL:
            continue
        elif t.city is None:
            problem = f"has no city (a provincial department) but is hosted in {dc.tier.value} data center '{dc.id}'"
        elif dc.city != t.city:
            problem = f"of city '{t.city}' is hosted in '{dc.id}', which serves city '{dc.city}'"
        else:
            continue
        allowed = ", ".join(d.id for d in _valid_hosts(inv, t.city)) or "(none defined)"
        yield Finding(
            f"tenancy '{t.id}' {problem}",
            t.where("hosted_in"),
            hint=f"host it in its own city's data center or the provincial one: {allowed}",
            address=f"tenancy:{t.id}",
        )


@rule("dc-no-new-county-dc", Severity.ERROR, "No new county or department data centers", PLAN)
def no_new_county_dc(inv: Inventory, _standards: Standards) -> Iterator[Finding]:
    """The plan says county governments, in principle, build no data centers, and departments use the shared cloud.
    Existing county and department data centers may keep running until they are consolidated (逐步整合), so they may
    appear in the inventory only with `legacy: true` and a consolidation target."""
    for dc in inv.data_centers.values():
        if dc.tier in (Tier.COUNTY, Tier.DEPARTMENT) and not dc.legacy:
            yield Finding(
                f"{dc.tier.value} data center '{dc.id}' is not marked legacy: the plan builds no new ones",
                dc.where("tier"),
                hint="host the county as a tenancy in its city's data center; if it already exists, mark it "
                "'legacy: true' with 'consolidate_into: <city data center>'",
                address=f"dc:{dc.id}",
            )


@rule("dc-no-city-dr-site", Severity.ERROR, "Cities build no DR sites of their own", PLAN)
def no_city_dr_site(inv: Inventory, _standards: Standards) -> Iterator[Finding]:
    """Important city data is backed up at the single provincial DR site (省级灾备中心); cities build no DR sites of
    their own. An existing city DR site may continue, marked `legacy: true` with a consolidation target."""
    for dc in inv.data_centers.values():
        if dc.role is DataCenterRole.DR and dc.tier is not Tier.PROVINCIAL and not dc.legacy:
            yield Finding(
                f"data center '{dc.id}' is a {dc.tier.value} DR site: only the province runs one",
                dc.where("role"),
                hint="replicate city systems to the provincial DR site; mark an existing one 'legacy: true'",
                address=f"dc:{dc.id}",
            )


@rule("dc-legacy-awaiting-consolidation", Severity.WARNING, "Legacy data centers await consolidation", PLAN)
def legacy_awaiting(inv: Inventory, _standards: Standards) -> Iterator[Finding]:
    """Existing county and department data centers, and city DR sites, keep running, but are to be consolidated
    step by step (逐步整合) into the city's or the province's data center. Each is reported, with what it still
    hosts, until it is gone from the inventory."""
    for dc in inv.data_centers.values():
        if dc.legacy:
            hosted = sum(1 for _ in inv.tenancies_in(dc.id))
            target = f"'{dc.consolidate_into}'" if dc.consolidate_into else "(no target yet)"
            yield Finding(
                f"legacy data center '{dc.id}' ({hosted} tenancies) awaits consolidation into {target}",
                dc.where("legacy"),
                hint=f"move its tenancies to {target} (their 'hosted_in'), then remove it from the inventory",
                address=f"dc:{dc.id}",
            )


@rule("dc-legacy-target", Severity.ERROR, "A legacy data center names a valid consolidation target", PLAN)
def legacy_target(inv: Inventory, _standards: Standards) -> Iterator[Finding]:
    """A legacy data center must say where it goes: a non-legacy production data center of its own city, or the
    provincial one; a legacy city DR site goes to the provincial DR site (or the provincial data center). Without a
    target its consolidation cannot be planned."""
    dr_site = inv.dr_site
    for dc in inv.data_centers.values():
        if not dc.legacy:
            continue
        allowed = [d for d in _valid_hosts(inv, dc.city) if d.id != dc.id]
        if dc.role is DataCenterRole.DR and dr_site is not None:
            allowed.insert(0, dr_site)
        names = ", ".join(d.id for d in allowed) or "(none defined)"
        if dc.consolidate_into is None:
            yield Finding(
                f"legacy data center '{dc.id}' has no consolidation target",
                dc.where("legacy"),
                hint=f"add 'consolidate_into:' with one of: {names}",
                address=f"dc:{dc.id}",
            )
        elif dc.consolidate_into in inv.data_centers and dc.consolidate_into not in {d.id for d in allowed}:
            yield Finding(
                f"legacy data center '{dc.id}' cannot be consolidated into '{dc.consolidate_into}'",
                dc.where("consolidate_into"),
                hint=f"the target must be its city's data center or the provincial one: {names}",
                address=f"dc:{dc.id}",
            )
