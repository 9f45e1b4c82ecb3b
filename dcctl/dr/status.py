"""DR status per protected workload: measured RPO against its target, the chain, bytes shipped, where it runs, and
the GB/T 20988 level it achieves — from the catalog, never from claims. Rendered as data, text or Prometheus."""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from dcctl.dr import catalog
from dcctl.inventory import Inventory
from dcctl.inventory.model import format_duration
from dcctl.standards import load_standards
from dcctl.state.store import Store


@dataclass(frozen=True)
class WorkloadDr:
    workload: str
    tenancy: str
    mlps_level: int
    rpo_target: timedelta
    rto_target: timedelta
    last_good: datetime | None
    rpo_measured: timedelta | None
    chain_length: int
    points_good: int
    shipped_bytes: int
    changed_bytes: int
    rto_measured: timedelta | None
    drills_ok: int
    active_site: str
    edition: str
    table_edition: str
    level_achieved: int

    @property
    def breached(self) -> bool:
        return self.rpo_measured is None or self.rpo_measured > self.rpo_target

    def to_dict(self) -> dict[str, Any]:
        return {
            "workload": self.workload,
            "tenancy": self.tenancy,
            "mlps_level": self.mlps_level,
            "rpo_target_seconds": self.rpo_target.total_seconds(),
            "rpo_measured_seconds": self.rpo_measured.total_seconds() if self.rpo_measured is not None else None,
            "rpo_breached": self.breached,
            "rto_target_seconds": self.rto_target.total_seconds(),
            "rto_measured_seconds": self.rto_measured.total_seconds() if self.rto_measured is not None else None,
            "last_good_point": self.last_good.isoformat() if self.last_good else None,
            "chain_length": self.chain_length,
            "points_good": self.points_good,
            "shipped_bytes": self.shipped_bytes,
            "changed_bytes": self.changed_bytes,
            "drills_ok": self.drills_ok,
            "active_site": self.active_site,
            "gbt20988": {
                "edition": self.edition,
                "levels_from": self.table_edition,
                "level_achieved": self.level_achieved,
            },
        }


def dr_status(inv: Inventory, store: Store, at: datetime | None = None) -> list[WorkloadDr]:
    at = at or datetime.now(UTC)
    standards = load_standards()
    edition = inv.province.standards.dr if inv.province else "GB/T 20988-2025"
    table_edition, _ = standards.dr_levels(edition)
    out = []
    for wid in sorted(inv.workloads):
        tenancy, workload = inv.workloads[wid]
        if workload.dr is None:
            continue
        pts = catalog.points(store, wid)
        good = [p for p in pts if p.good]
        last = good[-1] if good else None
        rpo = (at - last.taken_at) if last else None
        rto = catalog.best_rto(store, wid)
        chain = 0
        for p in reversed(good):
            chain += 1
            if p.kind == "full":
                break
        ok_drills = sum(1 for d in catalog.drills(store, wid) if d.ok)
        # rto is measured only by drills and failovers: levels with an RTO bound (4-6) need one
        level = standards.dr_level_achieved(edition, rpo, rto)
        out.append(
            WorkloadDr(
                workload=wid,
                tenancy=tenancy.id,
                mlps_level=workload.mlps_level,
                rpo_target=workload.dr.rpo,
                rto_target=workload.dr.rto,
                last_good=last.taken_at if last else None,
                rpo_measured=rpo,
                chain_length=chain,
                points_good=len(good),
                shipped_bytes=sum(p.shipped_bytes for p in pts),
                changed_bytes=sum(p.changed_bytes for p in pts),
                rto_measured=rto,
                drills_ok=ok_drills,
                active_site=catalog.active_site(store, wid),
                edition=edition,
                table_edition=table_edition,
                level_achieved=level,
            )
        )
    return out


def human(rows: list[WorkloadDr]) -> list[str]:
    lines = []
    for r in rows:
        rpo = format_duration(r.rpo_measured) if r.rpo_measured is not None else "never replicated"
        rto = format_duration(r.rto_measured) if r.rto_measured is not None else "not measured"
        flag = "BREACHED" if r.breached else "ok"
        lines.append(
            f"{r.workload:<24} RPO {rpo:>8} / target {format_duration(r.rpo_target):<5} {flag:<8} "
            f"RTO {rto:>12} / {format_duration(r.rto_target):<5} chain {r.chain_length:>2}  "
            f"shipped {r.shipped_bytes / 2**20:8.1f} MiB  runs at {r.active_site:<10} "
            f"{r.edition} level {r.level_achieved}"
        )
    return lines


def prometheus(rows: list[WorkloadDr], at: datetime | None = None) -> str:
    """The Prometheus text format, for node_exporter's textfile collector."""
    at = at or datetime.now(UTC)
    metrics: list[tuple[str, str, str, list[tuple[dict[str, str], float]]]] = [
        ("dcctl_dr_rpo_seconds", "gauge", "Measured RPO: now minus the newest good point (NaN: never).", []),
        ("dcctl_dr_rpo_target_seconds", "gauge", "RPO target from the inventory.", []),
        ("dcctl_dr_rpo_breached", "gauge", "1 when the measured RPO exceeds the target (or nothing replicated).", []),
        ("dcctl_dr_last_good_point_timestamp_seconds", "gauge", "Unix time of the newest good point.", []),
        ("dcctl_dr_chain_length", "gauge", "Points in the current replica chain.", []),
        ("dcctl_dr_shipped_bytes_total", "counter", "Bytes shipped to the DR site.", []),
        ("dcctl_dr_rto_seconds", "gauge", "Slowest successful drill or failover (NaN: not measured).", []),
        ("dcctl_dr_gbt20988_level", "gauge", "GB/T 20988 level achieved from measured RPO and RTO.", []),
        ("dcctl_dr_active_site", "gauge", "1 for the site the workload runs at now.", []),
    ]
    nan = float("nan")
    for r in rows:
        labels = {"workload": r.workload, "tenancy": r.tenancy}
        values = [
            r.rpo_measured.total_seconds() if r.rpo_measured is not None else nan,
            r.rpo_target.total_seconds(),
            1.0 if r.breached else 0.0,
            r.last_good.timestamp() if r.last_good else nan,
            float(r.chain_length),
            float(r.shipped_bytes),
            r.rto_measured.total_seconds() if r.rto_measured is not None else nan,
            float(r.level_achieved),
        ]
        for (_, _, _, samples), value in zip(metrics, values, strict=False):
            samples.append((labels, value))
        metrics[-1][3].append(({**labels, "site": r.active_site}, 1.0))
    out = []
    for name, kind, help_text, samples in metrics:
        out.append(f"# HELP {name} {help_text}")
        out.append(f"# TYPE {name} {kind}")
        for labels, value in samples:
            rendered = ",".join(f'{k}="{v}"' for k, v in labels.items())
            out.append(f"{name}{{{rendered}}} {_number(value)}")
    out.append(f"# generated by dcctl at {at.isoformat(timespec='seconds')}")
    return "\n".join(out) + "\n"


def _number(value: float) -> str:
    if math.isnan(value):
        return "NaN"
    return str(int(value)) if value == int(value) else f"{value:.3f}"
