"""Inventory ⇄ OpenStack, without openstacksdk: the resources a cloud needs for the tenancies placed on it, their
names, and the marks by which dcctl knows its own.

**One keystone domain per data center** (``dcctl-<data center>``), holding one project per tenancy
(``dcctl-<tenancy>``) and its administrators' group. The domain is the boundary of who runs the cloud: a data
center's operators administer every tenancy it hosts (托管), whichever city or department the tenancy belongs to —
the provincial data center hosts counties of many cities and provincial departments of none, so a domain per city
would split one operator's estate across many domains and put one city's tenancies in several operators' domains.
Consolidating a legacy data center (逐步整合) then moves a tenancy from one domain to another, which is what it is.
A domain is a keystone project acting as a domain, so dcctl plans it as a ``project`` keyed ``backend:<b>/domain:<dc>``.

**Marks.** Every resource carries its inventory key, the province and the backend, written where the API stores
them atomically with the create call (a crash can never leave an object with dcctl's name but without its marks):
server and volume metadata (``dcctl_key``…), image properties, and a ``[dcctl province=… backend=… key=…]`` suffix in
the description of keystone, neutron and flavor objects. Server groups have neither, so they are dcctl's when their
name is and they live in a dcctl project. Role assignments, quotas and attachments belong to their project, group,
server and volume. An object with a name dcctl would use but without these marks is foreign: seen, never touched.

**Zone baseline.** The tenancy's security group admits its own networks; extranet (外网) systems also serve HTTP(S)
and may reach out; intranet (内网, classified) systems talk only within the tenancy: neutron's default allow-all
egress rules are removed.

**Servers** boot from their image on the flavor's root disk; inventory volumes become cinder volumes attached to
them. A group with ``anti_affinity`` gets a *soft*-anti-affinity server group: nova spreads its servers over hosts
when it can and still boots them when the cloud has fewer hosts than servers (dcctl sees a cloud's capacity only in
aggregate, so a hard policy would turn a capacity question dcctl cannot check into servers in ERROR).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from dcctl.diagnostics import Diagnostics
from dcctl.inventory import Inventory
from dcctl.inventory.model import Image, Network, OpenStackBackend, Tenancy, Zone
from dcctl.placement import Server
from dcctl.resources import NAME_PREFIX, DesiredResource

KINDS = (  # creation order (a subsequence of dcctl.plan.build.KIND_ORDER)
    "flavor",
    "image",
    "project",
    "group",
    "role_assignment",
    "quota",
    "security_group",
    "server_group",
    "network",
    "subnet",
    "router",
    "volume",
    "server",
    "volume_attachment",
)

#: The role a tenancy's administrators (and dcctl's own cloud user) get on its project. Not ``admin``: under the
#: default (legacy) policies of OpenStack Zed, ``admin`` on any project is admin of the whole cloud.
MEMBER_ROLE = "member"
#: Nova's policy for an anti-affinity group (see the module docstring).
ANTI_AFFINITY_POLICY = "soft-anti-affinity"

_MARKS = re.compile(r"\[dcctl ([^\]]*)\]")
META_PREFIX = "dcctl_"


# ------------------------------------------------------------------------------------------------------- marks
def marks(province: str, backend: str, key: str) -> dict[str, str]:
    return {"province": province, "backend": backend, "key": key}


def describe(text: str, province: str, backend: str, key: str) -> str:
    """A description for people, ending in dcctl's marks: ``康平县人民政府 [dcctl province=… backend=… key=…]``."""
    tail = "[dcctl " + " ".join(f"{k}={v}" for k, v in marks(province, backend, key).items()) + "]"
    return f"{text} {tail}" if text else tail


def parse_description(text: str | None) -> dict[str, str]:
    """The marks in a description, or {} when it has none."""
    found = _MARKS.search(text or "")
    if not found:
        return {}
    pairs = (item.partition("=") for item in found.group(1).split())
    return {k: v for k, _, v in pairs if k}


