"""A generated province with a legacy county data center to consolidate (libvirt test-driver backends)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from dcctl.api import validate
from dcctl.inventory import Inventory
from tests.conftest import CASES

NODE = CASES / "engine" / "node.xml"


def backend(bid: str, *, vcpus: int = 8, ram_gb: int = 16, storage_gb: int = 100, level: int = 3) -> dict[str, Any]:
    return {
        "id": bid,
        "type": "libvirt",
        "uri": f"test://{NODE}",
        "zones": ["extranet"],
        "level": level,
        "capacity": {"vcpus": vcpus, "ram_gb": ram_gb, "storage_gb": storage_gb},
    }


def workload(wid: str, networks: list[str], *, count: int = 1, level: int = 2) -> dict[str, Any]:
    return {
        "id": wid,
        "name": wid,
        "mlps_level": level,
        "servers": [{"name": "app", "count": count, "flavor": "small", "image": "debian", "networks": networks}],
    }


def write_province(
    root: Path,
    *,
    target: dict[str, Any] | None = None,
    legacy: dict[str, Any] | None = None,
    legacy_workloads: list[dict[str, Any]] | None = None,
    quotas: dict[str, int] | None = None,
    staying: int = 0,
) -> Path:
    """A province whose county of Faku runs in a legacy data center to be consolidated into Shenyang's."""
    province = yaml.safe_load((CASES / "policy" / "_base" / "province.yaml").read_text())
    province["catalog"]["flavors"] = [{"id": "small", "vcpus": 1, "ram_mb": 1024, "disk_gb": 10}]
    province["catalog"]["images"] = [{"id": "debian", "kernel": "/boot/vmlinuz", "initrd": "/boot/initrd.img"}]
    province["data_centers"] = [
        {
            "id": "prov-dr",
            "name": "省灾备中心",
            "tier": "provincial",
            "role": "dr",
            "backends": [backend("dr-kvm", level=4)],
        },
        {
            "id": "shenyang-dc",
            "name": "沈阳市数据中心",
            "tier": "municipal",
            "city": "shenyang",
            "backends": [target or backend("sy-kvm")],
        },
        {
            "id": "faku-legacy-dc",
            "name": "法库县数据中心（存量）",
            "tier": "county",
            "city": "shenyang",
            "legacy": True,
            "consolidate_into": "shenyang-dc",
            "backends": [legacy or backend("faku-kvm", level=2)],
        },
    ]
    tenancies = []
    if staying:
        tenancies.append(
            {
                "id": "xinmin-ext",
                "name": "新民市人民政府",
                "kind": "county",
                "city": "shenyang",
                "hosted_in": "shenyang-dc",
                "zone": "extranet",
                "quotas": {"vcpus": staying, "ram_gb": staying, "storage_gb": 10 * staying, "instances": staying},
                "networks": [{"id": "app", "cidr": "198.18.20.0/24"}],
                "workloads": [workload("xinmin-service", ["app"], count=staying)],
            }
        )
    tenancies.append(
        {
            "id": "faku-ext",
            "name": "法库县人民政府",
            "kind": "county",
            "city": "shenyang",
            "hosted_in": "faku-legacy-dc",  # still where it always ran
            "zone": "extranet",
            "quotas": quotas or {"vcpus": 4, "ram_gb": 4, "storage_gb": 40, "instances": 4},
            "networks": [{"id": "app", "cidr": "198.18.30.0/24"}, {"id": "db", "cidr": "198.18.31.0/24"}],
            "workloads": legacy_workloads if legacy_workloads is not None else [workload("faku-portal", ["app"])],
        }
    )
    province["tenancies"] = tenancies
    root.mkdir(parents=True, exist_ok=True)
    (root / "province.yaml").write_text(yaml.safe_dump(province, allow_unicode=True, sort_keys=False))
    return root


def load(root: Path) -> Inventory:
    result = validate(root)
    assert result.valid, [d.message for d in result.diagnostics.errors]
    return result.inventory


@pytest.fixture
def province(tmp_path: Path) -> Path:
    return write_province(tmp_path / "inv")
