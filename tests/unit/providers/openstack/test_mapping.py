"""Inventory → OpenStack resources, names, keys and marks (pure Python: no cloud, no openstacksdk)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import yaml

from dcctl import api
from dcctl.diagnostics import Diagnostics
from dcctl.inventory import Inventory
from dcctl.inventory.model import OpenStackBackend
from dcctl.placement import place
from dcctl.providers.openstack import mapping
from dcctl.resources import DesiredResource
from tests.conftest import ROOT


def lab(path: Path | None = None) -> Inventory:
    result = api.validate(path or ROOT / "inventories" / "lab")
    assert result.valid, [d.message for d in result.diagnostics.errors]
    return result.inventory


def desired(inv: Inventory, backend: str = "dalian-os") -> mapping.DesiredSet:
    placed = place(inv, {}, Diagnostics())
    os_backend = inv.backends[backend][1]
    assert isinstance(os_backend, OpenStackBackend)
    servers = [s for s, b in placed.values() if b == backend]
    return mapping.desired_for(inv, os_backend, servers, "liaoning-lab")


def by_key(resources: list[DesiredResource]) -> dict[str, DesiredResource]:
    return {r.key: r for r in resources}


def test_lab_cloud_gets_both_tenancies_with_every_kind_and_the_key_conventions() -> None:
    result = desired(lab())
    assert not list(result.diagnostics)
    found = by_key(result.resources)
    assert {r.kind for r in result.resources} == set(mapping.KINDS)
    for tenancy in ("changhai-ext", "zhuanghe-ext"):
        for suffix in ("project", "quota", "group:admins", "role_assignment:admins", "role_assignment:dcctl"):
            assert f"tenancy:{tenancy}/{suffix}" in found
        assert f"tenancy:{tenancy}/security_group:baseline" in found
        assert f"tenancy:{tenancy}/network:app" in found and f"tenancy:{tenancy}/subnet:app" in found
    assert "tenancy:changhai-ext/router" in found  # a routed network
    assert "tenancy:zhuanghe-ext/router" not in found  # isolated only: no router
    assert found["backend:dalian-os/domain:dalian-dc"].name == "dcctl-dalian-dc"
    assert found["backend:dalian-os/domain:dalian-dc"].spec["is_domain"] is True
    server = found["server:changhai-portal/web/1"]
    assert server.name == "dcctl-changhai-portal-web-1"
    assert server.spec["server_group"] == "dcctl-changhai-portal-web"
    assert set(server.depends_on) >= {
        "flavor:lab-tiny",
        "image:lab-disk",
        "tenancy:changhai-ext/network:app",
        "tenancy:changhai-ext/subnet:app",
        "tenancy:changhai-ext/security_group:baseline",
        "workload:changhai-portal/server_group:web",
    }
    assert found["server:changhai-portal/web/1/disk:data"].kind == "volume"
    attachment = found["server:changhai-portal/web/1/attachment:data"]
    assert attachment.kind == "volume_attachment"
    assert set(attachment.depends_on) == {"server:changhai-portal/web/1", "server:changhai-portal/web/1/disk:data"}
    names = [(r.kind, r.name) for r in result.resources]
    assert len(names) == len(set(names)), "the diff matches by (kind, name): they must be unique"
    assert all(r.name.startswith("dcctl-") for r in result.resources)


def test_every_dependency_is_a_resource_of_the_same_cloud() -> None:
    resources = desired(lab()).resources
    keys = {r.key for r in resources}
    missing = {(r.key, d) for r in resources for d in r.depends_on if d not in keys}
    assert missing == set()


def test_image_source_is_resolved_against_the_inventory_and_checksummed() -> None:
    inv = lab()
    image = by_key(desired(inv).resources)["image:lab-disk"]
    assert image.spec["source"] == str(ROOT / "inventories" / "lab" / "images" / "lab-disk.raw")
    assert Path(image.spec["source"]).is_file()
    assert image.spec["checksum"].startswith("sha256:")


def test_a_kernel_only_image_is_skipped_on_openstack_with_a_diagnostic(tmp_path: Path) -> None:
    inv_dir = tmp_path / "lab"
    shutil.copytree(ROOT / "inventories" / "lab", inv_dir, ignore=shutil.ignore_patterns(".dcctl"))
    path = inv_dir / "dalian.yaml"
    path.write_text(
        path.read_text().replace(
            "image: lab-disk, networks: [app],\n             volumes",
            "image: lab-guest, networks: [app],\n             volumes",
            1,
        )
    )
    result = desired(lab(inv_dir))
    [warning] = list(result.diagnostics)
    assert warning.code == "image-not-on-openstack"
    assert "server:changhai-portal/web/1" in warning.message and "lab-guest" in warning.message
    assert warning.source is not None and warning.source.path.endswith("dalian.yaml")
    keys = {r.key for r in result.resources}
    assert not any(k.startswith("server:changhai-portal/") for k in keys)
    assert "server:zhuanghe-service/app/1" in keys
    assert "tenancy:changhai-ext/project" in keys  # the tenancy's space stays: only its servers are left out


def test_marks_round_trip_through_descriptions_metadata_and_tags() -> None:
    text = mapping.describe("长海县人民政府（外网）", "liaoning-lab", "dalian-os", "tenancy:changhai-ext/project")
    assert text.startswith("长海县人民政府（外网） [dcctl ")
    assert mapping.parse_description(text) == {
        "province": "liaoning-lab",
        "backend": "dalian-os",
        "key": "tenancy:changhai-ext/project",
    }
    assert mapping.parse_description("made by hand") == {}
    assert mapping.parse_description(None) == {}
    meta = mapping.metadata("p", "b", "server:w/g/1")
    assert meta == {"dcctl_province": "p", "dcctl_backend": "b", "dcctl_key": "server:w/g/1"}
    assert mapping.parse_metadata({**meta, "other": "x"}) == {"province": "p", "backend": "b", "key": "server:w/g/1"}


def test_quotas_follow_the_tenancy_and_their_tags_are_valid_keystone_tags() -> None:
    inv = lab()
    quotas = mapping.quotas(inv.tenancies["changhai-ext"])
    assert quotas["compute"]["cores"] == 4
    assert quotas["compute"]["ram"] == 2048
    assert quotas["compute"]["instances"] == 3
    assert quotas["volume"]["gigabytes"] == 4
    assert quotas["network"]["network"] == 2 and quotas["network"]["router"] == 1
    tags = mapping.quota_tags(quotas)
    assert all(len(t) <= 255 and "," not in t and "/" not in t for t in tags)
    assert mapping.parse_quota_tags([*tags, "dcctl", "dcctl-zone=extranet"]) == {
        "compute": quotas["compute"],
        "volume": quotas["volume"],
    }


def test_intranet_tenancies_get_no_floating_ips_and_talk_only_among_themselves(tmp_path: Path) -> None:
    inv = lab()
    extranet = inv.tenancies["changhai-ext"]
    intranet = extranet.model_copy(update={"zone": mapping.Zone.INTRANET})
    assert mapping.quotas(intranet)["network"]["floatingip"] == 0
    own = {"198.18.80.0/24", "198.18.81.0/24"}
    rules = mapping.baseline_rules(intranet)
    assert {r["remote"] for r in rules} == own
    assert {r["direction"] for r in rules} == {"ingress", "egress"}
    ext = mapping.baseline_rules(extranet)
    assert {
        "direction": "ingress",
        "ethertype": "IPv4",
        "protocol": "tcp",
        "port_min": 443,
        "port_max": 443,
        "remote": "0.0.0.0/0",
    } in ext
    assert ext == sorted(ext, key=mapping.rule_sort_key)


def test_a_neutron_rule_reads_back_as_the_baseline_wrote_it() -> None:
    neutron = {
        "direction": "egress",
        "ethertype": "IPv6",
        "protocol": None,
        "port_range_min": None,
        "port_range_max": None,
        "remote_ip_prefix": None,
        "id": "x",
    }
    assert mapping.normal_rule(neutron)["remote"] == "::/0"


@pytest.mark.parametrize("count", [0])
def test_a_tenancy_without_servers_still_gets_its_space(tmp_path: Path, count: int) -> None:
    inv_dir = tmp_path / "lab"
    shutil.copytree(ROOT / "inventories" / "lab", inv_dir, ignore=shutil.ignore_patterns(".dcctl"))
    doc = yaml.safe_load((inv_dir / "dalian.yaml").read_text())
    for t in doc["tenancies"]:
        for w in t["workloads"]:
            for g in w["servers"]:
                g["count"] = count
    (inv_dir / "dalian.yaml").write_text(yaml.safe_dump(doc, allow_unicode=True, sort_keys=False))
    keys = {r.key for r in desired(lab(inv_dir)).resources}
    assert "tenancy:zhuanghe-ext/project" in keys and "tenancy:changhai-ext/quota" in keys
    assert not any(k.startswith(("server:", "flavor:", "image:")) for k in keys)
