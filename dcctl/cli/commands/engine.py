"""`dcctl plan | apply | destroy | status | drift`: show the change before making it, then make it."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from dcctl.cli import exitcodes
from dcctl.cli.options import DEFAULT_INVENTORY, InventoryPath, Json
from dcctl.cli.output import diagnostics_json, emit_json, print_diagnostics
from dcctl.cli.views import ProgressPrinter, print_plan, print_result
from dcctl.errors import DcctlError, InventoryError

if TYPE_CHECKING:
    from dcctl.engine.session import Session

Target = Annotated[
    list[str] | None,
    typer.Option("--target", "-t", help="Limit to a workload, tenancy, data center or backend id (repeatable)."),
]
State = Annotated[
    str | None,
    typer.Option(
        "--state",
        help="State: a SQLite file or a postgresql://user@host/db URL. Default: $DCCTL_STATE, else "
        "<inventory>/.dcctl/state.db.",
        show_default=False,
    ),
]
Yes = Annotated[bool, typer.Option("--yes", "-y", help="Apply without asking (required when not on a terminal).")]
Timeout = Annotated[float, typer.Option("--timeout", help="Seconds any one step may take, retries included.")]
Parallelism = Annotated[
    int | None,
    typer.Option(
        "--parallelism",
        "-p",
        min=1,
        help="Changes in flight at once on each backend. Default: 4. More helps a cloud with spare API and compute "
        "capacity; a saturated one only queues them.",
        show_default=False,
    ),
]


def _session(
    path: Path,
    targets: list[str] | None,
    state: str | None,
    *,
    progress: bool = False,
    json_output: bool = False,
    parallelism: int | None = None,
) -> Session:
    """Open the inventory. An invalid one is reported with its diagnostics (one JSON document with --json) and ends
    the command with exit 1."""
    from dcctl.engine.apply import PARALLELISM
    from dcctl.engine.events import ignore
    from dcctl.engine.session import Session

    try:
        return Session(
            path,
            targets=targets or (),
            state_path=state,
            events=ProgressPrinter() if progress else ignore,
            concurrency=parallelism or PARALLELISM,
        )
    except InventoryError as exc:
        from dcctl import api

        diags = api.validate(path).diagnostics
        if json_output:
            emit_json({"error": exc.message, **diagnostics_json(diags)})
            raise typer.Exit(exitcodes.ERROR) from None
        print_diagnostics(diags, err=True)
        raise


def _confirm(yes: bool, what: str) -> None:
    if yes:
        return
    if not sys.stdin.isatty():
        raise DcctlError(f"refusing to {what} without --yes: nobody is at a terminal to confirm")
    if not typer.confirm(f"Do you want to {what}?", default=False):
        raise typer.Abort()


def plan(
    path: InventoryPath = Path(DEFAULT_INVENTORY),
    target: Target = None,
    out: Annotated[Path | None, typer.Option("--out", "-o", help="Save the plan to apply it later.")] = None,
    json_output: Json = False,
    detailed_exitcode: Annotated[
        bool, typer.Option("--detailed-exitcode", help="Exit 0 when nothing changes, 2 when something would.")
    ] = False,
    state: State = None,
) -> int:
    """Show what apply would change, and why, without changing anything.

    Observes every backend once (one list per kind per host), places servers, and diffs the inventory against what
    exists. Exit 1 on errors; with --detailed-exitcode, 2 when the plan has changes.
    """
    with _session(path, target, state, json_output=json_output) as s:
        p = s.plan()
    if out is not None:
        out.write_text(json.dumps(p.to_dict(), ensure_ascii=False, indent=2) + "\n", encoding="utf-8")
    if json_output:
        emit_json({"plan": p.to_dict()})
    else:
        print_diagnostics(p.diagnostics)
        print_plan(p)
        if out is not None:
            typer.echo(f"Saved the plan to {out}; apply it with: dcctl apply {out}")
    if not p.applyable:
        return exitcodes.ERROR
    return exitcodes.CHANGES if detailed_exitcode and p.has_changes else exitcodes.OK


def apply(
    path: Annotated[
        Path,
        typer.Argument(help="Inventory directory, or a plan file saved by 'dcctl plan --out'.", show_default=False),
    ] = Path(DEFAULT_INVENTORY),
    target: Target = None,
    yes: Yes = False,
    json_output: Json = False,
    state: State = None,
    timeout: Timeout = 900.0,
    parallelism: Parallelism = None,
) -> int:
    """Make the backends match the inventory: show the plan, ask, then apply it.

    A saved plan applies only if the inventory and every backend it touches are as they were when it was made.
    Every backend touched is locked for the run; an interrupted apply re-runs to the same end state.
    """
    from dcctl.engine.session import load_plan_file

    saved = load_plan_file(path)
    inventory = Path(saved.inventory) if saved else path
    with _session(
        inventory,
        list(saved.targets) if saved else target,
        state,
        progress=True,
        json_output=json_output,
        parallelism=parallelism,
    ) as s:
        if saved is not None:
            s.check_fresh(saved)
            p = saved
        else:
            p = s.plan()
        if not json_output:
            print_diagnostics(p.diagnostics)
            print_plan(p)
        if not p.applyable:
            return exitcodes.ERROR
        if not p.has_changes:
            if json_output:
                emit_json({"plan": p.to_dict(), "result": None})
            return exitcodes.OK
        _confirm(yes, f"apply these {len(p.pending)} changes")
        result = s.apply(p, timeout=timeout)
    if json_output:
        emit_json(
            {
                "plan": p.to_dict(),
                "result": {
                    "run_id": result.run_id,
                    "ok": result.ok,
                    "seconds": round(result.seconds, 2),
                    **result.counts(),
                    "failures": [
                        {"key": r.change.key, "backend": r.change.backend, "error": r.error}
                        for r in result.results
                        if not r.ok
                    ],
                },
            }
        )
    else:
        print_result(result)
    return exitcodes.OK if result.ok else exitcodes.ERROR


def destroy(
    path: InventoryPath = Path(DEFAULT_INVENTORY),
    target: Target = None,
    yes: Yes = False,
    json_output: Json = False,
    state: State = None,
    timeout: Timeout = 900.0,
    parallelism: Parallelism = None,
) -> int:
    """Remove what dcctl made for the inventory (or for --target): servers, volumes, networks, pools.

    Only resources carrying dcctl's metadata for this inventory are touched.
    """
    from dcctl.plan.model import Mode

    with _session(path, target, state, progress=True, json_output=json_output, parallelism=parallelism) as s:
        p = s.plan(Mode.DESTROY)
        if not json_output:
            print_diagnostics(p.diagnostics)
            print_plan(p)
        if not p.applyable:
            return exitcodes.ERROR
        if not p.has_changes:
            return exitcodes.OK
        _confirm(yes, f"destroy these {len(p.pending)} resources")
        result = s.apply(p, command="destroy", timeout=timeout)
    if json_output:
        emit_json({"plan": p.to_dict(), "result": {"ok": result.ok, **result.counts()}})
    else:
        print_result(result)
    return exitcodes.OK if result.ok else exitcodes.ERROR


def status(path: InventoryPath = Path(DEFAULT_INVENTORY), json_output: Json = False, state: State = None) -> int:
    """What dcctl runs on each backend now: servers (running or not), networks, volumes, pools; locks; last run."""
    with _session(path, None, state, json_output=json_output) as s:
        st = s.status()
    if json_output:
        emit_json(
            {
                "resources": [e.to_dict() for e in st.entries],
                "locks": st.locks,
                "last_run": st.last_run,
                "errors": [d.to_dict() for d in st.diagnostics],
            }
        )
    else:
        print_diagnostics(st.diagnostics)
        width = max((len(e.key) for e in st.entries), default=10)
        for e in st.entries:
            flag = "" if e.managed else "  (foreign: not dcctl's)"
            typer.echo(f"{e.backend:<12} {e.kind:<7} {e.key:<{width}}  {e.state}{flag}")
        servers = [e for e in st.entries if e.kind == "server" and e.managed]
        running = sum(1 for e in servers if e.state == "running")
        typer.echo(f"{len(servers)} servers ({running} running) on {len({e.backend for e in st.entries})} backends")
        for backend, holder in st.locks.items():
            typer.echo(f"lock: {backend} held by {holder}")
    return exitcodes.ERROR if st.diagnostics.has_errors() else exitcodes.OK


def drift(path: InventoryPath = Path(DEFAULT_INVENTORY), json_output: Json = False, state: State = None) -> int:
    """Changes made outside dcctl: applied resources that are gone or differ. Exit 2 when there is drift."""
    with _session(path, None, state, json_output=json_output) as s:
        p = s.drift()
    if json_output:
        emit_json({"drift": [c.to_dict() for c in p.changes], "diagnostics": [d.to_dict() for d in p.diagnostics]})
    else:
        print_diagnostics(p.diagnostics)
        if p.changes:
            typer.echo(f"Drift: {len(p.changes)} resources changed outside dcctl (apply restores them):")
            for c in p.changes:
                what = "removed outside dcctl" if c.action.value == "create" else ", ".join(c.changed_fields)
                typer.echo(f"  {c.key} on {c.backend}: {what}")
        else:
            typer.echo("No drift: what dcctl applied is as it left it.")
    if not p.applyable:
        return exitcodes.ERROR
    return exitcodes.CHANGES if p.changes else exitcodes.OK
