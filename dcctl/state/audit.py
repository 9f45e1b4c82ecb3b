"""The audit trail: every change dcctl makes, appended to the state store as a hash chain an auditor can verify.

Each entry's ``hash`` is the SHA-256 of the canonical JSON of all its fields (id, at, user, host, pid, action, target,
outcome, the three digests, detail, prev_hash), and ``prev_hash`` is the previous entry's hash, so editing, deleting
or reordering any entry breaks the chain from that entry on. Appends read the chain's head and insert after it in
one transaction that holds the store's ``audit`` lock (``Store.transaction(serialize="audit")``: SQLite's
``BEGIN IMMEDIATE``, PostgreSQL's transaction-level advisory lock), so concurrent writers — threads, processes, other
machines sharing a PostgreSQL state — stay linear: no fork, no gap. Pruning removes only a prefix older than the
retention and leaves an *anchor* (the last pruned entry's id and hash) in the ``meta`` table, and records the prune
itself in the chain, so what remains still verifies.

The SQL is portable (quoted ``"user"``, ``LIMIT``, ``ON CONFLICT``): both backends run the same statements.
"""

from __future__ import annotations

import getpass
import hashlib
import json
import os
import re
import socket
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, TextIO

from dcctl.errors import DcctlError
from dcctl.state.store import Db, Store

#: prev_hash of the very first entry of a chain
GENESIS = "0" * 64
#: meta key holding the anchor left by pruning
ANCHOR_KEY = "audit_anchor"
#: the entry's fields, in table order; every one of them is covered by the hash
FIELDS = (
    "id",
    "at",
    "user",
    "host",
    "pid",
    "action",
    "target",
    "outcome",
    "plan_digest",
    "before_digest",
    "after_digest",
    "detail",
    "prev_hash",
)
OUTCOMES = ("succeeded", "failed")
_COLUMNS = ", ".join(f'"{f}"' for f in FIELDS)
_SECRETISH = re.compile(r"pass(word|wd)?|secret|token|credential|private[_-]?key|api[_-]?key", re.I)


@dataclass(frozen=True)
class AuditEvent:
    """What happened; ``record`` adds who, where and when."""

    action: str  # apply.create|update|replace|delete, lock.break, lock.takeover, dr.replicate, dr.drill, …
    target: str  # "<backend>:<key>", a workload id, a host name
    outcome: str  # "succeeded" | "failed"
    plan_digest: str = ""
    before_digest: str = ""
    after_digest: str = ""
    detail: Mapping[str, Any] = field(default_factory=dict)  # never secrets (values under secret-like keys redacted)


@dataclass(frozen=True)
class AuditEntry:
    id: int
    at: str
    user: str
    host: str
    pid: int
    action: str
    target: str
    outcome: str
    plan_digest: str
    before_digest: str
    after_digest: str
    detail: dict[str, Any]
    prev_hash: str
    hash: str

    def to_dict(self) -> dict[str, Any]:
        return {f: getattr(self, f) for f in (*FIELDS, "hash")}


@dataclass(frozen=True)
class Anchor:
    """Where the chain starts after pruning: the last pruned entry."""

    id: int
    hash: str
    pruned_at: str
    pruned: int

    def to_dict(self) -> dict[str, Any]:
        return {"id": self.id, "hash": self.hash, "pruned_at": self.pruned_at, "pruned": self.pruned}


@dataclass(frozen=True)
class VerifyResult:
    ok: bool
    count: int  # entries checked (all of them when ok)
    first_bad_id: int | None = None
    reason: str = ""
    head_hash: str = GENESIS  # hash of the last entry: write it down to detect a rewrite of the whole chain later
    anchor: Anchor | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "count": self.count,
            "first_bad_id": self.first_bad_id,
            "reason": self.reason,
            "head_hash": self.head_hash,
            "anchor": self.anchor.to_dict() if self.anchor else None,
        }


