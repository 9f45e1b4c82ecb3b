"""dcctl's public Python API: the one entry point for the CLI, the Ansible modules and other tools."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from dcctl.diagnostics import Diagnostics
from dcctl.inventory import Inventory, load_inventory

if TYPE_CHECKING:
    from dcctl.engine.apply import ApplyResult
    from dcctl.engine.events import EventHandler
    from dcctl.plan.model import Plan


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


def plan(
    path: str | Path,
    *,
    targets: tuple[str, ...] = (),
    state: str | Path | None = None,
    destroy: bool = False,
) -> Plan:
    """Compute a plan (observes every backend in scope; changes nothing). Raises InventoryError if invalid."""
    from dcctl.engine.session import Session
    from dcctl.plan.model import Mode

    with Session(path, targets=targets, state_path=state) as session:
        return session.plan(Mode.DESTROY if destroy else Mode.NORMAL)


def apply(
    path: str | Path,
    *,
    targets: tuple[str, ...] = (),
    state: str | Path | None = None,
    destroy: bool = False,
    events: EventHandler | None = None,
    timeout: float = 900.0,
) -> tuple[Plan, ApplyResult | None]:
    """Plan, then apply if there is anything to do: (plan, result), result None when nothing changed."""
    from dcctl.engine.events import ignore
    from dcctl.engine.session import Session
    from dcctl.errors import DcctlError
    from dcctl.plan.model import Mode

    with Session(path, targets=targets, state_path=state, events=events or ignore) as session:
        computed = session.plan(Mode.DESTROY if destroy else Mode.NORMAL)
        if not computed.applyable:
            raise DcctlError("the plan has errors and cannot be applied", hint="see the plan's diagnostics")
        if not computed.has_changes:
            return computed, None
        return computed, session.apply(computed, command="destroy" if destroy else "apply", timeout=timeout)
