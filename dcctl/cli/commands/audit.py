"""`dcctl audit verify | export | prune`: check the hash-chained audit trail, hand it over, keep it within retention."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer

from dcctl.cli import exitcodes
from dcctl.cli.commands.engine import State
from dcctl.cli.options import DEFAULT_INVENTORY, Json
from dcctl.cli.output import emit_json
from dcctl.errors import DcctlError

app = typer.Typer(help="The audit trail: verify its hash chain, export it, prune it.", no_args_is_help=True)
Inventory = Annotated[Path, typer.Option("--inventory", "-i", help="Inventory whose state holds the audit trail.")]


@app.command("verify")
def verify(inventory: Inventory = Path(DEFAULT_INVENTORY), state: State = None, json_output: Json = False) -> int:
    """Recompute every entry's hash and link; exit 1 naming the first entry that was altered, removed or inserted."""
    from dcctl.state import audit, open_store

    store = open_store(inventory, state)
    try:
        result = audit.verify(store)
        total = audit.count(store)
    finally:
        store.close()
    if json_output:
        emit_json({"audit": {**result.to_dict(), "entries": total}})
    elif result.ok:
        typer.echo(f"audit chain verified: {result.count} entries, head {result.head_hash}")
        if result.anchor:
            typer.echo(f"(starts after entry {result.anchor.id}: {result.anchor.pruned} older entries were pruned)")
    else:
        typer.echo(
            f"audit chain BROKEN at entry {result.first_bad_id}: {result.reason} "
            f"({result.count} entries before it verified)",
            err=True,
        )
    return exitcodes.OK if result.ok else exitcodes.ERROR


@app.command("export")
def export(
    inventory: Inventory = Path(DEFAULT_INVENTORY),
    state: State = None,
    out: Annotated[Path | None, typer.Option("--out", "-o", help="File to write (default: stdout).")] = None,
) -> int:
    """Write every audit entry as JSON lines (one entry per line, chain order, with its hashes)."""
    from dcctl.state import audit, open_store

    store = open_store(inventory, state)
    try:
        if out is None:
            n = audit.export(store, sys.stdout)
        else:
            with out.open("w", encoding="utf-8") as f:
                n = audit.export(store, f)
    finally:
        store.close()
    typer.echo(f"exported {n} audit entries" + (f" to {out}" if out else ""), err=True)
    return exitcodes.OK


@app.command("prune")
def prune(
    inventory: Inventory = Path(DEFAULT_INVENTORY),
    state: State = None,
    json_output: Json = False,
) -> int:
    """Remove entries older than the inventory's province.audit.retention_days (never fewer than 184 days).

    The chain stays verifiable: the last removed entry is kept as an anchor and the prune is itself audited.
    """
    from dcctl.inventory import load_inventory
    from dcctl.state import audit, open_store

    inv, _ = load_inventory(inventory)
    if inv.province is None:
        raise DcctlError(f"{inventory} has no province: cannot tell the audit retention", hint="dcctl validate it")
    days = inv.province.audit.retention_days
    store = open_store(inventory, state)
    try:
        removed = audit.prune(store, days)
    finally:
        store.close()
    if json_output:
        emit_json({"pruned": removed, "retention_days": days})
    else:
        typer.echo(f"pruned {removed} audit entries older than {days} days")
    return exitcodes.OK