def metadata(province: str, backend: str, key: str) -> dict[str, str]:
    """Server and volume metadata, image properties: ``dcctl_province``, ``dcctl_backend``, ``dcctl_key``."""
    return {META_PREFIX + k: v for k, v in marks(province, backend, key).items()}


def parse_metadata(meta: Mapping[str, Any] | None) -> dict[str, str]:
    return {k.removeprefix(META_PREFIX): str(v) for k, v in (meta or {}).items() if k.startswith(META_PREFIX)}


# ------------------------------------------------------------------------------------------------------- names
def domain_name(dc_id: str) -> str:
    return f"{NAME_PREFIX}{dc_id}"


def project_name(tenancy_id: str) -> str:
    return f"{NAME_PREFIX}{tenancy_id}"


def server_name(s: Server) -> str:
    return f"{NAME_PREFIX}{s.workload.id}-{s.group.name}-{s.index}"


# ------------------------------------------------------------------------------------------------------ quotas
def quotas(tenancy: Tenancy) -> dict[str, dict[str, int]]:
    """Nova, neutron and cinder quotas of a tenancy, from its inventory quotas and its networks.

    Network quotas are as tight as the inventory: a tenancy gets exactly the networks it declares (so it cannot build
    one that would bridge zones), no floating IPs in the intranet, and ports for its servers and routers.
    """
    q = tenancy.quotas
    nets = len(tenancy.networks)
    groups = sum(1 for w in tenancy.workloads for g in w.servers if g.anti_affinity)
    volumes = sum(g.count * len(g.volumes) for w in tenancy.workloads for g in w.servers)
    routed = any(n.mode != "isolated" for n in tenancy.networks)
    return {
        "compute": {
            "cores": q.vcpus,
            "ram": q.ram_gb * 1024,
            "instances": q.instances,
            "server_groups": max(10, groups),
            "server_group_members": max(10, q.instances),
        },
        "volume": {"gigabytes": q.storage_gb, "volumes": max(10, volumes)},
        "network": {
            "network": nets,
            "subnet": nets,
            "router": 1 if routed else 0,
            "port": 2 * q.instances * max(1, nets) + 4 * nets,
            "floatingip": 0 if tenancy.zone is Zone.INTRANET else q.instances,
            "security_group": 10,
            "security_group_rule": 100,
        },
    }


#: quota values recorded as project tags: nova and cinder have no API that lists the quotas of many projects
QUOTA_TAG_PREFIX = "dcctl-quota-"


def quota_tags(spec: Mapping[str, Mapping[str, int]]) -> list[str]:
    """``dcctl-quota-compute=cores:2;ram:1024;…`` (keystone tags may not contain ',' or '/')."""
    return [
        f"{QUOTA_TAG_PREFIX}{service}=" + ";".join(f"{k}:{v}" for k, v in sorted(values.items()))
        for service, values in sorted(spec.items())
        if service in ("compute", "volume")
    ]


def parse_quota_tags(tags: Iterable[str]) -> dict[str, dict[str, int]]:
    out: dict[str, dict[str, int]] = {}
    for tag in tags:
        if not tag.startswith(QUOTA_TAG_PREFIX):
            continue
        service, _, values = tag.removeprefix(QUOTA_TAG_PREFIX).partition("=")
        try:
            out[service] = {k: int(v) for k, _, v in (item.partition(":") for item in values.split(";") if item)}
        except ValueError:
            continue
    return out


