"""What the engine reports while it works; views (terminal, JSON, Ansible) subscribe with an EventHandler."""

from __future__ import annotations

import enum
from collections.abc import Callable
from dataclasses import dataclass

from dcctl.plan.model import Change


class EventKind(enum.StrEnum):
    OBSERVED = "observed"
    CHANGE_STARTED = "change_started"
    CHANGE_PROGRESS = "change_progress"
    CHANGE_RETRY = "change_retry"
    CHANGE_FINISHED = "change_finished"
    CHANGE_SKIPPED = "change_skipped"
    LOCK_TAKEN_OVER = "lock_taken_over"
    WAITING = "waiting"


@dataclass(frozen=True)
class Event:
    kind: EventKind
    change: Change | None = None
    message: str = ""
    ok: bool = True
    seconds: float = 0.0
    done: int = 0
    total: int = 0


EventHandler = Callable[[Event], None]


def ignore(_: Event) -> None:
    """The default handler: a library call prints nothing."""
