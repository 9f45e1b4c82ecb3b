"""Where a DR point waits on its source host until it has shipped: memory when it fits, else disk, or as told."""

from __future__ import annotations

from dcctl.dr.replicate import MEMORY_STAGING, QCOW2_SLACK, staging_path, staging_place
from dcctl.inventory.model import LibvirtBackend

GiB = 2**30
BACKEND = LibvirtBackend.model_validate(
    {
        "id": "sy-kvm",
        "type": "libvirt",
        "uri": "qemu+ssh://root@192.0.2.10/system",
        "dr_path": "/srv/dcctl/dr/",
        "zones": ["extranet"],
        "level": 3,
        "capacity": {"vcpus": 8, "ram_gb": 32, "storage_gb": 500},
    }
)


def test_auto_stages_in_memory_only_what_fits_with_the_qcow2_slack() -> None:
    assert staging_place("auto", 1 * GiB, 2, 1 * GiB + 2 * QCOW2_SLACK) == "memory"
    assert staging_place("auto", 1 * GiB, 2, 1 * GiB + 2 * QCOW2_SLACK - 1) == "disk"
    assert staging_place("auto", 0, 1, 0) == "disk"  # a host without memory to spare (or without /dev/shm)


def test_a_fixed_place_is_kept_whatever_the_size() -> None:
    assert staging_place("disk", 1, 1, 64 * GiB) == "disk"
    assert staging_place("memory", 64 * GiB, 1, 1) == "memory"


def test_the_backend_stages_on_its_own_dr_path_or_in_dev_shm() -> None:
    assert BACKEND.dr_staging == "auto"
    assert staging_path(BACKEND, "dcctl-a-web-1", "vda", "p1") == "/srv/dcctl/dr/staging/dcctl-a-web-1/vda-p1.qcow2"
    assert staging_path(BACKEND, "dcctl-a-web-1", "vda", "p1", "memory") == (
        f"{MEMORY_STAGING}/dcctl-a-web-1/vda-p1.qcow2"
    )
