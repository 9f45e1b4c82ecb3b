"""State: runs, journal, applied resources and locks (SQLite by default)."""

from __future__ import annotations

import os
from pathlib import Path

from dcctl.state.store import Holder, StateLockedError, Store


def default_state_path(inventory: str | Path) -> Path:
    """``$DCCTL_STATE``, else ``<inventory>/.dcctl/state.db`` (the loader skips hidden directories)."""
    configured = os.environ.get("DCCTL_STATE")
    if configured:
        return Path(configured)
    inv = Path(inventory)
    base = inv if inv.is_dir() else inv.parent
    return base / ".dcctl" / "state.db"


def open_store(inventory: str | Path, path: str | Path | None = None) -> Store:
    return Store(path or default_state_path(inventory))


__all__ = ["Holder", "StateLockedError", "Store", "default_state_path", "open_store"]
