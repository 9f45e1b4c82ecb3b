"""What a policy rule is: an id, a severity, a rationale citing its source, and a check that yields findings."""

from __future__ import annotations

import inspect
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from dcctl.diagnostics import Diagnostic, Severity, SourceRange
from dcctl.inventory import Inventory
from dcctl.standards import Standards


@dataclass(frozen=True)
class Finding:
    """One violation found by a rule; the rule supplies id and severity."""

    message: str
    source: SourceRange | None
    hint: str = ""
    address: str = ""


Check = Callable[[Inventory, Standards], Iterator[Finding]]


@dataclass(frozen=True)
class Rule:
    id: str
    severity: Severity
    title: str
    cites: str
    rationale: str
    check: Check

    def run(self, inv: Inventory, standards: Standards) -> Iterator[Diagnostic]:
        for f in self.check(inv, standards):
            yield Diagnostic(self.severity, self.id, f.message, f.hint, f.source, f.address)


RULES: dict[str, Rule] = {}


def rule(rule_id: str, severity: Severity, title: str, cites: str) -> Callable[[Check], Check]:
    """Register a check as a rule; its docstring is the rationale shown by ``dcctl policy explain``."""

    def register(check: Check) -> Check:
        if rule_id in RULES:
            raise ValueError(f"rule id {rule_id} registered twice")
        rationale = inspect.cleandoc(check.__doc__ or "")
        RULES[rule_id] = Rule(rule_id, severity, title, cites, rationale, check)
        return check

    return register
