"""A session: one inventory opened for work: validated model, state store, a provider per backend in scope."""

from __future__ import annotations

import json
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from types import TracebackType
from typing import Any

from dcctl.api import Validation, validate
from dcctl.diagnostics import Diagnostics
from dcctl.engine.apply import PARALLELISM, ApplyResult, apply_plan
from dcctl.engine.events import Event, EventHandler, EventKind, ignore
from dcctl.errors import DcctlError, InventoryError
from dcctl.plan.build import Observation, Scope, build_plan, observe_all, resolve_targets
from dcctl.plan.model import Action, Mode, Plan, Reason
from dcctl.providers import provider_for
from dcctl.providers.base import Provider, ProviderError
from dcctl.state import open_store
from dcctl.state.store import Store

#: how long after a killed run's last step its requests may still land on a backend (observe waits that long)
LANDING_S = 10.0


class StalePlanError(DcctlError):
    """A saved plan no longer matches the inventory or the backends it was computed from."""


@dataclass
class StatusEntry:
    backend: str
    kind: str
    key: str
    name: str
    state: str
    managed: bool

    def to_dict(self) -> dict[str, Any]:
        return self.__dict__.copy()


@dataclass
class Status:
    entries: list[StatusEntry] = field(default_factory=list)
    diagnostics: Diagnostics = field(default_factory=Diagnostics)
    last_run: dict[str, object] | None = None
    locks: dict[str, str] = field(default_factory=dict)


