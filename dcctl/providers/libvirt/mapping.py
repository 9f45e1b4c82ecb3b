"""Inventory ⇄ libvirt, without libvirt: the resources a host needs, their XML, and what observed XML says.

Names: pool ``dcctl``; networks ``dcctl-<tenancy>-<network>`` on bridge ``dc<hash>``; volumes
``dcctl-<workload>-<group>-<n>-<disk>.qcow2``; domains ``dcctl-<workload>-<group>-<n>``. Domains and networks carry
their inventory key in ``<metadata>`` and a UUID derived from (province, backend, key), so dcctl finds its own
resources without any state file, and never mistakes a foreign one for its own.
"""

from __future__ import annotations

import hashlib
import ipaddress
import xml.etree.ElementTree as ET
from collections.abc import Iterable
from typing import Any

from dcctl.inventory import Inventory
from dcctl.inventory.model import LibvirtBackend
from dcctl.placement import Server
from dcctl.resources import NAME_PREFIX, DesiredResource, stable_uuid
from dcctl.templating import render

NS = "https://dcctl.invalid/xmlns/resource/1"
POOL_NAME = "dcctl"
KINDS = ("pool", "network", "volume", "server")  # creation order


def virt_type(backend: LibvirtBackend) -> str:
    scheme = backend.uri.split(":", 1)[0]
    if scheme.startswith("test"):
        return "test"
    return backend.virt_type


def bridge_name(province: str, key: str) -> str:
    """Linux limits interface names to 15 characters: 'dc' + 12 hex digits of the network's identity."""
    return "dc" + hashlib.sha256(f"{province}/{key}".encode()).hexdigest()[:12]


def server_name(s: Server) -> str:
    return f"{NAME_PREFIX}{s.workload.id}-{s.group.name}-{s.index}"


def desired_for(inv: Inventory, backend: LibvirtBackend, placed: Iterable[Server]) -> list[DesiredResource]:
    """Pool, networks, volumes and domains one host needs for the servers placed on it."""
    province = inv.province.id if inv.province else ""
    out: list[DesiredResource] = []
    servers = list(placed)
    if not servers:
        return out
    pool_key = f"backend:{backend.id}/pool"
    out.append(
        DesiredResource("pool", pool_key, backend.id, POOL_NAME, {"path": backend.storage_path}, (), backend.where())
    )
    networks: dict[str, DesiredResource] = {}
    for s in servers:
        tenancy = s.tenancy
        for net_id in s.group.networks:
            key = f"tenancy:{tenancy.id}/network:{net_id}"
            if key in networks:
                continue
            net = next((n for n in tenancy.networks if n.id == net_id), None)
            if net is None:
                continue
            first = next(iter(net.cidr.hosts()), net.cidr.network_address)
            net_spec = {
                "mode": net.mode,
                "cidr": str(net.cidr),
                "zone": tenancy.zone.value,
                "bridge": bridge_name(province, key),
                "gateway": str(first),
                "prefix": net.cidr.prefixlen,
            }
            networks[key] = DesiredResource(
                "network", key, backend.id, f"{NAME_PREFIX}{tenancy.id}-{net_id}", net_spec, (), net.where()
            )
    out.extend(networks.values())
    for s in servers:
        name = server_name(s)
        image = inv.images.get(s.group.image)
        disks: list[dict[str, Any]] = []
        volume_keys: list[str] = []
        sizes = ([("root", s.flavor.disk_gb)] if s.flavor.disk_gb > 0 else []) + [
            (v.name, v.size_gb) for v in s.group.volumes
        ]
        for disk, size in sizes:
            vname = f"{name}-{disk}.qcow2"
            vkey = f"{s.key}/disk:{disk}"
            path = f"{backend.storage_path.rstrip('/')}/{vname}"
            out.append(
                DesiredResource("volume", vkey, backend.id, vname, {"size_gb": size}, (pool_key,), s.group.where())
            )
            disks.append({"name": vname, "path": path})
            volume_keys.append(vkey)
        boot = None
        if image is not None and image.kernel is not None:
            boot = {"kernel": image.kernel, "initrd": image.initrd, "cmdline": f"{image.cmdline} dcctl.name={name}"}
        net_keys = [
            f"tenancy:{s.tenancy.id}/network:{n}"
            for n in s.group.networks
            if f"tenancy:{s.tenancy.id}/network:{n}" in networks
        ]
        spec: dict[str, Any] = {
            "vcpus": s.flavor.vcpus,
            "ram_mb": s.flavor.ram_mb,
            "virt_type": virt_type(backend),
            "boot": boot,
            "image": s.group.image,
            "disks": disks,
            "networks": [networks[k].name for k in net_keys],
            "console_path": backend.console_path,
            "tenancy": s.tenancy.id,
            "workload": s.workload.id,
            "zone": s.tenancy.zone.value,
            "mlps_level": s.workload.mlps_level,
        }
        out.append(
            DesiredResource("server", s.key, backend.id, name, spec, tuple(volume_keys + net_keys), s.group.where())
        )
    return out


