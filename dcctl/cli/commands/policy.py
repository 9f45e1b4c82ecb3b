"""`dcctl policy list|explain`: the rules dcctl enforces, with the source each one cites."""

from __future__ import annotations

import difflib
from typing import Annotated

import typer

from dcctl.cli import exitcodes
from dcctl.cli.options import Json
from dcctl.cli.output import emit_json
from dcctl.errors import UsageError

app = typer.Typer(help="The policy rules: what dcctl checks, and why.", no_args_is_help=True)


@app.command("list")
def list_rules(json_output: Json = False) -> int:
    """List every rule: id, severity and title."""
    from dcctl.policy import RULES

    rules = sorted(RULES.values(), key=lambda r: r.id)
    if json_output:
        emit_json(
            {
                "rules": [
                    {
                        "id": r.id,
                        "severity": r.severity.value,
                        "title": r.title,
                        "cites": r.cites,
                        "rationale": r.rationale,
                    }
                    for r in rules
                ]
            }
        )
        return exitcodes.OK
    width = max(len(r.id) for r in rules)
    for r in rules:
        typer.echo(f"{r.id:<{width}}  {r.severity.value:<7}  {r.title}")
    return exitcodes.OK


@app.command("explain")
def explain(rule_id: Annotated[str, typer.Argument(help="A rule id from 'dcctl policy list'.")]) -> int:
    """Explain one rule: what it checks, why, and the source it cites."""
    from dcctl.policy import RULES

    r = RULES.get(rule_id)
    if r is None:
        close = difflib.get_close_matches(rule_id, list(RULES), n=3, cutoff=0.4)
        raise UsageError(
            f"no rule '{rule_id}'",
            hint=("did you mean " + " or ".join(close) + "?") if close else "see 'dcctl policy list'",
        )
    typer.echo(f"{r.id} ({r.severity.value}): {r.title}\n")
    typer.echo(r.rationale + "\n")
    typer.echo(f"Source: {r.cites}")
    return exitcodes.OK
