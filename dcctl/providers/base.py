"""The provider contract: observe (batch, read-only), plan (which fields differ), apply, delete — and its errors.

Providers never retry and never print: they raise typed errors (``TransientError`` is the only one the engine
retries) and report progress through a callback.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Collection, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, ClassVar, Protocol

from dcctl.errors import DcctlError
from dcctl.inventory import Inventory
from dcctl.placement import Server
from dcctl.resources import DesiredResource, ObservedResource

ProgressCallback = Callable[[str], None]


class ProviderError(DcctlError):
    """A backend refused or failed an operation."""


class TransientError(ProviderError):
    """Worth retrying: timeouts, 409/429/5xx, a connection that dropped. ``retry_after`` is the least wait, in seconds,
    the backend asked for (an HTTP ``Retry-After``); the engine's backoff never waits less."""

    def __init__(self, message: str, *, hint: str = "", retry_after: float | None = None) -> None:
        super().__init__(message, hint=hint)
        self.retry_after = retry_after


class NotFound(ProviderError):
    """The resource is not there (deletes treat this as success)."""


class Conflict(ProviderError):
    """A resource with dcctl's name exists but dcctl did not create it; dcctl will not touch it."""


class PermanentError(ProviderError):
    """Retrying will not help; the message says what to change."""


@dataclass(frozen=True)
class FieldChanges:
    """What differs between a desired and an observed resource, as the provider sees it."""

    changed: tuple[str, ...] = ()
    requires_replace: tuple[str, ...] = ()
    before: Mapping[str, Any] | None = None
    after: Mapping[str, Any] | None = None


class Provider(Protocol):
    """One connected backend."""

    name: ClassVar[str]
    kinds: ClassVar[tuple[str, ...]]  # in creation order

    def desired(self, inv: Inventory, servers: Iterable[Server]) -> list[DesiredResource]:
        """The resources this backend needs for the servers placed on it (networks, volumes, pools, …)."""

    def observe(self) -> list[ObservedResource]:
        """Everything dcctl manages here, plus foreign objects that carry a name dcctl wants. One list per kind."""

    def plan(self, desired: DesiredResource, observed: ObservedResource) -> FieldChanges:
        """Which fields differ, and which of those can only change by replacing the resource."""

    def apply(
        self,
        desired: DesiredResource,
        observed: ObservedResource | None,
        *,
        deadline: float,
        on_progress: ProgressCallback,
    ) -> ObservedResource:
        """Create or update until usable; idempotent (re-running after a crash converges)."""

    def delete(self, observed: ObservedResource, *, deadline: float) -> None:
        """Remove; a resource already gone counts as success."""

    def verify_owned(self, observed: ObservedResource) -> None:
        """Raise ``Conflict`` unless dcctl created this resource (checked again right before a change)."""

    def close(self) -> None: ...


def wait_until(
    ready: Callable[[], bool],
    *,
    deadline: float,
    what: str,
    where: str,
    on_progress: ProgressCallback,
    first_delay: float = 0.05,
    max_delay: float = 2.0,
) -> None:
    """The one wait of every provider: poll ``ready()`` (which raises on a failure state) until it is true or the
    deadline passes (then TransientError). Polls start fast and slow down to ``max_delay``; a long wait says so
    every 15 s through ``on_progress``."""
    delay = first_delay
    started = time.monotonic()
    reported = started
    while True:
        if ready():
            return
        now = time.monotonic()
        if now >= deadline:
            raise TransientError(f"timed out after {now - started:.0f}s waiting for {what} on {where}")
        if now - reported >= 15:
            on_progress(f"still waiting for {what} ({now - started:.0f}s)")
            reported = now
        time.sleep(max(0.0, min(delay, deadline - now)))
        delay = min(delay * 1.6, max_delay)


def by_kind_order(kinds: Collection[str], kind: str) -> int:
    order = list(kinds)
    return order.index(kind) if kind in order else len(order)
