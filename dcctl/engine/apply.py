"""Apply a plan: stages in kind order (deletes in reverse), bounded concurrency per backend, journal, retries.

Every step is idempotent on the backend (deterministic names and UUIDs), journaled before and after, and recorded in
state only once it succeeded. A run killed at any point leaves at worst a half-made resource with dcctl's name, which
the next plan observes and finishes: no duplicates (names are unique per key) and no orphans (dcctl lists its own).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

from dcctl import failpoints
from dcctl.engine.events import Event, EventHandler, EventKind, ignore
from dcctl.engine.retry import RetryPolicy, call_with_retry
from dcctl.plan.build import kind_rank
from dcctl.plan.model import Action, Change, Plan
from dcctl.providers.base import Provider, ProviderError, TransientError
from dcctl.resources import DesiredResource, ObservedResource, digest
from dcctl.state import audit
from dcctl.state.store import Holder, Store

#: changes in flight at once per backend (Terraform's -parallelism is 10 for the whole run)
PARALLELISM = 4


@dataclass(frozen=True)
class StepResult:
    change: Change
    ok: bool
    error: str = ""
    hint: str = ""
    seconds: float = 0.0
    attempts: int = 0
    skipped: bool = False


@dataclass
class ApplyResult:
    run_id: int
    results: list[StepResult] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        return all(r.ok for r in self.results)

    def counts(self) -> dict[str, int]:
        return {
            "succeeded": sum(1 for r in self.results if r.ok),
            "failed": sum(1 for r in self.results if not r.ok and not r.skipped),
            "skipped": sum(1 for r in self.results if r.skipped),
        }


def _desired(change: Change) -> DesiredResource:
    return DesiredResource(
        change.kind, change.key, change.backend, change.name, change.spec or {}, change.depends_on, change.source
    )


def _observed(change: Change) -> ObservedResource | None:
    state = (change.before or {}).get("observed")
    if state is None:
        return None
    attrs = {k: v for k, v in state.items() if k != "provider_id"}
    return ObservedResource(change.kind, change.key, change.backend, change.name, str(state["provider_id"]), attrs)


def _stages(changes: list[Change]) -> list[list[Change]]:
    deletes: dict[int, list[Change]] = {}
    others: dict[int, list[Change]] = {}
    for c in changes:
        bucket = deletes if c.action is Action.DELETE else others
        bucket.setdefault(kind_rank(c.kind), []).append(c)
    return [deletes[r] for r in sorted(deletes, reverse=True)] + [others[r] for r in sorted(others)]


def apply_plan(
    plan: Plan,
    providers: Mapping[str, Provider],
    store: Store,
    *,
    command: str = "apply",
    events: EventHandler = ignore,
    concurrency: int = PARALLELISM,
    timeout: float = 900.0,
    retry: RetryPolicy | None = None,
) -> ApplyResult:
    """Apply the plan's pending changes; every backend it touches is locked for the whole run."""
    retry = retry or RetryPolicy()
    holder = Holder.me(command)
    pending = plan.pending
    backends = sorted({c.backend for c in pending})
    plan_digest = digest(plan.to_dict()["changes"])
    run_id = store.start_run(command, plan.inventory, plan_digest, holder)
    take_locks(store, backends, holder, run_id, events)
    result = ApplyResult(run_id)
    started = time.monotonic()
    failed: set[tuple[str, str]] = set()
    guard = threading.Lock()
    slots = {b: threading.Semaphore(concurrency) for b in backends}
    done = 0
    try:
        for stage in _stages(pending):

            def step(change: Change) -> StepResult:
                nonlocal done
                blocked = [d for d in change.depends_on if (change.backend, d) in failed]
                if blocked:
                    res = StepResult(change, False, f"skipped: {blocked[0]} failed", skipped=True)
                    events(Event(EventKind.CHANGE_SKIPPED, change, res.error, ok=False))
                else:
                    with slots[change.backend]:
                        res = _run_one(
                            change, providers[change.backend], store, run_id, events, timeout, retry, plan_digest
                        )
                with guard:
                    done += 1
                    if not res.ok:
                        failed.add((change.backend, change.key))
                    result.results.append(res)
                    events(
                        Event(
                            EventKind.CHANGE_FINISHED,
                            change,
                            res.error,
                            ok=res.ok,
                            seconds=res.seconds,
                            done=done,
                            total=len(pending),
                        )
                    )
                return res

            workers = max(1, min(len(stage), concurrency * max(1, len(backends))))
            with ThreadPoolExecutor(max_workers=workers) as pool:
                list(pool.map(step, stage))
        store.record_many(
            run_id,
            [(c.backend, c.key, c.kind, c.name, digest(c.spec)) for c in plan.changes if c.action is Action.NOOP],
        )
    finally:
        result.seconds = time.monotonic() - started
        store.finish_run(run_id, "succeeded" if result.ok else "failed")
        store.unlock(backends, holder)
    return result


