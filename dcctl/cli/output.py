"""Rendering for people (plain lines; colour only on a terminal) and for tools (one JSON document on stdout)."""

from __future__ import annotations

import json
import os
import sys
from typing import Any

import typer

from dcctl.diagnostics import Diagnostic, Diagnostics, Severity

JSON_FORMAT_VERSION = 1


def _colour() -> bool:
    return sys.stdout.isatty() and "NO_COLOR" not in os.environ and os.environ.get("TERM") != "dumb"


def format_diagnostic(d: Diagnostic) -> str:
    """``FILE:LINE:COL: error[RULE-ID]: message — hint``, the format editors and CI annotations understand."""
    where = f"{d.source}: " if d.source else ""
    label = f"{d.severity.value}[{d.code}]"
    if _colour():
        label = typer.style(label, fg="red" if d.severity is Severity.ERROR else "yellow", bold=True)
    hint = f" — {d.hint}" if d.hint else ""
    return f"{where}{label}: {d.message}{hint}"


def print_diagnostics(diags: Diagnostics, *, err: bool = False) -> None:
    for d in diags.sorted():
        typer.echo(format_diagnostic(d), err=err)


def emit_json(document: dict[str, Any]) -> None:
    """Exactly one JSON document on stdout, nothing else."""
    payload = {"format_version": JSON_FORMAT_VERSION, **document}
    sys.stdout.write(json.dumps(payload, ensure_ascii=False, indent=2, default=str) + "\n")


def diagnostics_json(diags: Diagnostics) -> dict[str, Any]:
    return {
        "errors": len(diags.errors),
        "warnings": len(diags.warnings),
        "diagnostics": [d.to_dict() for d in diags.sorted()],
    }