def canonical(value: Any) -> str:
    """The one serialisation that is hashed: sorted keys, no spaces, UTF-8 kept as is."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False)


def entry_hash(fields: Mapping[str, Any]) -> str:
    """SHA-256 over every field of an entry (``hash`` itself excluded), prev_hash included."""
    return hashlib.sha256(canonical({f: fields[f] for f in FIELDS}).encode("utf-8")).hexdigest()


def _redacted(detail: Mapping[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in detail.items():
        if _SECRETISH.search(str(k)):
            out[str(k)] = "[redacted]"
        elif isinstance(v, Mapping):
            out[str(k)] = _redacted(v)
        else:
            out[str(k)] = v
    return out


def _who() -> tuple[str, str, int]:
    try:
        user = getpass.getuser()
    except (KeyError, OSError):
        user = str(os.getuid())
    return user, socket.gethostname(), os.getpid()


def _stamp() -> str:
    return datetime.now(UTC).isoformat(timespec="microseconds")


def record(store: Store, event: AuditEvent) -> int:
    """Append one entry (who: OS user, host, pid; when: now, UTC), chained to the head; returns its id."""
    with store.transaction(serialize="audit") as db:
        return _append(db, event)


def _append(db: Db, event: AuditEvent) -> int:
    """The one place an entry is made; ``db`` is inside a writer's transaction, so reading the head and inserting
    after it is atomic with respect to every other writer."""
    if event.outcome not in OUTCOMES:
        raise ValueError(f"audit outcome must be one of {OUTCOMES}, not {event.outcome!r}")
    user, host, pid = _who()
    head = db.execute("SELECT id, hash FROM audit ORDER BY id DESC LIMIT 1").fetchone()
    if head is not None:
        new_id, prev = int(head[0]) + 1, str(head[1])
    else:
        start = _anchor(db)
        new_id, prev = (start.id + 1, start.hash) if start else (1, GENESIS)
    fields: dict[str, Any] = {
        "id": new_id,
        "at": _stamp(),
        "user": user,
        "host": host,
        "pid": pid,
        "action": event.action,
        "target": event.target,
        "outcome": event.outcome,
        "plan_digest": event.plan_digest,
        "before_digest": event.before_digest,
        "after_digest": event.after_digest,
        # what is hashed is exactly what is stored (tuples become lists, keys strings, …)
        "detail": json.loads(canonical(_redacted(event.detail))),
        "prev_hash": prev,
    }
    digest = entry_hash(fields)
    db.execute(
        f"INSERT INTO audit({_COLUMNS}, hash) VALUES ({', '.join('?' for _ in FIELDS)}, ?)",
        (*(canonical(fields[f]) if f == "detail" else fields[f] for f in FIELDS), digest),
    )
    return new_id


def _anchor(db: Db) -> Anchor | None:
    row = db.execute("SELECT value FROM meta WHERE key = ?", (ANCHOR_KEY,)).fetchone()
    if row is None:
        return None
    data = json.loads(row[0])
    return Anchor(int(data["id"]), str(data["hash"]), str(data.get("pruned_at", "")), int(data.get("pruned", 0)))


def anchor(store: Store) -> Anchor | None:
    return _anchor(store.db)


def entries(
    store: Store, *, since_id: int = 0, limit: int | None = None, newest_first: bool = False
) -> Iterator[AuditEntry]:
    """Entries in chain order (or newest first). A detail that is not valid JSON comes back as ``{"_raw": text}``."""
    query = f"SELECT {_COLUMNS}, hash FROM audit WHERE id > ? ORDER BY id {'DESC' if newest_first else 'ASC'}"
    args: list[Any] = [since_id]
    if limit is not None:
        query += " LIMIT ?"
        args.append(limit)
    for row in store.db.execute(query, args):
        try:
            detail = json.loads(row[11])
        except (TypeError, ValueError):
            detail = {"_raw": row[11]}
        yield AuditEntry(
            int(row[0]), row[1], row[2], row[3], row[4], row[5], row[6], row[7], row[8], row[9], row[10],
            detail, row[12], row[13],
        )  # fmt: skip


def count(store: Store) -> int:
    return int(store.db.execute("SELECT COUNT(*) FROM audit").scalar())


def verify(store: Store) -> VerifyResult:
    """Recompute every hash and link; the first entry that does not match is named, with why."""
    start = anchor(store)
    expected_prev = start.hash if start else GENESIS
    last_id = start.id if start else 0
    checked = 0
    for e in entries(store):
        fields = e.to_dict()
        if "_raw" in e.detail and len(e.detail) == 1:
            return VerifyResult(False, checked, e.id, "its detail is not valid JSON", expected_prev, start)
        if e.id <= last_id:
            return VerifyResult(False, checked, e.id, f"its id does not follow entry {last_id}", expected_prev, start)
        if e.prev_hash != expected_prev:
            what = "the anchor left by pruning" if checked == 0 and start else f"entry {last_id}"
            if checked == 0 and not start:
                what = "the start of the chain"
            return VerifyResult(
                False,
                checked,
                e.id,
                f"its prev_hash does not match {what}: an entry before it was altered, removed or inserted",
                expected_prev,
                start,
            )
        try:
            actual = entry_hash(fields)
        except (TypeError, ValueError) as exc:
            return VerifyResult(False, checked, e.id, f"its fields cannot be hashed ({exc})", expected_prev, start)
        if actual != e.hash:
            return VerifyResult(
                False, checked, e.id, "its content does not match its hash: it was altered", expected_prev, start
            )
        checked += 1
        expected_prev, last_id = e.hash, e.id
    return VerifyResult(True, checked, head_hash=expected_prev, anchor=start)


def export(store: Store, out: TextIO) -> int:
    """Write every entry as one JSON object per line (chain order); returns how many."""
    n = 0
    for e in entries(store):
        out.write(json.dumps(e.to_dict(), ensure_ascii=False, sort_keys=True) + "\n")
        n += 1
    return n


def minimum_retention_days() -> int:
    from dcctl.standards import load_standards

    return load_standards().minimum_audit_retention_days


def prune(store: Store, retention_days: int, now: datetime | None = None) -> int:
    """Remove the oldest entries, those older than ``retention_days``; returns how many.

    Refuses a retention below the legal minimum (184 days) and refuses to prune a chain that does not verify (that
    would erase the evidence). Only a prefix of the chain is removed (up to the first entry that must be kept), its
    last entry becomes the anchor in ``meta``, and the prune is itself recorded as an ``audit.prune`` entry.
    """
    minimum = minimum_retention_days()
    if retention_days < minimum:
        raise DcctlError(
            f"refusing to prune audit records younger than {minimum} days (asked: {retention_days})",
            hint="the Cybersecurity Law keeps audit records at least six months; set "
            f"province.audit.retention_days to {minimum} or more",
        )
    checked = verify(store)
    if not checked.ok:
        raise DcctlError(
            f"refusing to prune: the audit chain does not verify at entry {checked.first_bad_id} ({checked.reason})",
            hint="pruning would erase the evidence; keep the database for investigation (dcctl audit export)",
        )
    cutoff = ((now or datetime.now(UTC)) - timedelta(days=retention_days)).isoformat(timespec="microseconds")
    with store.transaction(serialize="audit") as db:
        keep = db.execute("SELECT MIN(id) FROM audit WHERE at >= ?", (cutoff,)).scalar()
        if keep is None:
            keep = int(db.execute("SELECT COALESCE(MAX(id), 0) FROM audit").scalar()) + 1
        last = db.execute("SELECT id, hash FROM audit WHERE id < ? ORDER BY id DESC LIMIT 1", (keep,)).fetchone()
        if last is None:
            return 0
        removed = int(db.execute("SELECT COUNT(*) FROM audit WHERE id < ?", (keep,)).scalar())
        old = _anchor(db)
        new = Anchor(int(last[0]), str(last[1]), _stamp(), removed + (old.pruned if old else 0))
        db.execute("DELETE FROM audit WHERE id < ?", (keep,))
        db.execute(
            "INSERT INTO meta(key, value) VALUES (?, ?) ON CONFLICT(key) DO UPDATE SET value = excluded.value",
            (ANCHOR_KEY, canonical(new.to_dict())),
        )
        _append(
            db,
            AuditEvent(
                "audit.prune",
                "audit",
                "succeeded",
                detail={"removed": removed, "retention_days": retention_days, "anchor_id": new.id, "anchor": new.hash},
            ),
        )
    return removed


__all__ = [
    "GENESIS",
    "Anchor",
    "AuditEntry",
    "AuditEvent",
    "VerifyResult",
    "anchor",
    "count",
    "entries",
    "export",
    "prune",
    "record",
    "verify",
]
