"""`dcctl hosts prepare`: make the inventory's libvirt hosts working libvirt hosts (playbooks/prepare-hosts.yml)."""

from __future__ import annotations

import json
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from dcctl.cli import exitcodes
from dcctl.cli.options import DEFAULT_INVENTORY, InventoryPath, Json
from dcctl.cli.output import diagnostics_json, emit_json, print_diagnostics
from dcctl.errors import DcctlError, InventoryError

if TYPE_CHECKING:
    from dcctl.hosts import HostEvent

app = typer.Typer(help="The libvirt hosts behind the inventory: prepare them with Ansible.", no_args_is_help=True)

OUTCOME_COLOUR = {"ok": "green", "changed": "yellow", "failed": "red", "unreachable": "red", "skipped": "cyan"}


class EventPrinter:
    """One plain line per task and host on stderr, as it happens: ``[host] changed: task (1.2s)``."""

    def __init__(self) -> None:
        self.lock = threading.Lock()

    def __call__(self, event: HostEvent) -> None:
        import sys

        outcome = "would change" if event.check and event.outcome == "changed" else event.outcome
        if sys.stderr.isatty():
            outcome = typer.style(outcome, fg=OUTCOME_COLOUR.get(event.outcome, "white"))
        took = f" ({event.seconds:.1f}s)" if event.seconds is not None else ""
        detail = f": {event.message}" if event.message else ""
        with self.lock:
            typer.echo(f"[{event.host}] {outcome}: {event.task}{took}{detail}", err=True)


def _extra_vars(values: list[str] | None) -> dict[str, Any]:
    """``-e`` values: JSON objects, ``@file`` (JSON or YAML), or ``key=value``; later ones win."""
    import yaml

    merged: dict[str, Any] = {}
    for value in values or ():
        if value.startswith("@"):
            loaded = yaml.safe_load(Path(value[1:]).read_text(encoding="utf-8"))
        elif value.lstrip().startswith("{"):
            loaded = json.loads(value)
        elif "=" in value:
            key, _, raw = value.partition("=")
            loaded = {key: raw}
        else:
            raise typer.BadParameter(f"{value!r}: use KEY=VALUE, a JSON object, or @FILE", param_hint="--extra-vars")
        if not isinstance(loaded, dict):
            raise typer.BadParameter(f"{value!r}: not a mapping of variables", param_hint="--extra-vars")
        merged.update(loaded)
    return merged


@app.command()
def prepare(
    path: InventoryPath = Path(DEFAULT_INVENTORY),
    limit: Annotated[
        list[str] | None,
        typer.Option("--limit", "-l", help="Only these hosts: a backend id, data center id or address (repeatable)."),
    ] = None,
    check: Annotated[bool, typer.Option("--check", help="Show what would change; change nothing.")] = False,
    extra_vars: Annotated[
        list[str] | None,
        typer.Option(
            "--extra-vars",
            "-e",
            help="Playbook variables (repeatable): KEY=VALUE, a JSON object, or @FILE; e.g. "
            '\'{"dcctl_bridges": [{"name": "br-ext", "ports": ["eno2"]}]}\'.',
        ),
    ] = None,
    json_output: Json = False,
    state: Annotated[
        str | None,
        typer.Option(
            "--state",
            help="State: a SQLite file (runs keep their Ansible artifacts beside it) or a postgresql:// URL. "
            "Default: $DCCTL_STATE, else <inventory>/.dcctl/state.db.",
            show_default=False,
        ),
    ] = None,
) -> int:
    """Make every libvirt host of the inventory ready for dcctl: packages, libvirtd, storage directories, bridges.

    Runs playbooks/prepare-hosts.yml through ansible-runner over SSH, with the user, key and known_hosts of each
    host's libvirt URI (host keys are always verified). One line per task and host on stderr while it runs.
    Idempotent: a second run changes nothing. Each host's outcome goes to the audit log (action hosts.prepare).
    Exit 0 when every host succeeded, 1 otherwise.
    """
    from dcctl import hosts

    try:
        result = hosts.prepare(
            path, limit=limit or (), check=check, extra_vars=_extra_vars(extra_vars), state=state, events=EventPrinter()
        )
    except InventoryError as exc:
        from dcctl import api

        diags = api.validate(path).diagnostics
        if json_output:
            emit_json({"error": exc.message, **diagnostics_json(diags)})
            return exitcodes.ERROR
        print_diagnostics(diags, err=True)
        raise
    except DcctlError as exc:
        if not json_output:
            raise
        emit_json({"error": exc.message, "hint": exc.hint})
        return exitcodes.ERROR
    if json_output:
        emit_json({"prepare": result.to_dict()})
    else:
        for h in result.hosts:
            typer.echo(
                f"{h.host:<16} ok={h.ok} changed={h.changed} failed={h.failed} unreachable={h.unreachable} "
                f"skipped={h.skipped}"
            )
        for backend, why in result.skipped_backends.items():
            typer.echo(f"{backend:<16} not prepared: {why}")
        if result.output_tail:
            typer.echo(result.output_tail, err=True)
        verdict = "complete" if result.ok else f"FAILED ({result.status})"
        mode = " (check mode: nothing was changed)" if check else ""
        typer.echo(f"Host preparation {verdict} in {result.seconds:.1f}s{mode}; artifacts: {result.artifact_dir}")
    return exitcodes.OK if result.ok else exitcodes.ERROR
