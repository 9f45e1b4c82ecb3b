"""`dcctl consolidate plan | run`: move a legacy data center's workloads into its consolidation target (逐步整合)."""

from __future__ import annotations

import enum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from dcctl.cli import exitcodes
from dcctl.cli.commands.engine import State, Timeout, Yes, _confirm, _session
from dcctl.cli.options import DEFAULT_INVENTORY, InventoryPath, Json
from dcctl.cli.output import emit_json, print_diagnostics

if TYPE_CHECKING:
    from dcctl.consolidate.plan import ConsolidationPlan
    from dcctl.consolidate.run import MoveResult

app = typer.Typer(
    help="Consolidate a legacy county or department data center into its city's or the province's (逐步整合).",
    no_args_is_help=True,
)


class MethodChoice(enum.StrEnum):
    live = "live"
    warm = "warm"
    cold = "cold"


LegacyArg = Annotated[str, typer.Argument(help="The legacy data center's id (one with 'legacy: true').")]
MethodOpt = Annotated[
    MethodChoice | None,
    typer.Option(
        "--method",
        help="Force one method. Default: live where both ends allow it, else warm for running guests, cold for "
        "shut-off ones.",
    ),
]


def _say(message: str) -> None:
    typer.echo(f"  {message}", err=True)


@app.command()
def plan(
    legacy: LegacyArg,
    path: InventoryPath = Path(DEFAULT_INVENTORY),
    method: MethodOpt = None,
    json_output: Json = False,
    state: State = None,
) -> int:
    """Per workload of the legacy data center: the move (live, warm or cold) and why, what it takes at the target
    against what placement leaves free, the order, and the expected downtime. Changes nothing.

    Exit 1 when the plan is refused: a capacity shortfall at the target (named with the numbers), a workload that
    cannot move as asked, or an inventory that would become invalid after the switch.
    """
    from dcctl.consolidate import run as consolidation
    from dcctl.consolidate.plan import Method

    with _session(path, None, state, json_output=json_output) as s:
        cplan = consolidation.plan(s.inv, s.store, legacy, method=Method(method.value) if method else None)
    if json_output:
        emit_json({"consolidation": cplan.to_dict()})
    else:
        print_diagnostics(cplan.diagnostics)
        show_plan(cplan)
    return exitcodes.ERROR if cplan.refused else exitcodes.OK


@app.command()
def run(
    legacy: LegacyArg,
    path: InventoryPath = Path(DEFAULT_INVENTORY),
    workload: Annotated[
        list[str] | None, typer.Option("--workload", "-w", help="Only this workload (repeatable).")
    ] = None,
    method: MethodOpt = None,
    yes: Yes = False,
    json_output: Json = False,
    state: State = None,
    timeout: Timeout = 3600.0,
) -> int:
    """Move the workloads in the plan's order: each is moved, verified (live: running at the target and owned there;
    warm/cold: equal content digests of every disk, then the boot marker at the target), its tenancy's hosted_in
    switched in the YAML file when its last workload has moved — or rolled back if its verification fails (source
    running again, target copy removed, inventory unchanged). Stops at the first failure; exit 1 then."""
    from dcctl.consolidate import run as consolidation
    from dcctl.consolidate.plan import Method

    chosen = Method(method.value) if method else None
    with _session(path, None, state, json_output=json_output) as s:
        if not yes:
            preview = consolidation.plan(s.inv, s.store, legacy, method=chosen)
            print_diagnostics(preview.diagnostics)
            show_plan(preview)
            if preview.refused:
                return exitcodes.ERROR
            _confirm(yes, "move these workloads")
        result = consolidation.run(
            s.inv,
            s.store,
            legacy,
            workloads=tuple(workload or ()),
            method=chosen,
            progress=_say,
            timeout=timeout,
        )
    if json_output:
        emit_json({"consolidation": result.to_dict()})
        return exitcodes.OK if result.ok else exitcodes.ERROR
    if result.plan.refused:
        print_diagnostics(result.plan.diagnostics)
        typer.echo("Refused: nothing was moved.")
        return exitcodes.ERROR
    for m in result.moves:
        show_move(m)
    moved = sum(1 for m in result.moves if m.ok)
    typer.echo(
        f"Consolidation of {legacy}: {moved} moved, {len(result.moves) - moved} failed"
        + (f"; switched: {', '.join(result.switched)}" if result.switched else "")
    )
    return exitcodes.OK if result.ok else exitcodes.ERROR


# ------------------------------------------------------------------------------------------------------- views
def _secs(value: float) -> str:
    return f"{value:.1f}s" if value < 120 else f"{value / 60:.1f} min"


