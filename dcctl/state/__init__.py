"""State: runs, journal, applied resources, locks, the audit trail and the DR catalog, in SQLite (the default) or
PostgreSQL (``postgresql://…``)."""

from __future__ import annotations

import os
from pathlib import Path

from dcctl.state.store import Holder, StateError, StateLockedError, Store, is_url


def default_state_path(inventory: str | Path) -> Path:
    """The SQLite file: ``$DCCTL_STATE`` when it names a file, else ``<inventory>/.dcctl/state.db`` (the loader
    skips hidden directories)."""
    configured = os.environ.get("DCCTL_STATE")
    if configured and not is_url(configured):
        return Path(configured)
    inv = Path(inventory)
    base = inv if inv.is_dir() else inv.parent
    return base / ".dcctl" / "state.db"


def state_location(inventory: str | Path, state: str | Path | None = None) -> str | Path:
    """Where the state is: ``state`` (``--state``), else ``$DCCTL_STATE``, else ``<inventory>/.dcctl/state.db``; a
    ``postgresql://`` URL or a SQLite file path."""
    chosen = state or os.environ.get("DCCTL_STATE")
    if chosen:
        return str(chosen) if is_url(str(chosen)) else Path(chosen)
    return default_state_path(inventory)


def local_dir(inventory: str | Path, state: str | Path | None = None) -> Path:
    """A directory for files that go with the state (e.g. Ansible artifacts): beside a SQLite file, or
    ``<inventory>/.dcctl`` for a state in PostgreSQL."""
    location = state_location(inventory, state)
    if isinstance(location, Path):
        return location.resolve().parent
    inv = Path(inventory)
    return (inv if inv.is_dir() else inv.parent).resolve() / ".dcctl"


def open_store(inventory: str | Path, path: str | Path | None = None) -> Store:
    return Store(state_location(inventory, path))


__all__ = [
    "Holder",
    "StateError",
    "StateLockedError",
    "Store",
    "default_state_path",
    "is_url",
    "local_dir",
    "open_store",
    "state_location",
]
