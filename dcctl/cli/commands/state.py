"""`dcctl state info | migrate`: where the state is and what it holds; move a SQLite state to PostgreSQL."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from dcctl.cli import exitcodes
from dcctl.cli.commands.engine import State
from dcctl.cli.options import DEFAULT_INVENTORY, Json
from dcctl.cli.output import emit_json
from dcctl.errors import DcctlError

app = typer.Typer(help="The state store: where it is and what it holds; move it to PostgreSQL.", no_args_is_help=True)
Inventory = Annotated[Path, typer.Option("--inventory", "-i", help="Inventory whose state to use.")]


@app.command("info")
def info(inventory: Inventory = Path(DEFAULT_INVENTORY), state: State = None, json_output: Json = False) -> int:
    """Show the state's backend, place (a URL without its password), schema version, row counts and locks."""
    from dcctl.state import open_store

    store = open_store(inventory, state)
    try:
        found = store.info()
    finally:
        store.close()
    if json_output:
        emit_json({"state": found.to_dict()})
        return exitcodes.OK
    typer.echo(f"backend:  {found.backend}")
    typer.echo(f"location: {found.location}")
    typer.echo(f"schema:   version {found.schema_version} (this dcctl writes {found.latest_version})")
    typer.echo("rows:     " + ", ".join(f"{table} {n}" for table, n in found.counts.items()))
    for backend, holder in sorted(found.locks.items()):
        typer.echo(f"lock:     {backend}: {holder.describe()}")
    if found.migrated_to:
        typer.echo(f"moved:    to {found.migrated_to} (dcctl state migrate); applies against this state are refused")
    return exitcodes.OK


@app.command("migrate")
def migrate(
    to: Annotated[str, typer.Option("--to", help="The new state, e.g. postgresql://dcctl@db.example/dcctl.")],
    source: Annotated[
        str | None,
        typer.Option(
            "--from",
            help="The SQLite state to move. Default: $DCCTL_STATE when it is a file, else <inventory>/.dcctl/state.db.",
            show_default=False,
        ),
    ] = None,
    inventory: Inventory = Path(DEFAULT_INVENTORY),
    json_output: Json = False,
) -> int:
    """Copy a state into an empty one (normally SQLite into PostgreSQL): runs, journal, resources, the DR catalog and
    the audit trail with its ids and hashes. Refused while any lock is held; the old state is then marked as moved."""
    from dcctl.state import Store, default_state_path, is_url
    from dcctl.state.transfer import migrate_state

    origin = source or default_state_path(inventory)
    if not is_url(str(origin)) and not Path(origin).is_file():
        raise DcctlError(f"no state to migrate at {origin}", hint="name it with --from PATH")
    src = Store(origin)
    try:
        dst = Store(to)
        try:
            moved = migrate_state(src, dst)
        finally:
            dst.close()
    finally:
        src.close()
    if json_output:
        emit_json({"migrated": moved.to_dict()})
        return exitcodes.OK
    for warning in moved.warnings:
        typer.echo(f"warning: {warning}", err=True)
    typer.echo(f"moved the state from {moved.source} to {moved.target} in {moved.seconds:.1f}s:")
    typer.echo("  " + ", ".join(f"{table} {n}" for table, n in moved.rows.items()))
    typer.echo(
        f"  audit chain: {moved.audit.count} entries, head {moved.audit.head_hash} "
        f"({'verified' if moved.audit.ok else 'NOT verified'} at both places); the move is entry {moved.audit_entry}"
    )
    typer.echo(f"use it with --state {moved.target} or DCCTL_STATE={moved.target}")
    return exitcodes.OK
