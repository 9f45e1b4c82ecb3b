"""Consolidation progress per legacy data center, for reports: what still runs there (read from the inventory) and
what has moved out (the audit trail's ``consolidate.move`` entries — hash-chained, so the record of progress is itself
evidence). Needs no backend: a report without observation still shows it."""

from __future__ import annotations

import json
import statistics
from dataclasses import dataclass, replace
from typing import Any

from dcctl.consolidate.plan import Assumptions
from dcctl.inventory import Inventory
from dcctl.state.store import Store

#: the audit action of one workload's move (succeeded, or failed and rolled back)
ACTION = "consolidate.move"


@dataclass(frozen=True)
class MovedWorkload:
    workload: str
    tenancy: str
    method: str
    at: str
    downtime_seconds: float | None
    source_backends: tuple[str, ...]
    target_backends: tuple[str, ...]
    servers: int

    def to_dict(self) -> dict[str, Any]:
        d = dict(self.__dict__)
        d["source_backends"] = list(self.source_backends)
        d["target_backends"] = list(self.target_backends)
        return d


@dataclass(frozen=True)
class LegacyProgress:
    """One legacy data center's consolidation: moved (audit trail) against remaining (inventory)."""

    legacy_dc: str
    name: str
    target_dc: str | None
    tenancies_remaining: tuple[str, ...]
    workloads_remaining: tuple[str, ...]
    servers_remaining: int
    moved: tuple[MovedWorkload, ...]
    failed_attempts: int  # moves whose verification failed and that were rolled back
    last_move_at: str | None

    @property
    def workloads_total(self) -> int:
        return len(self.moved) + len(self.workloads_remaining)

    @property
    def percent(self) -> float:
        """Share of workloads moved (100 when nothing is left)."""
        total = self.workloads_total
        return 100.0 if total == 0 else round(100.0 * len(self.moved) / total, 1)

    @property
    def done(self) -> bool:
        return not self.tenancies_remaining and not self.workloads_remaining

    def to_dict(self) -> dict[str, Any]:
        return {
            "legacy_dc": self.legacy_dc,
            "name": self.name,
            "target_dc": self.target_dc,
            "tenancies_remaining": list(self.tenancies_remaining),
            "workloads_remaining": list(self.workloads_remaining),
            "servers_remaining": self.servers_remaining,
            "workloads_moved": len(self.moved),
            "workloads_total": self.workloads_total,
            "percent": self.percent,
            "done": self.done,
            "moved": [m.to_dict() for m in self.moved],
            "failed_attempts": self.failed_attempts,
            "last_move_at": self.last_move_at,
        }


def _moves(store: Store) -> list[tuple[str, str, dict[str, Any]]]:
    """(outcome, at, detail) of every consolidate.move entry, oldest first."""
    rows = store.db.execute("SELECT outcome, at, detail FROM audit WHERE action = ? ORDER BY id", (ACTION,)).fetchall()
    out = []
    for outcome, at, detail in rows:
        try:
            parsed = json.loads(detail) if isinstance(detail, str) else {}
        except ValueError:
            parsed = {}
        out.append((str(outcome), str(at), parsed if isinstance(parsed, dict) else {}))
    return out


def progress(inv: Inventory, store: Store) -> list[LegacyProgress]:
    """Per legacy data center (by id): tenancies and workloads still there, workloads moved out, failed attempts."""
    history = _moves(store)
    out = []
    for dc in sorted((d for d in inv.data_centers.values() if d.legacy), key=lambda d: d.id):
        moved: dict[str, MovedWorkload] = {}
        failed = 0
        last = None
        for outcome, at, d in history:
            if d.get("legacy_dc") != dc.id:
                continue
            if outcome != "succeeded":
                failed += 1
                continue
            last = at
            wid = str(d.get("workload", ""))
            moved[wid] = MovedWorkload(
                workload=wid,
                tenancy=str(d.get("tenancy", "")),
                method=str(d.get("method", "")),
                at=at,
                downtime_seconds=d.get("downtime_seconds"),
                source_backends=tuple(d.get("source_backends", ())),
                target_backends=tuple(d.get("target_backends", ())),
                servers=len(d.get("servers", ())),
            )
        tenancies = sorted(inv.tenancies_in(dc.id), key=lambda t: t.id)
        remaining = [w for t in tenancies for w in t.workloads if w.id not in moved]
        out.append(
            LegacyProgress(
                legacy_dc=dc.id,
                name=dc.name,
                target_dc=dc.consolidate_into,
                tenancies_remaining=tuple(t.id for t in tenancies),
                workloads_remaining=tuple(w.id for w in remaining),
                servers_remaining=sum(g.count for w in remaining for g in w.servers),
                moved=tuple(sorted(moved.values(), key=lambda m: m.at)),
                failed_attempts=failed,
                last_move_at=last,
            )
        )
    return out


def measured_assumptions(store: Store, base: Assumptions | None = None) -> Assumptions:
    """The downtime model's figures from moves dcctl measured (medians of throughput and boot time), else ``base``."""
    base = base or Assumptions()
    rates = []
    boots = []
    for outcome, _, d in _moves(store):
        if outcome != "succeeded":
            continue
        if isinstance(d.get("copy_mib_s"), int | float) and d["copy_mib_s"] > 0:
            rates.append(float(d["copy_mib_s"]))
        if isinstance(d.get("boot_seconds"), int | float) and d["boot_seconds"] > 0:
            boots.append(float(d["boot_seconds"]))
    if not rates and not boots:
        return base
    return replace(
        base,
        bandwidth_mib_s=statistics.median(rates) if rates else base.bandwidth_mib_s,
        boot_seconds=statistics.median(boots) if boots else base.boot_seconds,
        basis=f"measured: {len(rates)} copies, {len(boots)} boots (medians)",
    )