class Session:
    def __init__(
        self,
        path: str | Path,
        *,
        state_path: str | Path | None = None,
        targets: Iterable[str] = (),
        events: EventHandler = ignore,
        concurrency: int = PARALLELISM,
    ) -> None:
        self.path = Path(path)
        self.validation: Validation = validate(path)
        if not self.validation.valid:
            raise InventoryError(
                f"the inventory has {len(self.validation.diagnostics.errors)} errors",
                hint=f"run 'dcctl validate {path}' and fix them first",
            )
        self.inv = self.validation.inventory
        self.targets = tuple(targets)
        self.scope: Scope = resolve_targets(self.inv, self.targets)
        self.store: Store = open_store(self.path, state_path)
        self.events = events
        self.concurrency = concurrency
        self._providers: dict[str, Provider] | None = None
        self._landed = False  # a dead run's requests waited for (once per session)

    def __enter__(self) -> Session:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def close(self) -> None:
        for provider in (self._providers or {}).values():
            provider.close()
        self.store.close()

    @property
    def province(self) -> str:
        return self.inv.province.id if self.inv.province else ""

    def providers(self) -> dict[str, Provider]:
        """A provider per backend in scope; a backend type this dcctl cannot provision is reported by ``plan``."""
        if self._providers is None:
            chosen = {}
            for bid, (_, backend) in sorted(self.inv.backends.items()):
                if self.scope.backends is not None and bid not in self.scope.backends:
                    continue
                provider = provider_for(backend, self.province)
                if provider is not None:
                    chosen[bid] = provider
            self._providers = chosen
        return self._providers

    def _let_a_dead_runs_requests_land(self) -> None:
        """A run killed mid-request leaves requests a backend may still carry out after it died (measured: a cinder
        volume create landed 1.3 s after the kill; the re-run had observed before it, and made a second). Observing
        waits until LANDING_S have passed since such a run's last step, once per session."""
        if self._landed:
            return
        self._landed = True
        last = self.store.last_step_of_a_dead_run()
        if last is None:
            return
        left = LANDING_S - (datetime.now(UTC) - datetime.fromisoformat(last)).total_seconds()
        if left > 0:
            message = f"an interrupted run's last requests may still land: waiting {left:.0f}s"
            self.events(Event(EventKind.WAITING, message=message))
            time.sleep(left)

    def observe(self) -> dict[str, Observation]:
        self._let_a_dead_runs_requests_land()
        observations = observe_all(self.providers(), self.concurrency * 2)
        self.events(Event(EventKind.OBSERVED, message=f"observed {len(observations)} backends"))
        return observations

    def plan(self, mode: Mode = Mode.NORMAL) -> Plan:
        plan = build_plan(
            self.inv,
            self.providers(),
            self.observe(),
            self.store.applied(),
            mode=mode,
            scope=self.scope,
            targets=self.targets,
        )
        for bid, (dc, backend) in sorted(self.inv.backends.items()):
            in_scope = self.scope.backends is None or bid in self.scope.backends
            used = any(b.id == bid for t, w in self.inv.workloads.values() for b in self.inv.eligible_backends(t, w))
            if bid not in self.providers() and in_scope and used:
                plan.diagnostics.warning(
                    "backend-not-provisioned",
                    f"backend '{bid}' of '{dc.id}' is of type {backend.type}: this dcctl does not provision it yet",
                    hint="its servers are left out of this plan",
                    source=backend.where(),
                )
        return plan

    def apply(self, plan: Plan, *, command: str = "apply", timeout: float = 900.0) -> ApplyResult:
        if not plan.applyable:
            raise DcctlError("the plan has errors and cannot be applied", hint="see the diagnostics above")
        return apply_plan(
            plan,
            self.providers(),
            self.store,
            command=command,
            events=self.events,
            concurrency=self.concurrency,
            timeout=timeout,
        )

    def check_fresh(self, saved: Plan) -> None:
        """Refuse a saved plan once the inventory or any backend it touches has changed since it was computed."""
        if saved.inventory_digest != self.inv.digest:
            raise StalePlanError(
                "saved plan is stale: the inventory changed since the plan was made",
                hint=f"make a new plan: dcctl plan {saved.inventory} --out FILE",
            )
        observations = self.observe()
        for backend in sorted({c.backend for c in saved.pending}):
            now = observations.get(backend)
            if now is None or now.error is not None or now.fingerprint != saved.observed.get(backend):
                raise StalePlanError(
                    f"saved plan is stale: backend '{backend}' changed since the plan was made",
                    hint=f"make a new plan: dcctl plan {saved.inventory} --out FILE",
                )

    def drift(self) -> Plan:
        """Changes made outside dcctl: resources it applied that are gone or differ, while the inventory did not."""
        plan = self.plan()
        applied = self.store.applied()
        kept = []
        for c in plan.changes:
            record = applied.get((c.backend, c.key))
            if c.action is Action.CREATE and c.reason is Reason.MISSING_ON_BACKEND:
                kept.append(c)
            elif c.action in (Action.UPDATE, Action.REPLACE) and record is not None:
                from dcctl.resources import digest

                if record.digest == digest(c.spec):
                    kept.append(c)
        plan.changes = kept
        return plan

    def status(self) -> Status:
        status = Status(last_run=self.store.last_run())
        status.locks = {b: h.describe() for b, h in self.store.locks().items()}
        for backend, obs in sorted(self.observe().items()):
            if obs.error is not None:
                status.diagnostics.error("backend-unreachable", f"{backend}: {obs.error.message}", hint=obs.error.hint)
                continue
            for r in sorted(obs.resources, key=lambda r: (r.kind, r.key)):
                if r.kind == "server":
                    state = "running" if r.attrs.get("running") else "shut off"
                elif r.kind in {"network", "pool"}:
                    state = "active" if r.attrs.get("active") else "inactive"
                else:
                    state = f"{r.attrs.get('size_gb', '?')} GiB"
                status.entries.append(StatusEntry(backend, r.kind, r.key, r.name, state, r.managed))
        return status


def load_plan_file(path: Path) -> Plan | None:
    """The plan saved at ``path``, or None if ``path`` is not a plan file (an inventory, then)."""
    if not path.is_file() or path.suffix not in (".json", ".plan"):
        return None
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise DcctlError(f"cannot read plan file {path}: {exc}") from None
    if not isinstance(data, dict) or "changes" not in data or "inventory_digest" not in data:
        raise DcctlError(f"{path} is not a dcctl plan file", hint="make one with: dcctl plan PATH --out FILE")
    try:
        return Plan.from_dict(data)
    except (KeyError, ValueError, TypeError) as exc:
        raise DcctlError(f"{path} is not a valid dcctl plan file ({exc})") from None


__all__ = ["ProviderError", "Session", "StalePlanError", "Status", "load_plan_file"]
