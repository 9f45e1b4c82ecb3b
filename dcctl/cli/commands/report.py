"""`dcctl report`: an evidence report for auditors (HTML, PDF, Markdown, JSON; Chinese or English)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from dcctl.cli import exitcodes
from dcctl.cli.commands.engine import State
from dcctl.cli.options import DEFAULT_INVENTORY, InventoryPath, Json
from dcctl.cli.output import emit_json

Format = Annotated[
    list[str] | None,
    typer.Option("--format", "-f", help="html, pdf, md or json (repeatable). Default: html."),
]
Lang = Annotated[str, typer.Option("--lang", help="zh (default) or en.")]
Out = Annotated[Path, typer.Option("--out", "-o", help="Directory to write report.<lang>.<format> into.")]
NoObserve = Annotated[
    bool, typer.Option("--no-observe", help="Do not observe backends live: what needs observing is 'not observed'.")
]


def report(
    path: InventoryPath = Path(DEFAULT_INVENTORY),
    format: Format = None,
    lang: Lang = "zh",
    out: Out = Path("report"),
    state: State = None,
    no_observe: NoObserve = False,
    json_output: Json = False,
) -> int:
    """Write an evidence report: estate, tenancies, network isolation, MLPS controls with evidence, DR measured
    against targets (GB/T 20988 level achieved), policy findings, drift, legacy data centers, and the audit trail
    with its verification. Facts that could not be observed are marked so, never invented."""
    from dcctl.report import facts, render

    doc = facts.gather(path, state=state, observe=not no_observe)
    written = render.write(doc, format or ["html"], lang, out)
    if json_output:
        emit_json(
            {
                "files": [str(p) for p in written],
                "observation": doc["observation"],
                "audit_verified": doc["audit"]["verification"]["ok"],
            }
        )
    else:
        for p in written:
            typer.echo(f"wrote {p}")
        counts = doc["observation"]["counts"]
        typer.echo(
            f"{counts['observed']} of {doc['observation']['backends']} backends observed; audit chain "
            + ("verified" if doc["audit"]["verification"]["ok"] else "BROKEN")
        )
    return exitcodes.OK
