"""The plan's types: closed enums for action and reason, a Change per resource, and the Plan that carries its context.

``reason`` explains a change to people; apply decides from ``action`` alone (Terraform's split).
"""

from __future__ import annotations

import enum
from collections import Counter
from dataclasses import asdict, dataclass, field
from typing import Any

from dcctl.diagnostics import Diagnostic, Diagnostics, Severity, SourceRange

FORMAT_VERSION = 1


class Action(enum.StrEnum):
    NOOP = "noop"
    CREATE = "create"
    UPDATE = "update"
    REPLACE = "replace"
    DELETE = "delete"


class Reason(enum.StrEnum):
    NEW_IN_INVENTORY = "new_in_inventory"
    MISSING_ON_BACKEND = "missing_on_backend"  # dcctl made it before; someone removed it (drift)
    REMOVED_FROM_INVENTORY = "removed_from_inventory"
    FIELDS_DIFFER = "fields_differ"
    FIELD_FORCES_REPLACE = "field_forces_replace"
    DESTROY_REQUESTED = "destroy_requested"
    IN_SYNC = "in_sync"


class Mode(enum.StrEnum):
    NORMAL = "normal"
    DESTROY = "destroy"


@dataclass(frozen=True)
class Change:
    key: str
    kind: str
    backend: str
    name: str
    action: Action
    reason: Reason
    changed_fields: tuple[str, ...] = ()
    replace_fields: tuple[str, ...] = ()
    before: dict[str, Any] | None = None
    after: dict[str, Any] | None = None
    depends_on: tuple[str, ...] = ()
    source: SourceRange | None = None
    spec: dict[str, Any] | None = None  # the desired spec (create/update/replace), as the provider will apply it

    @property
    def id(self) -> str:
        """Unique within a plan: the same key may exist on several backends (a network on two hosts)."""
        return f"{self.backend}:{self.key}"

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["action"] = self.action.value
        d["reason"] = self.reason.value
        d["source"] = str(self.source) if self.source else None
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Change:
        src = d.get("source")
        source = None
        if src:
            path, _, rest = src.partition(":")
            line, _, col = rest.partition(":")
            source = SourceRange(path, int(line or 0), int(col or 0))
        return cls(
            key=d["key"],
            kind=d["kind"],
            backend=d["backend"],
            name=d["name"],
            action=Action(d["action"]),
            reason=Reason(d["reason"]),
            changed_fields=tuple(d.get("changed_fields") or ()),
            replace_fields=tuple(d.get("replace_fields") or ()),
            before=d.get("before"),
            after=d.get("after"),
            depends_on=tuple(d.get("depends_on") or ()),
            source=source,
            spec=d.get("spec"),
        )


@dataclass
class Plan:
    """A computed plan and what it was computed from (so a saved plan can refuse to apply to a changed world)."""

    inventory: str
    inventory_digest: str
    mode: Mode
    created_at: str
    dcctl_version: str
    observed: dict[str, str] = field(default_factory=dict)  # backend → observation fingerprint
    changes: list[Change] = field(default_factory=list)  # in dependency order
    diagnostics: Diagnostics = field(default_factory=Diagnostics)
    targets: tuple[str, ...] = ()

    @property
    def applyable(self) -> bool:
        return not self.diagnostics.has_errors()

    @property
    def pending(self) -> list[Change]:
        return [c for c in self.changes if c.action is not Action.NOOP]

    @property
    def has_changes(self) -> bool:
        return bool(self.pending)

    def counts(self) -> dict[str, int]:
        counted = Counter(c.action.value for c in self.changes)
        return {a.value: counted.get(a.value, 0) for a in Action}

    def to_dict(self) -> dict[str, Any]:
        return {
            "format_version": FORMAT_VERSION,
            "inventory": self.inventory,
            "inventory_digest": self.inventory_digest,
            "mode": self.mode.value,
            "created_at": self.created_at,
            "dcctl_version": self.dcctl_version,
            "targets": list(self.targets),
            "observed": self.observed,
            "applyable": self.applyable,
            "counts": self.counts(),
            "changes": [c.to_dict() for c in self.changes],
            "diagnostics": [d.to_dict() for d in self.diagnostics.sorted()],
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Plan:
        diags = Diagnostics()
        for x in d.get("diagnostics", []):
            src = SourceRange(x["file"], x["line"] or 0, x["column"] or 0) if x.get("file") else None
            diags.items.append(
                Diagnostic(
                    Severity(x["severity"]), x["code"], x["message"], x.get("hint", ""), src, x.get("address") or ""
                )
            )
        return cls(
            inventory=d["inventory"],
            inventory_digest=d["inventory_digest"],
            mode=Mode(d["mode"]),
            created_at=d["created_at"],
            dcctl_version=d["dcctl_version"],
            observed=dict(d.get("observed", {})),
            changes=[Change.from_dict(c) for c in d.get("changes", [])],
            diagnostics=diags,
            targets=tuple(d.get("targets", ())),
        )