# ------------------------------------------------------------------------------------------------ security
def baseline_rules(tenancy: Tenancy) -> list[dict[str, Any]]:
    """The zone baseline of a tenancy's security group, as a canonical sorted list of rules."""
    own = sorted({str(n.cidr) for n in tenancy.networks})
    rules: list[dict[str, Any]] = []

    def rule(direction: str, remote: str, protocol: str | None = None, port: int | None = None) -> None:
        ethertype = "IPv6" if ":" in remote else "IPv4"
        rules.append(
            {
                "direction": direction,
                "ethertype": ethertype,
                "protocol": protocol,
                "port_min": port,
                "port_max": port,
                "remote": remote,
            }
        )

    for cidr in own:
        rule("ingress", cidr)
    if tenancy.zone is Zone.EXTRANET:
        for port in (80, 443):
            rule("ingress", "0.0.0.0/0", "tcp", port)
        rule("egress", "0.0.0.0/0")
        rule("egress", "::/0")
    else:
        for cidr in own:
            rule("egress", cidr)
    return sorted(rules, key=rule_sort_key)


def rule_sort_key(r: Mapping[str, Any]) -> tuple[str, ...]:
    return tuple(
        str(r.get(k) if r.get(k) is not None else "")
        for k in ("direction", "ethertype", "protocol", "port_min", "port_max", "remote")
    )


def normal_rule(r: Mapping[str, Any]) -> dict[str, Any]:
    """A neutron rule in the baseline's terms (an any-remote rule is 0.0.0.0/0 or ::/0)."""
    remote = r.get("remote_ip_prefix") or ("::/0" if r.get("ethertype") == "IPv6" else "0.0.0.0/0")
    return {
        "direction": r.get("direction"),
        "ethertype": r.get("ethertype"),
        "protocol": r.get("protocol"),
        "port_min": r.get("port_range_min"),
        "port_max": r.get("port_range_max"),
        "remote": remote,
    }


# ------------------------------------------------------------------------------------------------- desired
@dataclass
class DesiredSet:
    resources: list[DesiredResource]
    diagnostics: Diagnostics


def image_source(inv: Inventory, image: Image) -> str | None:
    """The image file's absolute path (relative paths are relative to the inventory), or its URL."""
    if image.source is None:
        return None
    src = image.source
    if re.match(r"^[a-z][a-z0-9+.-]*://", src) and not src.startswith("file://"):
        return src
    path = Path(src.removeprefix("file://"))
    if not path.is_absolute():
        path = Path(inv.root) / path
    return str(path)


def desired_for(inv: Inventory, backend: OpenStackBackend, placed: Iterable[Server], province: str) -> DesiredSet:
    """Every resource one cloud needs for the servers placed on it, and the tenancies they live in."""
    diags = Diagnostics()
    out: dict[str, DesiredResource] = {}
    b = backend.id

    def add(kind: str, key: str, name: str, spec: dict[str, Any], deps: Iterable[str] = (), source: Any = None) -> None:
        if key not in out:
            out[key] = DesiredResource(kind, key, b, name, spec, tuple(deps), source)

    servers: list[Server] = []
    skipped: dict[tuple[str, str], list[Server]] = {}
    everything = list(placed)
    for s in everything:
        image = inv.images.get(s.group.image)
        if image is None:
            continue
        if image.source is None:
            skipped.setdefault((s.workload.id, s.group.name), []).append(s)
            continue
        servers.append(s)
    for left_out in skipped.values():
        s = left_out[0]
        keys = ", ".join(x.key for x in left_out)
        diags.warning(
            "image-not-on-openstack",
            f"{len(left_out)} server(s) of '{s.workload.id}/{s.group.name}' left out on OpenStack backend '{b}' "
            f"({keys}): image '{s.group.image}' boots a kernel and initrd directly, which only libvirt can do",
            hint=f"give image '{s.group.image}' a disk image 'source' (and its sha256 'checksum'), or pin the "
            "workload to a libvirt backend",
            source=s.group.where("image"),
            address=s.key,
        )

    # tenancies: those with servers placed here (made or left out), and server-less ones whose first serving
    # backend this is
    tenancies: dict[str, Tenancy] = {s.tenancy.id: s.tenancy for s in everything}
    for t in inv.tenancies.values():
        if t.id in tenancies or any(g.count for w in t.workloads for g in w.servers):
            continue
        serving = inv.serving(t.hosted_in, t.zone)
        if serving and serving[0].id == b:
            tenancies[t.id] = t

    for t in sorted(tenancies.values(), key=lambda t: t.id):
        _tenancy(inv, t, province, b, add)

    for s in servers:
        _server(inv, s, province, b, add)
    return DesiredSet(list(out.values()), diags)


