"""The e-gov intranet and extranet never touch: nothing belongs to both, and each zone runs on its own backends."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterator

from dcctl.diagnostics import Severity
from dcctl.inventory import Inventory
from dcctl.inventory.model import LibvirtBackend, Network, OpenStackBackend
from dcctl.policy.rule import Finding, rule
from dcctl.standards import Standards

CITES = "中办发〔2002〕17号 (内网 physically, 外网 logically separate); GB/T 22239-2019 安全通信网络 › 网络架构"


@rule("net-zone-exclusive", Severity.ERROR, "Nothing belongs to both the intranet and the extranet", CITES)
def zone_exclusive(inv: Inventory, _standards: Standards) -> Iterator[Finding]:
    """The e-government intranet (内网) is classified and physically separate from the internet; the extranet (外网)
    is only logically separate. No network, host, tenancy or server may bridge them: a backend serves one zone, the
    same host or cloud is not declared in both zones under two names, and a tenancy's networks are in its own
    zone (so its servers, which attach only to its networks, are too)."""
    for _, backend in inv.backends.values():
        if len(set(backend.zones)) > 1:
            yield Finding(
                f"backend '{backend.id}' serves both the intranet and the extranet",
                backend.where("zones"),
                hint="a host or cloud serves one zone; declare separate backends on separate hardware",
                address=f"backend:{backend.id}",
            )
    endpoints: dict[str, list[tuple[str, str]]] = defaultdict(list)
    for _, backend in inv.backends.values():
        if isinstance(backend, LibvirtBackend):
            key = f"libvirt host {backend.uri}"
        elif isinstance(backend, OpenStackBackend):
            key = f"cloud {backend.cloud}/{backend.region or '-'}"
        else:  # pragma: no cover - closed union
            continue
        for zone in set(backend.zones):
            endpoints[key].append((backend.id, zone.value))
    for key, uses in endpoints.items():
        zones = {z for _, z in uses}
        if len(zones) > 1:
            first, *rest = [b for b, _ in uses]
            b = inv.backends[rest[0] if rest else first][1]
            yield Finding(
                f"{key} is declared in both zones (backends {', '.join(sorted({u for u, _ in uses}))})",
                b.where("zones"),
                hint="the same hardware cannot serve both networks",
                address=f"backend:{b.id}",
            )
    for t in inv.tenancies.values():
        for n in t.networks:
            if n.zone is not None and n.zone is not t.zone:
                yield Finding(
                    f"network '{n.id}' is in the {n.zone.value} but tenancy '{t.id}' is in the {t.zone.value}",
                    n.where("zone"),
                    hint="a tenancy lives in one zone; put the other zone's systems in a tenancy of their own",
                    address=f"tenancy:{t.id}",
                )


@rule("net-zone-backend", Severity.ERROR, "Workloads run only on backends of their own zone", CITES)
def zone_backend(inv: Inventory, _standards: Standards) -> Iterator[Finding]:
    """Intranet workloads run only on intranet backends, extranet workloads only on extranet ones. A tenancy's data
    center must have a backend serving the tenancy's zone, and a workload pinned to a backend must be pinned to one
    that serves its zone."""
    for t in inv.tenancies.values():
        if t.hosted_in not in inv.data_centers:
            continue
        if not inv.serving(t.hosted_in, t.zone) and (t.workloads or t.networks):
            yield Finding(
                f"data center '{t.hosted_in}' has no backend serving the {t.zone.value} for tenancy '{t.id}'",
                t.where("zone"),
                hint=f"add a backend with 'zones: [{t.zone.value}]' to '{t.hosted_in}', or host the tenancy elsewhere",
                address=f"tenancy:{t.id}",
            )
        for w in t.workloads:
            if w.backend is None or w.backend not in inv.backends:
                continue
            backend = inv.backends[w.backend][1]
            if t.zone not in backend.zones:
                yield Finding(
                    f"workload '{w.id}' ({t.zone.value}) is pinned to backend '{backend.id}', "
                    f"which serves {', '.join(z.value for z in backend.zones)}",
                    w.where("backend"),
                    hint=f"pin it to a backend serving the {t.zone.value}",
                    address=f"workload:{w.id}",
                )


@rule(
    "net-cidr-overlap",
    Severity.ERROR,
    "Networks that could meet do not overlap",
    "GB/T 22239-2019 安全通信网络 › 网络架构 (划分网络区域并分配地址)",
)
def cidr_overlap(inv: Inventory, _standards: Standards) -> Iterator[Finding]:
    """MLPS 2.0 asks that network areas be divided and addressed for management and control. Two networks of one
    tenancy must not overlap (a server on both could not route), and two routed or NAT networks in one data center
    must not overlap (the host would hold two routes to the same addresses). Isolated networks of different tenancies
    may reuse addresses: nothing connects them."""
    for t in inv.tenancies.values():
        nets = list(t.networks)
        for i, a in enumerate(nets):
            for b in nets[i + 1 :]:
                if a.cidr.version == b.cidr.version and a.cidr.overlaps(b.cidr):
                    yield Finding(
                        f"networks '{a.id}' ({a.cidr}) and '{b.id}' ({b.cidr}) of tenancy '{t.id}' overlap",
                        b.where("cidr"),
                        hint="give each network of a tenancy its own address range",
                        address=f"tenancy:{t.id}",
                    )
    routed: dict[str, list[tuple[str, Network]]] = defaultdict(list)
    for t in inv.tenancies.values():
        for n in t.networks:
            if n.mode != "isolated":
                routed[t.hosted_in].append((t.id, n))
    for dc_id, nets_in_dc in routed.items():
        for i, (ta, a) in enumerate(nets_in_dc):
            for tb, b in nets_in_dc[i + 1 :]:
                if ta != tb and a.cidr.version == b.cidr.version and a.cidr.overlaps(b.cidr):
                    yield Finding(
                        f"{b.mode} network '{tb}/{b.id}' ({b.cidr}) overlaps '{ta}/{a.id}' ({a.cidr}) in '{dc_id}'",
                        b.where("cidr"),
                        hint="routed and NAT networks of one data center need distinct address ranges",
                        address=f"tenancy:{tb}",
                    )