def take_locks(store: Store, names: list[str], holder: Holder, run_id: int | None, events: EventHandler) -> None:
    """Take the locks (backends, or ``dr:<workload>`` for DR work); a lock left by a dead dcctl process on this
    machine is taken over (and said so)."""
    for name, old in store.locks().items():
        if name in names and old.alive() is False:
            store.break_lock(name)
            audit.record(
                store,
                audit.AuditEvent(
                    "lock.takeover",
                    name,
                    "succeeded",
                    detail={"run_id": run_id, "previous_holder": old.describe(), "command": holder.command},
                ),
            )
            events(Event(EventKind.LOCK_TAKEN_OVER, message=f"lock of {name} held by a dead run: {old.describe()}"))
    store.lock(names, holder, run_id)


def _run_one(
    change: Change,
    provider: Provider,
    store: Store,
    run_id: int,
    events: EventHandler,
    timeout: float,
    retry: RetryPolicy,
    plan_digest: str = "",
) -> StepResult:
    started = time.monotonic()
    deadline = started + timeout
    store.journal(run_id, change.backend, change.key, change.kind, change.name, change.action.value, "started")
    events(Event(EventKind.CHANGE_STARTED, change))
    failpoints.reach("apply.step-started")

    def progress(message: str) -> None:
        events(Event(EventKind.CHANGE_PROGRESS, change, message))

    def retried(attempt: int, exc: TransientError, wait: float) -> None:
        events(Event(EventKind.CHANGE_RETRY, change, f"attempt {attempt} failed ({exc.message}); retry in {wait:.1f}s"))

    def act() -> None:
        observed = _observed(change)
        if change.action is Action.DELETE:
            assert observed is not None
            provider.delete(observed, deadline=deadline)
        elif change.action is Action.REPLACE:
            assert observed is not None
            provider.delete(observed, deadline=deadline)
            provider.apply(_desired(change), None, deadline=deadline, on_progress=progress)
        else:
            provider.apply(_desired(change), observed, deadline=deadline, on_progress=progress)

    try:
        _, attempts = call_with_retry(act, retry, deadline=deadline, on_retry=retried)
    except ProviderError as exc:
        store.journal(
            run_id, change.backend, change.key, change.kind, change.name, change.action.value, "failed", exc.message
        )
        _audit(store, change, run_id, plan_digest, exc.message)
        return StepResult(change, False, exc.message, exc.hint, time.monotonic() - started)
    failpoints.reach("apply.step-applied")
    if change.action is Action.DELETE:
        store.forget(change.backend, change.key)
    else:
        store.record_applied(run_id, change.backend, change.key, change.kind, change.name, digest(change.spec))
    store.journal(run_id, change.backend, change.key, change.kind, change.name, change.action.value, "done")
    _audit(store, change, run_id, plan_digest)
    return StepResult(change, True, seconds=time.monotonic() - started, attempts=attempts)


def _audit(store: Store, change: Change, run_id: int, plan_digest: str, error: str = "") -> None:
    """One audit entry per step: before = the observed state's digest, after = the applied spec's ("" if none)."""
    observed = (change.before or {}).get("observed")
    detail = {"run_id": run_id, "kind": change.kind, "name": change.name, "reason": change.reason.value}
    audit.record(
        store,
        audit.AuditEvent(
            f"apply.{change.action.value}",
            change.id,
            "failed" if error else "succeeded",
            plan_digest=plan_digest,
            before_digest=digest(observed) if observed is not None else "",
            after_digest=digest(change.spec) if change.spec is not None and change.action is not Action.DELETE else "",
            detail={**detail, "error": error} if error else detail,
        ),
    )