def _tenancy(inv: Inventory, t: Tenancy, province: str, b: str, add: Any) -> None:
    dc = inv.data_centers.get(t.hosted_in)
    dc_label = dc.name if dc else t.hosted_in
    domain_key = f"backend:{b}/domain:{t.hosted_in}"
    domain = {"is_domain": True, "description": describe(dc_label, province, b, domain_key)}
    add("project", domain_key, domain_name(t.hosted_in), domain, (), dc.where() if dc else None)
    pkey = f"tenancy:{t.id}/project"
    pname = project_name(t.id)
    add(
        "project",
        pkey,
        pname,
        {
            "domain": domain_name(t.hosted_in),
            "domain_description": domain["description"],
            "description": describe(t.name, province, b, pkey),
            "tags": ["dcctl", f"dcctl-zone={t.zone.value}"],
        },
        (domain_key,),
        t.where(),
    )
    gkey = f"tenancy:{t.id}/group:admins"
    add(
        "group",
        gkey,
        f"{pname}-admins",
        {
            "domain": domain_name(t.hosted_in),
            "domain_description": domain["description"],
            "description": describe(f"{t.name} administrators", province, b, gkey),
            "members": sorted(set(t.admins)),
        },
        (domain_key,),
        t.where("admins") if t.admins else t.where(),
    )
    rkey = f"tenancy:{t.id}/role_assignment:admins"
    add(
        "role_assignment",
        rkey,
        f"{pname}-admins@{pname}",
        {"actor": "group", "group": f"{pname}-admins", "project": pname, "role": MEMBER_ROLE},
        (gkey, pkey),
        t.where(),
    )
    okey = f"tenancy:{t.id}/role_assignment:dcctl"
    add(
        "role_assignment",
        okey,
        f"{pname}-dcctl@{pname}",
        {"actor": "operator", "project": pname, "role": MEMBER_ROLE},
        (pkey,),
        t.where(),
    )
    add("quota", f"tenancy:{t.id}/quota", pname, {"project": pname, **quotas(t)}, (pkey,), t.where("quotas"))
    sgkey = f"tenancy:{t.id}/security_group:baseline"
    add(
        "security_group",
        sgkey,
        f"{pname}-baseline",
        {
            "project": pname,
            "zone": t.zone.value,
            "description": describe(f"{t.zone.value} baseline of {t.name}", province, b, sgkey),
            "rules": baseline_rules(t),
        },
        (pkey,),
        t.where(),
    )
    subnets: list[str] = []
    for net in t.networks:
        _network(t, net, province, b, add)
        if net.mode != "isolated":
            subnets.append(f"tenancy:{t.id}/subnet:{net.id}")
    if subnets:
        rkey = f"tenancy:{t.id}/router"
        add(
            "router",
            rkey,
            pname,
            {
                "project": pname,
                "description": describe(f"router of {t.name}", province, b, rkey),
                "interfaces": sorted(f"{pname}-{k.rsplit(':', 1)[1]}" for k in subnets),
            },
            (pkey, *subnets),
            t.where("networks"),
        )


def _network(t: Tenancy, net: Network, province: str, b: str, add: Any) -> None:
    pname = project_name(t.id)
    nkey = f"tenancy:{t.id}/network:{net.id}"
    name = f"{pname}-{net.id}"
    add(
        "network",
        nkey,
        name,
        {
            "project": pname,
            "zone": t.zone.value,
            "mode": net.mode,
            "description": describe(f"{net.mode} network {net.id} of {t.name}", province, b, nkey),
        },
        (f"tenancy:{t.id}/project",),
        net.where(),
    )
    skey = f"tenancy:{t.id}/subnet:{net.id}"
    gateway = None
    if net.mode != "isolated":
        gateway = str(next(iter(net.cidr.hosts()), net.cidr.network_address))
    add(
        "subnet",
        skey,
        name,
        {
            "project": pname,
            "network": name,
            "cidr": str(net.cidr),
            "ip_version": net.cidr.version,
            "gateway": gateway,
            "description": describe(f"subnet of {net.id}", province, b, skey),
        },
        (nkey,),
        net.where("cidr"),
    )


