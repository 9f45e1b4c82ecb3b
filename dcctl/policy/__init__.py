"""Policy: the provincial plan, MLPS 2.0, GB/T 20988 and the Cybersecurity Law as named, documented rules."""

from __future__ import annotations

from dcctl.diagnostics import Diagnostics
from dcctl.inventory import Inventory
from dcctl.policy.rule import RULES, Finding, Rule
from dcctl.policy.rules import audit, capacity, dr, hosting, mlps, networks  # noqa: F401  (registers the rules)
from dcctl.standards import load_standards


def check_policy(inv: Inventory) -> Diagnostics:
    """Run every rule over a loaded inventory."""
    standards = load_standards()
    diags = Diagnostics()
    for r in RULES.values():
        diags.extend(r.run(inv, standards))
    return diags


__all__ = ["RULES", "Finding", "Rule", "check_policy"]
