"""The DR catalog: replicated points, drills and where each workload runs, read and written in the state store.

A *point* of a workload is the set of disk replicas taken at one moment (rows of ``dr_points`` sharing a
``point_set``); it is *good* only when every one of its disks was verified at the DR site. Measured RPO is the age of
the newest good point; measured RTO comes from drills and failovers (``dr_drills``). Nothing here is claimed: every
figure is what dcctl measured and recorded.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from dcctl.state.store import Store, now


def _parse(ts: str | None) -> datetime | None:
    return datetime.fromisoformat(ts) if ts else None


@dataclass(frozen=True)
class DiskPoint:
    id: int
    point_set: str
    workload: str
    server: str
    disk: str
    kind: str
    parent_id: int | None
    checkpoint: str
    source_backend: str
    target_backend: str
    target_path: str
    taken_at: datetime
    verified_at: datetime | None
    status: str
    size_bytes: int
    changed_bytes: int
    shipped_bytes: int
    checksum: str


@dataclass(frozen=True)
class Point:
    """A workload's consistent point: all its disks at one moment."""

    point_set: str
    workload: str
    taken_at: datetime
    disks: tuple[DiskPoint, ...]

    @property
    def good(self) -> bool:
        return bool(self.disks) and all(d.status == "good" for d in self.disks)

    @property
    def shipped_bytes(self) -> int:
        return sum(d.shipped_bytes for d in self.disks)

    @property
    def changed_bytes(self) -> int:
        return sum(d.changed_bytes for d in self.disks)

    @property
    def size_bytes(self) -> int:
        return sum(d.size_bytes for d in self.disks)

    @property
    def kind(self) -> str:
        return "full" if any(d.kind == "full" for d in self.disks) else "incremental"


@dataclass(frozen=True)
class Drill:
    id: int
    workload: str
    kind: str  # drill | failover | failback
    point_set: str
    started_at: datetime
    finished_at: datetime | None
    rto_seconds: float | None
    ok: bool
    detail: dict[str, Any] = field(default_factory=dict)


_POINT_COLUMNS = (
    "id, point_set, workload, server, disk, kind, parent_id, checkpoint, source_backend, target_backend, "
    "target_path, taken_at, verified_at, status, size_bytes, changed_bytes, shipped_bytes, checksum"
)


def _disk(row: tuple[Any, ...]) -> DiskPoint:
    values = list(row)
    values[11] = _parse(values[11])
    values[12] = _parse(values[12])
    return DiskPoint(*values)


def disk_points(store: Store, workload: str | None = None, *, status: str | None = None) -> list[DiskPoint]:
    query = f"SELECT {_POINT_COLUMNS} FROM dr_points"
    clauses, args = [], []
    if workload is not None:
        clauses.append("workload = ?")
        args.append(workload)
    if status is not None:
        clauses.append("status = ?")
        args.append(status)
    if clauses:
        query += " WHERE " + " AND ".join(clauses)
    query += " ORDER BY taken_at, id"
    return [_disk(r) for r in store.db.execute(query, args)]


def points(store: Store, workload: str | None = None) -> list[Point]:
    """Every point (oldest first), each with all of its disks."""
    grouped: dict[str, list[DiskPoint]] = {}
    for d in disk_points(store, workload):
        grouped.setdefault(d.point_set, []).append(d)
    out = [Point(ps, ds[0].workload, min(d.taken_at for d in ds), tuple(ds)) for ps, ds in grouped.items()]
    return sorted(out, key=lambda p: p.taken_at)


def last_good_point(store: Store, workload: str) -> Point | None:
    good = [p for p in points(store, workload) if p.good]
    return good[-1] if good else None


def measured_rpo(store: Store, workload: str, at: datetime | None = None) -> timedelta | None:
    """now − the newest good point (None: never replicated)."""
    point = last_good_point(store, workload)
    if point is None:
        return None
    return (at or datetime.now(UTC)) - point.taken_at


def drills(store: Store, workload: str | None = None, kind: str | None = None) -> list[Drill]:
    query = "SELECT id, workload, kind, point_set, started_at, finished_at, rto_seconds, ok, detail FROM dr_drills"
    clauses, args = [], []
    if workload is not None:
        clauses.append("workload = ?")
        args.append(workload)
    if kind is not None:
        clauses.append("kind = ?")
        args.append(kind)
    if clauses:
        query += " WHERE " + " AND ".join(clauses)
    query += " ORDER BY started_at, id"
    return [
        Drill(r[0], r[1], r[2], r[3], _parse(r[4]), _parse(r[5]), r[6], bool(r[7]), json.loads(r[8] or "{}"))  # type: ignore[arg-type]
        for r in store.db.execute(query, args)
    ]


def best_rto(store: Store, workload: str) -> timedelta | None:
    """The RTO to report: the slowest successful drill or failover (conservative), None if never measured."""
    measured = [d.rto_seconds for d in drills(store, workload) if d.ok and d.rto_seconds is not None]
    return timedelta(seconds=max(measured)) if measured else None


def active_site(store: Store, workload: str) -> str:
    row = store.db.execute("SELECT active_site FROM dr_placement WHERE workload = ?", (workload,)).fetchone()
    return str(row[0]) if row else "production"


# ---------------------------------------------------------------------------------------------------- writes
def add_disk_point(store: Store, **values: Any) -> int:
    """Record a disk point (status 'pending' until verified)."""
    columns = ", ".join(values)
    marks = ", ".join("?" for _ in values)
    with store.transaction() as db:
        return db.insert(f"INSERT INTO dr_points({columns}) VALUES ({marks})", tuple(values.values()))


def mark_point(store: Store, point_id: int, status: str, **values: Any) -> None:
    sets = ", ".join(f"{k} = ?" for k in ["status", *values])
    with store.transaction() as db:
        db.execute(f"UPDATE dr_points SET {sets} WHERE id = ?", (status, *values.values(), point_id))


def record_drill(
    store: Store,
    workload: str,
    kind: str,
    point_set: str,
    started_at: str,
    rto_seconds: float | None,
    ok: bool,
    detail: dict[str, Any],
) -> int:
    with store.transaction() as db:
        return db.insert(
            "INSERT INTO dr_drills(workload, kind, point_set, started_at, finished_at, rto_seconds, ok, detail) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            (workload, kind, point_set, started_at, now(), rto_seconds, int(ok), json.dumps(detail, sort_keys=True)),
        )


def set_active_site(store: Store, workload: str, site: str, reason: str) -> None:
    with store.transaction() as db:
        db.execute(
            "INSERT INTO dr_placement(workload, active_site, since, reason) VALUES (?, ?, ?, ?) "
            "ON CONFLICT(workload) DO UPDATE SET active_site = excluded.active_site, since = excluded.since, "
            "reason = excluded.reason",
            (workload, site, now(), reason),
        )
