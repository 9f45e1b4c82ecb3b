"""dcctl's public Python API: the one entry point for the CLI, the Ansible modules and other tools."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from dcctl.diagnostics import Diagnostics
from dcctl.inventory import Inventory, load_inventory


@dataclass(frozen=True)
class Validation:
    """A loaded inventory and every problem with it (schema, references, policy)."""

    inventory: Inventory
    diagnostics: Diagnostics

    @property
    def valid(self) -> bool:
        return not self.diagnostics.has_errors()

    def summary(self) -> dict[str, Any]:
        inv = self.inventory
        tiers = Counter(dc.tier.value for dc in inv.data_centers.values())
        return {
            "inventory": inv.root,
            "files": len(inv.files),
            "digest": inv.digest,
            "province": inv.province.id if inv.province else None,
            "data_centers": dict(sorted(tiers.items())),
            "legacy_data_centers": sum(1 for dc in inv.data_centers.values() if dc.legacy),
            "backends": len(inv.backends),
            "tenancies": len(inv.tenancies),
            "workloads": len(inv.workloads),
            "servers": inv.server_count(),
        }


def validate(path: str | Path) -> Validation:
    """Load an inventory and check it against the schema, its references and every policy rule."""
    from dcctl.policy import check_policy

    inventory, diagnostics = load_inventory(path)
    diagnostics.extend(check_policy(inventory))
    return Validation(inventory, diagnostics)
