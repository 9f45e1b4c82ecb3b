"""Failpoints for crash tests: ``DCCTL_FAILPOINTS="name:N[:action],…"`` acts at the Nth time ``name`` is reached.

Actions: ``kill`` (the default) sends SIGKILL to this very process — a real kill -9 at a precise step, so tests can
prove that an interrupted apply re-runs to the same end state; ``pause`` sleeps until killed (to hold a lock).
Unset (always, outside tests) a failpoint costs one dictionary lookup.
"""

from __future__ import annotations

import os
import signal
import threading
import time

_counts: dict[str, int] = {}
_lock = threading.Lock()


def _armed() -> dict[str, tuple[int, str]]:
    spec = os.environ.get("DCCTL_FAILPOINTS", "")
    armed: dict[str, tuple[int, str]] = {}
    for item in filter(None, (part.strip() for part in spec.split(","))):
        name, _, rest = item.partition(":")
        nth, _, action = rest.partition(":")
        armed[name] = (int(nth or 1), action or "kill")
    return armed


def reach(name: str) -> None:
    """Mark that execution reached ``name``; act if a test armed it for this hit."""
    if "DCCTL_FAILPOINTS" not in os.environ:
        return
    armed = _armed().get(name)
    if armed is None:
        return
    with _lock:
        _counts[name] = _counts.get(name, 0) + 1
        hit = _counts[name]
    if hit != armed[0]:
        return
    if armed[1] == "pause":
        while True:
            time.sleep(3600)
    os.kill(os.getpid(), signal.SIGKILL)
