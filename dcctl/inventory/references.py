"""Cross-file references by id: each must name an object that exists, or the error names the nearest ones that do."""

from __future__ import annotations

import difflib
from collections.abc import Collection

from dcctl.diagnostics import Diagnostics, SourceRange
from dcctl.inventory.inventory import Inventory


def _nearest(missing: str, existing: Collection[str]) -> str:
    close = difflib.get_close_matches(missing, list(existing), n=3, cutoff=0.5)
    if close:
        return "did you mean " + " or ".join(f"'{c}'" for c in close) + "?"
    if not existing:
        return "none is defined yet"
    sample = sorted(existing)[:5]
    more = f" (and {len(existing) - 5} more)" if len(existing) > 5 else ""
    return "existing: " + ", ".join(sample) + more


class _Refs:
    def __init__(self, inv: Inventory, diags: Diagnostics) -> None:
        self.inv = inv
        self.diags = diags

    def check(
        self,
        kind: str,
        ref: str | None,
        existing: Collection[str],
        *,
        source: SourceRange | None,
        context: str,
    ) -> bool:
        """True when ``ref`` is empty or resolves; otherwise reports it (unless the target merely failed to load)."""
        if ref is None or ref in existing:
            return True
        if ref in self.inv.seen.get(kind, set()):
            return False  # defined, but broken: its own error is already reported
        self.diags.error(
            "ref-unknown",
            f"{context} refers to {kind.replace('_', ' ')} '{ref}', which is not defined",
            hint=_nearest(ref, existing),
            source=source,
        )
        return False


def check_references(inv: Inventory, diags: Diagnostics) -> None:
    refs = _Refs(inv, diags)
    dcs = inv.data_centers
    if inv.province is not None:
        p = inv.province
        refs.check(
            "data_center",
            p.dr_site,
            dcs,
            source=p.where("dr_site"),
            context="province.dr_site",
        )
    for dc in dcs.values():
        where = f"data center '{dc.id}'"
        refs.check("city", dc.city, inv.cities, source=dc.where("city"), context=where)
        refs.check(
            "data_center",
            dc.consolidate_into,
            dcs,
            source=dc.where("consolidate_into"),
            context=where,
        )
    for t in inv.tenancies.values():
        where = f"tenancy '{t.id}'"
        refs.check("city", t.city, inv.cities, source=t.where("city"), context=where)
        refs.check(
            "data_center",
            t.hosted_in,
            dcs,
            source=t.where("hosted_in"),
            context=where,
        )
        networks = {n.id for n in t.networks}
        hosting = dcs.get(t.hosted_in)
        for w in t.workloads:
            wwhere = f"workload '{w.id}'"
            if w.backend is not None and refs.check(
                "backend", w.backend, inv.backends, source=w.where("backend"), context=wwhere
            ):
                owner = inv.backends[w.backend][0]
                if hosting is not None and owner.id != hosting.id:
                    diags.error(
                        "ref-backend-elsewhere",
                        f"workload '{w.id}' is pinned to backend '{w.backend}' of data center '{owner.id}', "
                        f"but its tenancy is hosted in '{hosting.id}'",
                        hint="pin it to one of: "
                        + (
                            ", ".join(b.id for b in hosting.backends if t.zone in b.zones) or "(no backend in its zone)"
                        ),
                        source=w.where("backend"),
                    )
            if w.dr is not None:
                refs.check(
                    "data_center",
                    w.dr.target,
                    dcs,
                    source=w.dr.where("target"),
                    context=wwhere,
                )
            for g in w.servers:
                gwhere = f"server group '{w.id}/{g.name}'"
                refs.check(
                    "flavor",
                    g.flavor,
                    inv.flavors,
                    source=g.where("flavor"),
                    context=gwhere,
                )
                refs.check("image", g.image, inv.images, source=g.where("image"), context=gwhere)
                for i, net in enumerate(g.networks):
                    if net not in networks:
                        diags.error(
                            "ref-unknown",
                            f"{gwhere} attaches to network '{net}', which tenancy '{t.id}' does not define",
                            hint=_nearest(net, networks),
                            source=g.where("networks", i),
                        )
