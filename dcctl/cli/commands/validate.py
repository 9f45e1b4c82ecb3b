"""`dcctl validate`: schema, references and policy, every problem at once."""

from __future__ import annotations

from pathlib import Path

import typer

from dcctl.cli import exitcodes
from dcctl.cli.options import DEFAULT_INVENTORY, InventoryPath, Json
from dcctl.cli.output import diagnostics_json, emit_json, print_diagnostics


def validate(path: InventoryPath = Path(DEFAULT_INVENTORY), json_output: Json = False) -> int:
    """Check an inventory: YAML, schema, references across files and every policy rule.

    Prints every problem as FILE:LINE:COL: severity[RULE-ID]: message — hint. Exit 0 when there are no errors
    (warnings allowed), 1 when there are.
    """
    from dcctl import api

    result = api.validate(path)
    summary = result.summary()
    if json_output:
        emit_json({"valid": result.valid, "summary": summary, **diagnostics_json(result.diagnostics)})
    else:
        print_diagnostics(result.diagnostics)
        dcs = ", ".join(f"{n} {tier}" for tier, n in summary["data_centers"].items()) or "no"
        typer.echo(
            f"{path}: {summary['files']} files; data centers: {dcs}; "
            f"{summary['backends']} backends, {summary['tenancies']} tenancies, {summary['workloads']} workloads, "
            f"{summary['servers']} servers — {len(result.diagnostics.errors)} errors, "
            f"{len(result.diagnostics.warnings)} warnings"
        )
    return exitcodes.OK if result.valid else exitcodes.ERROR
