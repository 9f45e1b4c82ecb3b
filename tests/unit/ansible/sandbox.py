"""Shared by the Ansible tests (unit and integration): a small inventory, and Ansible run in a sandbox."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tests.conftest import CASES, ROOT

NODE = CASES / "engine" / "node.xml"
COLLECTIONS = ROOT / "collections"
BIN = Path(sys.executable).parent


def write_inventory(root: Path, uri: str = f"test://{NODE}", *, dr_uri: str = "test:///default") -> Path:
    """A province with one city data center (one libvirt backend at ``uri``) hosting one county tenancy with one
    server, and a DR site (its own backend at ``dr_uri``)."""
    inv = root / "inv"
    inv.mkdir(parents=True, exist_ok=True)
    backend = {
        "type": "libvirt",
        "zones": ["extranet"],
        "level": 3,
        "capacity": {"vcpus": 4, "ram_gb": 4, "storage_gb": 50},
    }
    doc = {
        "province": {
            "id": "ansprov",
            "name": "测试省",
            "dr_site": "prov-dr",
            "cities": [{"id": "shenyang", "name": "沈阳市"}],
        },
        "catalog": {
            "flavors": [{"id": "tiny", "vcpus": 1, "ram_mb": 192, "disk_gb": 1}],
            "images": [
                {
                    "id": "lab-guest",
                    "kernel": "/var/lib/dcctl-lab/guest/vmlinuz",
                    "initrd": "/var/lib/dcctl-lab/guest/initrd.img",
                    "cmdline": "console=ttyS0 panic=-1 quiet",
                }
            ],
        },
        "data_centers": [
            {
                "id": "prov-dr",
                "name": "省灾备中心",
                "tier": "provincial",
                "role": "dr",
                "backends": [{**backend, "id": "dr-kvm", "uri": dr_uri, "level": 4}],
            },
            {
                "id": "shenyang-dc",
                "name": "沈阳市政务云数据中心",
                "tier": "municipal",
                "city": "shenyang",
                "backends": [
                    {
                        **backend,
                        "id": "sy-kvm",
                        "uri": uri,
                        "virt_type": "qemu",
                        "storage_path": "/srv/dcctl/images",
                        "console_path": "/srv/dcctl/console",
                    }
                ],
            },
        ],
        "tenancies": [
            {
                "id": "kangping-ext",
                "name": "康平县人民政府（外网）",
                "kind": "county",
                "city": "shenyang",
                "hosted_in": "shenyang-dc",
                "zone": "extranet",
                "quotas": {"vcpus": 1, "ram_gb": 1, "storage_gb": 2, "instances": 1},
                "networks": [{"id": "app", "cidr": "198.18.53.0/24"}],
                "workloads": [
                    {
                        "id": "kangping-portal",
                        "name": "康平县政府门户网站",
                        "mlps_level": 2,
                        "servers": [{"name": "web", "flavor": "tiny", "image": "lab-guest", "networks": ["app"]}],
                    }
                ],
            }
        ],
    }
    (inv / "province.yaml").write_text(yaml.safe_dump(doc, allow_unicode=True, sort_keys=False), encoding="utf-8")
    return inv


def ansible_env(tmp: Path) -> dict[str, str]:
    """Ansible's home, local and (on localhost) remote temporary files inside ``tmp``: nothing in ~/.ansible."""
    for d in ("home", "local", "remote"):
        (tmp / "ansible" / d).mkdir(parents=True, exist_ok=True)
    return {
        **os.environ,
        "ANSIBLE_CONFIG": str(ROOT / "ansible.cfg"),
        "ANSIBLE_HOME": str(tmp / "ansible" / "home"),
        "ANSIBLE_SSH_CONTROL_PATH_DIR": str(tmp / "ansible" / "home" / "cp"),  # default: ~/.ansible/cp
        "ANSIBLE_LOCAL_TEMP": str(tmp / "ansible" / "local"),
        "ANSIBLE_REMOTE_TEMP": str(tmp / "ansible" / "remote"),
        "ANSIBLE_NOCOLOR": "1",
        "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', os.defpath)}",
    }


def ansible(tool: str, *args: str, tmp: Path, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    """Run an Ansible command line (ansible-playbook, ansible, ansible-doc) from the repository root."""
    return subprocess.run(
        [str(BIN / tool), *args],
        cwd=ROOT,
        env=ansible_env(tmp),
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


#: Ansible is an optional extra: its tests skip, saying how to install it, when it is missing
requires_ansible = pytest.mark.skipif(
    not (BIN / "ansible-playbook").exists(),
    reason="Ansible is not installed: scripts/bootstrap installs it (pip install -e '.[ansible]')",
)