# ------------------------------------------------------------------------------------------------------------ XML
def render_xml(desired: DesiredResource, province: str) -> str:
    context = {
        "name": desired.name,
        "uuid": stable_uuid(province, desired.backend, desired.key),
        "key": desired.key,
        "province": province,
        "backend": desired.backend,
        "digest": desired.spec_digest,
        "ns": NS,
        "spec": desired.spec,
        "title": f"dcctl {desired.key}",
        "virt_type": desired.spec.get("virt_type", ""),
    }
    return render(f"libvirt/{'domain' if desired.kind == 'server' else desired.kind}.xml.j2", **context)


def _metadata(root: ET.Element) -> dict[str, str]:
    found = root.find(f"metadata/{{{NS}}}resource")
    if found is None:
        return {}
    return {child.tag.split("}", 1)[1]: (child.text or "") for child in found}


def parse_domain(xml: str) -> dict[str, Any]:
    """What dcctl compares on a domain: size, disks, networks, whether it runs, and its dcctl metadata. ``running``
    holds for live XML (``XMLDesc(0)``), where libvirt writes the id of an active domain, and only of one."""
    root = ET.fromstring(xml)
    memory = root.find("memory")
    unit = (memory.get("unit") or "KiB") if memory is not None else "KiB"
    scale = {"KiB": 1 / 1024, "k": 1 / 1024, "MiB": 1, "M": 1, "GiB": 1024, "G": 1024, "b": 1 / 1048576}.get(unit, 1)
    ram_mb = round(int(memory.text or 0) * scale) if memory is not None else 0
    vcpu = root.find("vcpu")
    disks = [
        src.get("file", "")
        for d in root.findall("devices/disk")
        if d.get("device", "disk") == "disk" and (src := d.find("source")) is not None
    ]
    networks = [
        src.get("network", "")
        for i in root.findall("devices/interface")
        if (src := i.find("source")) is not None and src.get("network")
    ]
    return {
        "uuid": root.findtext("uuid", ""),
        "vcpus": int(vcpu.text or 0) if vcpu is not None else 0,
        "ram_mb": ram_mb,
        "disks": disks,
        "networks": networks,
        "running": root.get("id", "-1") != "-1",
        "metadata": _metadata(root),
    }


def parse_network(xml: str) -> dict[str, Any]:
    root = ET.fromstring(xml)
    forward = root.find("forward")
    mode = "isolated" if forward is None else {"nat": "nat", "route": "routed"}.get(forward.get("mode", ""), "other")
    ip = root.find("ip")
    cidr = ""
    if ip is not None and ip.get("address"):
        prefix = ip.get("prefix") or str(ipaddress.ip_network(f"0.0.0.0/{ip.get('netmask')}").prefixlen)
        cidr = str(ipaddress.ip_interface(f"{ip.get('address')}/{prefix}").network)
    bridge = root.find("bridge")
    return {
        "uuid": root.findtext("uuid", ""),
        "mode": mode,
        "cidr": cidr,
        "bridge": bridge.get("name", "") if bridge is not None else "",
        "metadata": _metadata(root),
    }


def parse_pool(xml: str) -> dict[str, Any]:
    root = ET.fromstring(xml)
    return {"uuid": root.findtext("uuid", ""), "path": root.findtext("target/path", "")}