def show_plan(p: ConsolidationPlan) -> None:
    typer.echo(f"Consolidation of {p.legacy_dc} ({p.legacy_name}) into {p.target_dc} ({p.target_name})")
    if not p.moves and not p.switch_only:
        typer.echo("  nothing is hosted there any more.")
    rows = [("step", "workload", "tenancy", "method", "servers", "from → to", "needs at the target", "downtime")]
    for m in p.moves:
        parts = " + ".join(f"{k} {_secs(v)}" for k, v in m.estimate.parts.items())
        downtime = "moved" if m.state.value == "moved" else f"~{_secs(m.estimate.downtime_seconds)}"
        rows.append(
            (
                str(m.step),
                m.workload,
                m.tenancy,
                m.method.value,
                str(len(m.servers)),
                f"{','.join(m.source_backends) or '-'} → "
                + ",".join(m.target_backends + (["?"] if any(x.target_backend is None for x in m.servers) else [])),
                m.needs.text(),
                downtime + (f" ({parts})" if parts and m.method.value != "live" else ""),
            )
        )
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    for row in rows:
        typer.echo("  " + "  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip())
    for m in p.moves:
        notes = []
        if m.state.value != "pending":
            notes.append(f"state: {m.state.value}")
        if m.after:
            notes.append(f"after {', '.join(m.after)} (shared networks)")
        if m.live_blocked and m.method.value != "live":
            notes.append(f"not live: {m.live_blocked}")
        if m.switches_tenancy:
            notes.append(f"then {m.tenancy}'s hosted_in switches to {p.target_dc}")
        for n in notes:
            typer.echo(f"     {m.workload}: {n}")
    for t in p.switch_only:
        typer.echo(f"  {t}: no workloads; its hosted_in switches to {p.target_dc}")
    if p.rooms:
        typer.echo(
            f"Capacity at {p.target_dc} (capacity × overcommit; used by the servers staying; taken by the moves):"
        )
        for r in p.rooms:
            typer.echo(
                f"  {r.backend}: {r.capacity.text()}; used {r.used.text()}; moves take {r.taken.text()}; "
                f"free after {r.free_after.text()}"
            )
    from dcctl.consolidate.plan import DOWNTIME_RULE, ORDER_RULE

    a = p.assumptions
    typer.echo(f"Order: {ORDER_RULE}.")
    typer.echo(
        f"Expected downtime: {DOWNTIME_RULE}. Figures ({a.basis}): {a.bandwidth_mib_s:g} MiB/s between hosts, "
        f"{a.disk_mib_s:g} MiB/s disk, {a.hash_mib_s:g} MiB/s sha256, {a.boot_seconds:g}s boot, guests writing "
        f"{a.dirty_mib_s:g} MiB/s."
    )
    pending = p.pending
    total = sum(m.estimate.downtime_seconds for m in pending)
    duration = sum(m.estimate.duration_seconds for m in pending)
    verdict = f"Refused: {len(p.diagnostics.errors)} errors." if p.refused else "Plan: ready to run."
    typer.echo(
        f"{verdict} {len(pending)} workloads to move; expected downtime {_secs(total)} in all, ~{_secs(duration)} "
        "of work."
    )


def show_move(m: MoveResult) -> None:
    if m.ok:
        downtime = "n/a (it was shut off)" if m.downtime_seconds == 0 else f"{m.downtime_seconds}s"
        typer.echo(
            f"{m.workload}: moved {m.method} {','.join(m.source_backends)} → {','.join(m.target_backends)} in "
            f"{_secs(m.seconds)}; downtime {downtime} (expected ~{_secs(m.expected_downtime_seconds)})"
        )
        for server, checks in sorted(m.servers.items()):
            for disk, sums in sorted(checks.get("digests", {}).items()):
                typer.echo(f"  {disk}: content digest equal at both ends ({sums['target'][:16]}…)")
            if "boot_marker" in checks:
                typer.echo(f"  {server}: {checks['boot_marker']}")
            if "live" in checks:
                live = checks["live"]
                typer.echo(
                    f"  {server}: migrated live in {live['seconds']:.1f}s, guest paused {live['downtime_ms']} ms"
                )
        if m.switched:
            typer.echo(f"  inventory: {m.switched}")
        return
    hint = f" — {m.hint}" if m.hint else ""
    typer.echo(f"{m.workload}: error[consolidate-move-failed]: {m.error}{hint}")
    if m.rolled_back:
        typer.echo("  rolled back: the source is as it was (running again if it ran), the target copy is removed, "
                   "the inventory is unchanged")  # fmt: skip
