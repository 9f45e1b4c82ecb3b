"""`dcctl lock list | break`: see who holds backend locks (and workloads' DR locks, ``dr:<workload>``), and clear
one whose holder is gone."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from dcctl.cli import exitcodes
from dcctl.cli.commands.engine import State
from dcctl.cli.options import DEFAULT_INVENTORY

app = typer.Typer(help="Backend locks: who holds them, and clearing a dead holder's.", no_args_is_help=True)
Inventory = Annotated[Path, typer.Option("--inventory", "-i", help="Inventory whose state holds the locks.")]


@app.command("list")
def list_locks(inventory: Inventory = Path(DEFAULT_INVENTORY), state: State = None) -> int:
    """List the locks held now, with their holders."""
    from dcctl.state import open_store

    store = open_store(inventory, state)
    try:
        locks = store.locks()
    finally:
        store.close()
    for backend, holder in sorted(locks.items()):
        typer.echo(f"{backend}: {holder.describe()}")
    if not locks:
        typer.echo("no locks held")
    return exitcodes.OK


@app.command("break")
def break_lock(
    backend: Annotated[str, typer.Argument(help="Backend id whose lock to clear, or dr:WORKLOAD for a DR run's.")],
    inventory: Inventory = Path(DEFAULT_INVENTORY),
    state: State = None,
    force: Annotated[bool, typer.Option("--force", help="Also clear a lock whose holder may still run.")] = False,
) -> int:
    """Clear the lock of a backend whose holder is gone (a killed run); refuses a live holder unless --force."""
    from dcctl.state import audit, open_store

    store = open_store(inventory, state)
    try:
        holder = store.break_lock(backend, force=force)
        audit.record(
            store,
            audit.AuditEvent("lock.break", backend, "succeeded", detail={"holder": holder.describe(), "force": force}),
        )
    finally:
        store.close()
    typer.echo(f"cleared the lock on {backend} held by {holder.describe()}")
    return exitcodes.OK
