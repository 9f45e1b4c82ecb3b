"""Human views of plans, progress and results. JSON views are the objects' ``to_dict``; this is for people."""

from __future__ import annotations

import sys
import threading
from typing import TYPE_CHECKING, Any

import typer

from dcctl.engine.events import Event, EventKind
from dcctl.plan.model import Action, Change, Plan

if TYPE_CHECKING:  # the engine (and the inventory model under it) loads only for a command that runs it
    from dcctl.engine.apply import ApplyResult

SYMBOL = {
    Action.CREATE: ("+", "green"),
    Action.UPDATE: ("~", "yellow"),
    Action.REPLACE: ("-/+", "magenta"),
    Action.DELETE: ("-", "red"),
    Action.NOOP: (" ", "white"),
}


def _tty(err: bool = False) -> bool:
    stream = sys.stderr if err else sys.stdout
    return stream.isatty()


def _styled(text: str, colour: str, err: bool = False) -> str:
    return typer.style(text, fg=colour) if _tty(err) else text


def _short(value: Any) -> str:
    text = str(value)
    return text if len(text) <= 40 else text[:37] + "..."


def change_line(c: Change) -> str:
    symbol, colour = SYMBOL[c.action]
    detail = ""
    if c.action in (Action.UPDATE, Action.REPLACE) and c.after:
        before = c.before or {}
        detail = "  " + ", ".join(
            f"{f}: {_short(before.get(f))} → {_short(c.after.get(f))}" for f in c.changed_fields if f in c.after
        )
    where = f"  ({c.source})" if c.source and c.action is Action.CREATE else ""
    return (
        f"  {_styled(f'{symbol:>3} {c.action.value:<7}', colour)} {c.kind:<7} {c.key}  on {c.backend}"
        f"  [{c.reason.value}]{detail}{where}"
    )


def print_plan(plan: Plan, *, show_noop: bool = False) -> None:
    counts = plan.counts()
    title = "destroy" if plan.mode.value == "destroy" else "plan"
    typer.echo(
        f"dcctl {title} {plan.inventory}: {counts['create']} to create, {counts['update']} to update, "
        f"{counts['replace']} to replace, {counts['delete']} to delete, {counts['noop']} unchanged"
    )
    for c in plan.changes:
        if c.action is not Action.NOOP or show_noop:
            typer.echo(change_line(c))
    if not plan.has_changes:
        typer.echo("No changes: the backends match the inventory.")


class ProgressPrinter:
    """One plain line per finished step on stderr (readable in CI logs); colour only on a terminal."""

    def __init__(self) -> None:
        self.lock = threading.Lock()

    def __call__(self, event: Event) -> None:
        with self.lock:
            if event.kind is EventKind.CHANGE_FINISHED and event.change is not None:
                c = event.change
                symbol = SYMBOL[c.action][0]
                outcome = _styled("ok", "green", True) if event.ok else _styled("FAILED", "red", True)
                width = len(str(event.total))
                typer.echo(
                    f"[{event.done:>{width}}/{event.total}] {symbol} {c.action.value} {c.kind} {c.name} on {c.backend}"
                    f" … {outcome} {event.seconds:.1f}s" + (f": {event.message}" if event.message else ""),
                    err=True,
                )
            elif event.kind in (
                EventKind.CHANGE_RETRY,
                EventKind.LOCK_TAKEN_OVER,
                EventKind.CHANGE_SKIPPED,
                EventKind.WAITING,
            ):
                name = event.change.name if event.change else ""
                typer.echo(f"      {name} {event.message}".rstrip(), err=True)


def print_result(result: ApplyResult) -> None:
    counts = result.counts()
    line = (
        f"Apply {'complete' if result.ok else 'FAILED'}: {counts['succeeded']} succeeded, {counts['failed']} failed, "
        f"{counts['skipped']} skipped in {result.seconds:.1f}s (run {result.run_id})."
    )
    typer.echo(_styled(line, "green" if result.ok else "red"))
    for r in result.results:
        if not r.ok and not r.skipped:
            hint = f" — {r.hint}" if r.hint else ""
            typer.echo(f"  error[{r.change.kind}-failed]: {r.change.key} on {r.change.backend}: {r.error}{hint}")
