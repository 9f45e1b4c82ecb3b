"""Generate a province-scale inventory (N cities, M county tenancies, S servers) for benchmarks.

Usage: python bench/gen_inventory.py OUT_DIR [--cities 14] [--counties 100] [--servers 10000] [--per-group 5]
"""

from __future__ import annotations

import argparse
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