def _server(inv: Inventory, s: Server, province: str, b: str, add: Any) -> None:
    t = s.tenancy
    pname = project_name(t.id)
    image = inv.images[s.group.image]
    flavor_key, image_key = f"flavor:{s.flavor.id}", f"image:{image.id}"
    add(
        "flavor",
        flavor_key,
        f"{NAME_PREFIX}{s.flavor.id}",
        {
            "vcpus": s.flavor.vcpus,
            "ram_mb": s.flavor.ram_mb,
            "disk_gb": max(s.flavor.disk_gb, image.min_disk_gb),
            "description": describe("", province, b, flavor_key),
        },
        (),
        s.flavor.where(),
    )
    add(
        "image",
        image_key,
        f"{NAME_PREFIX}{image.id}",
        {
            "source": image_source(inv, image),
            "source_as_written": image.source,  # what identifies the file when there is no checksum
            "checksum": image.checksum,
            "disk_format": image.format,
            "min_disk_gb": image.min_disk_gb,
            "title": image.name or image.id,
        },
        (),
        image.where("source"),
    )
    deps = [flavor_key, image_key, f"tenancy:{t.id}/quota", f"tenancy:{t.id}/role_assignment:dcctl"]
    deps.append(f"tenancy:{t.id}/security_group:baseline")
    group_name = None
    if s.group.anti_affinity:
        gkey = f"workload:{s.workload.id}/server_group:{s.group.name}"
        group_name = f"{NAME_PREFIX}{s.workload.id}-{s.group.name}"
        add(
            "server_group",
            gkey,
            group_name,
            {"project": pname, "policy": ANTI_AFFINITY_POLICY},
            (f"tenancy:{t.id}/project", f"tenancy:{t.id}/role_assignment:dcctl"),
            s.group.where("anti_affinity") or s.group.where(),
        )
        deps.append(gkey)
    networks = []
    for net_id in s.group.networks:
        if any(n.id == net_id for n in t.networks):
            networks.append(f"{pname}-{net_id}")
            deps += [f"tenancy:{t.id}/network:{net_id}", f"tenancy:{t.id}/subnet:{net_id}"]
    name = server_name(s)
    add(
        "server",
        s.key,
        name,
        {
            "project": pname,
            "flavor": f"{NAME_PREFIX}{s.flavor.id}",
            "vcpus": s.flavor.vcpus,
            "ram_mb": s.flavor.ram_mb,
            "disk_gb": max(s.flavor.disk_gb, image.min_disk_gb),
            "image": f"{NAME_PREFIX}{image.id}",
            "networks": networks,
            "security_groups": [f"{pname}-baseline"],
            "server_group": group_name,
            "tenancy": t.id,
            "workload": s.workload.id,
            "zone": t.zone.value,
            "mlps_level": s.workload.mlps_level,
        },
        deps,
        s.group.where(),
    )
    for vol in s.group.volumes:
        vkey = f"{s.key}/disk:{vol.name}"
        vname = f"{name}-{vol.name}"
        add(
            "volume",
            vkey,
            vname,
            {"project": pname, "size_gb": vol.size_gb},
            (f"tenancy:{t.id}/quota", f"tenancy:{t.id}/role_assignment:dcctl"),
            s.group.where("volumes"),
        )
        add(
            "volume_attachment",
            f"{s.key}/attachment:{vol.name}",
            vname,
            {"project": pname, "server": name, "volume": vname},
            (s.key, vkey),
            s.group.where("volumes"),
        )
