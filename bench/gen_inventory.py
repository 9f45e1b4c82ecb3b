"""Generate a province-scale inventory (N cities, M county tenancies, S servers) for benchmarks.

Usage: python bench/gen_inventory.py OUT_DIR [--cities 14] [--counties 100] [--servers 10000] [--per-group 5]
"""

from __future__ import annotations

import argparse
import hashlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml


def _backend(bid: str, zone: str, level: int, *, cpus: int, dedicated: bool = False) -> dict[str, Any]:
    return {
        "id": bid,
        "type": "libvirt",
        "uri": f"qemu+ssh://root@{bid}.example.internal/system",
        "zones": [zone],
        "level": level,
        "dedicated": dedicated,
        "capacity": {"vcpus": cpus, "ram_gb": cpus * 8, "storage_gb": cpus * 200},
        "overcommit": {"cpu": 4.0, "ram": 1.5, "storage": 2.0},
    }


def generate(out: Path, *, cities: int = 14, counties: int = 100, servers: int = 10_000, per_group: int = 5) -> Path:
    """Write the inventory (province.yaml plus one file per city) and return its directory."""
    out.mkdir(parents=True, exist_ok=True)
    city_ids = [f"city{c:02d}" for c in range(cities)]
    province = {
        "province": {
            "id": "benchprov",
            "name": "基准省",
            "dr_site": "prov-dr",
            "cities": [{"id": c, "name": f"城市{c}"} for c in city_ids],
        },
        "catalog": {
            "flavors": [{"id": "m1", "vcpus": 1, "ram_mb": 1024, "disk_gb": 10}],
            "images": [{"id": "debian", "source": "/srv/images/debian.qcow2"}],
        },
        "data_centers": [
            {
                "id": "prov-dc",
                "name": "省数据中心",
                "tier": "provincial",
                "backends": [_backend("prov-ext", "extranet", 4, cpus=512)],
            },
            {
                "id": "prov-dr",
                "name": "省灾备中心",
                "tier": "provincial",
                "role": "dr",
                "backends": [_backend("dr-ext", "extranet", 4, cpus=1024)],
            },
        ],
    }
    (out / "province.yaml").write_text(yaml.safe_dump(province, allow_unicode=True, sort_keys=False))
    per_county = servers // counties
    workloads_per_county = max(1, per_county // (per_group * 2))
    for ci, city in enumerate(city_ids):
        mine = [k for k in range(counties) if k % cities == ci]
        cpus = max(64, len(mine) * per_county * 2 // 16 + 64)
        doc: dict[str, Any] = {
            "data_centers": [
                {
                    "id": f"{city}-dc",
                    "name": f"{city}数据中心",
                    "tier": "municipal",
                    "city": city,
                    "backends": [_backend(f"{city}-kvm{h}", "extranet", 3, cpus=cpus) for h in range(4)],
                }
            ],
            "tenancies": [],
        }
        for k in mine:
            tid = f"county{k:03d}"
            workloads = []
            for w in range(workloads_per_county):
                groups = [
                    {"name": f"g{g}", "count": per_group, "flavor": "m1", "image": "debian", "networks": ["app"]}
                    for g in range(2)
                ]
                workloads.append(
                    {
                        "id": f"{tid}-w{w:02d}",
                        "name": f"系统{w}",
                        "mlps_level": 3 if w == 0 else 2,
                        "servers": groups,
                        **({"dr": {"rpo": "15m", "rto": "4h"}} if w == 0 else {}),
                    }
                )
            doc["tenancies"].append(
                {
                    "id": tid,
                    "name": f"县{k}",
                    "kind": "county",
                    "city": city,
                    "hosted_in": f"{city}-dc",
                    "zone": "extranet",
                    "quotas": {
                        "vcpus": per_county,
                        "ram_gb": per_county,
                        "storage_gb": per_county * 10,
                        "instances": per_county,
                    },
                    "networks": [{"id": "app", "cidr": f"198.18.{k % 256}.0/24"}],
                    "workloads": workloads,
                }
            )
        (out / f"{city}.yaml").write_text(yaml.safe_dump(doc, allow_unicode=True, sort_keys=False))
    return out


def openstack_inventory(
    inv: Path, *, prefix: str, cloud: str, tenancies: int, servers: int, storage_gb: int, cidr: Callable[[int], str]
) -> Path:
    """A province of one OpenStack-backed city data center (cloud ``cloud``) hosting ``tenancies`` county tenancies of
    ``servers`` tiny servers each, written to ``inv/bench.yaml``; ids start with ``prefix`` (so do the objects dcctl
    makes: ``dcctl-<prefix>-…``), tenancy ``i`` (from 1) gets network ``cidr(i)``. The province's DR site must exist:
    an in-process libvirt test host stands for it."""
    inv.mkdir(parents=True, exist_ok=True)
    disk = inv / f"{prefix}-disk.raw"
    disk.write_bytes(b"\0" * 65536)
    checksum = "sha256:" + hashlib.sha256(disk.read_bytes()).hexdigest()
    doc: dict[str, Any] = {
        "province": {
            "id": f"{prefix}-province",
            "name": "辽宁省（基准测试）",
            "dr_site": f"{prefix}-dr",
            "cities": [{"id": "dalian", "name": "大连市"}],
        },
        "catalog": {
            "flavors": [{"id": f"{prefix}-tiny", "vcpus": 1, "ram_mb": 64, "disk_gb": 1}],
            "images": [{"id": f"{prefix}-disk", "source": disk.name, "checksum": checksum, "format": "raw"}],
        },
        "data_centers": [
            {
                "id": f"{prefix}-dr",
                "name": "省灾备中心（基准测试）",
                "tier": "provincial",
                "role": "dr",
                "backends": [
                    {
                        "id": f"{prefix}-dr-kvm",
                        "type": "libvirt",
                        "uri": "test:///default",
                        "zones": ["extranet"],
                        "level": 4,
                        "capacity": {"vcpus": 8, "ram_gb": 16, "storage_gb": 100},
                    }
                ],
            },
            {
                "id": f"{prefix}-dc",
                "name": "大连市政务云（基准测试）",
                "tier": "municipal",
                "city": "dalian",
                "backends": [
                    {
                        "id": f"{prefix}-os",
                        "type": "openstack",
                        "cloud": cloud,
                        "zones": ["extranet"],
                        "level": 3,
                        "capacity": {"vcpus": 64, "ram_gb": 1024, "storage_gb": 4000},
                        "overcommit": {"cpu": 16.0},
                    }
                ],
            },
        ],
        "tenancies": [
            {
                "id": f"{prefix}-t{i:02d}",
                "name": f"基准测试县 {i:02d}",
                "kind": "county",
                "city": "dalian",
                "hosted_in": f"{prefix}-dc",
                "zone": "extranet",
                "quotas": {"vcpus": servers, "ram_gb": 2 * servers, "storage_gb": storage_gb, "instances": servers},
                "networks": [{"id": "app", "cidr": cidr(i)}],
                "workloads": [
                    {
                        "id": f"{prefix}-w{i:02d}",
                        "name": f"基准测试系统 {i:02d}",
                        "mlps_level": 2,
                        "servers": [
                            {
                                "name": "app",
                                "count": servers,
                                "flavor": f"{prefix}-tiny",
                                "image": f"{prefix}-disk",
                                "networks": ["app"],
                                "anti_affinity": True,
                            }
                        ],
                    }
                ],
            }
            for i in range(1, tenancies + 1)
        ],
    }
    (inv / "bench.yaml").write_text(yaml.safe_dump(doc, allow_unicode=True, sort_keys=False))
    return inv


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("out", type=Path)
    parser.add_argument("--cities", type=int, default=14)
    parser.add_argument("--counties", type=int, default=100)
    parser.add_argument("--servers", type=int, default=10_000)
    parser.add_argument("--per-group", type=int, default=5)
    args = parser.parse_args()
    generate(args.out, cities=args.cities, counties=args.counties, servers=args.servers, per_group=args.per_group)
    print(args.out)


if __name__ == "__main__":
    main()
