"""Moving a state to another backend (``dcctl state migrate``): every row of every table, ids and audit hashes as
they are, so the audit chain verifies at the new place exactly as at the old one.

The source is read inside one of its writer's transactions (SQLite: no other writer meanwhile, one consistent
snapshot) and must hold no lock: a run in flight would keep writing to the old place. The target must be empty (its
schema at this dcctl's version); it is written in one transaction that holds its ``schema``, ``audit`` and ``locks``
locks, and that transaction commits only if every table's row count and the audit chain's verification (count, head
hash) match the source's. Then the source is marked as moved (``meta.migrated_to``: applies against it are refused,
naming the new place) and the move itself is the first thing the target's audit trail records after the copy.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

from dcctl.errors import DcctlError
from dcctl.state import audit
from dcctl.state.store import IDENTITY_TABLES, MIGRATED_TO_KEY, TABLES, StateError, Store

#: meta keys that belong to one database and are never copied
_LOCAL_META = ("schema_version", MIGRATED_TO_KEY)
_ORDER = {"meta": "key", "resources": "backend, key", "dr_placement": "workload", "locks": "backend"}


@dataclass(frozen=True)
class Transfer:
    source: str
    target: str
    rows: dict[str, int]
    audit: audit.VerifyResult
    audit_entry: int  # the target's audit entry recording the move
    seconds: float = 0.0
    warnings: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {
            "source": self.source,
            "target": self.target,
            "rows": dict(self.rows),
            "audit": self.audit.to_dict(),
            "audit_entry": self.audit_entry,
            "seconds": round(self.seconds, 3),
            "warnings": list(self.warnings),
        }


def migrate_state(source: Store, target: Store) -> Transfer:
    """Copy ``source`` into the empty ``target``; returns what was moved. Raises ``DcctlError`` (and leaves the
    target as it was) if the source holds a lock, the target holds anything, or the copy does not match."""
    started = time.monotonic()
    if (source.dialect, source.location) == (target.dialect, target.location):
        raise DcctlError(f"the source and the target are the same state ({source.display})")
    warnings: list[str] = []
    with source.transaction():
        moved = source.meta(MIGRATED_TO_KEY)
        if moved:
            raise DcctlError(
                f"the state at {source.display} was already moved to {moved}",
                hint="dcctl state info shows it; work on the new place (--state or DCCTL_STATE)",
            )
        held = source.locks()
        if held:
            backend, holder = sorted(held.items())[0]
            raise DcctlError(
                f"refusing to migrate while locks are held: backend '{backend}' is locked by {holder.describe()}"
                + (f" and {len(held) - 1} more" if len(held) > 1 else ""),
                hint="let that run finish (or 'dcctl lock break' a dead one), then migrate",
            )
        before = audit.verify(source)
        if not before.ok:
            warnings.append(
                f"the source's audit chain does not verify (entry {before.first_bad_id}: {before.reason}); it is "
                "moved as it is, evidence included"
            )
        rows = {t: n for t, n in source.counts().items() if t != "locks"}
        with (
            target.transaction(serialize="schema") as dst,
            target.transaction(serialize="audit"),
            target.transaction(serialize="locks"),
        ):
            present = {t: n for t, n in target.counts().items() if n}
            extra_meta = dst.execute("SELECT COUNT(*) FROM meta WHERE key NOT IN (?, ?)", _LOCAL_META).scalar()
            if present or extra_meta:
                what = ", ".join(f"{n} {t}" for t, n in sorted(present.items())) or "meta data"
                raise DcctlError(
                    f"the target {target.display} already holds a state ({what}): refusing to merge into it",
                    hint="migrate into an empty database (or schema); nothing was written",
                )
            for table, columns in TABLES.items():
                if table == "locks":
                    continue
                cols = ", ".join(f'"{c}"' for c in columns)
                where = f" WHERE key NOT IN ('{_LOCAL_META[0]}', '{_LOCAL_META[1]}')" if table == "meta" else ""
                data = source.db.execute(
                    f"SELECT {cols} FROM {table}{where} ORDER BY {_ORDER.get(table, 'id')}"
                ).fetchall()
                dst.executemany(f"INSERT INTO {table}({cols}) VALUES ({', '.join('?' for _ in columns)})", data)
                if table in IDENTITY_TABLES:
                    dst.reset_identity(table)
            copied = {t: n for t, n in target.counts().items() if t != "locks"}
            after = audit.verify(target)
            if copied != rows or (after.ok, after.count, after.head_hash) != (
                before.ok,
                before.count,
                before.head_hash,
            ):
                raise StateError(
                    f"the copy does not match the source (rows {copied} vs {rows}; audit {after.to_dict()} vs "
                    f"{before.to_dict()}): nothing was written",
                    hint="this is a bug in dcctl; keep both databases and report it",
                )
        source.set_meta(MIGRATED_TO_KEY, target.display)
    entry = audit.record(
        target,
        audit.AuditEvent(
            "state.migrate",
            target.display,
            "succeeded",
            detail={"from": source.display, "rows": rows, "audit_head": before.head_hash},
        ),
    )
    return Transfer(source.display, target.display, rows, before, entry, time.monotonic() - started, warnings)


__all__ = ["Transfer", "migrate_state"]
