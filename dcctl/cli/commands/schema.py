"""`dcctl schema`: the JSON Schema of an inventory file, for editors (yaml-language-server) and other tools."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from dcctl.cli import exitcodes


def schema(
    out: Annotated[Path | None, typer.Option("--out", "-o", help="Write to this file instead of stdout.")] = None,
) -> int:
    """Print the JSON Schema of one inventory file.

    Point your editor at it, e.g. a first line '# yaml-language-server: $schema=dcctl-inventory.schema.json'.
    """
    from dcctl.inventory.model import InventoryFile

    document = InventoryFile.model_json_schema(mode="validation")
    document["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    text = json.dumps(document, ensure_ascii=False, indent=2) + "\n"
    if out is None:
        typer.echo(text, nl=False)
    else:
        out.write_text(text, encoding="utf-8")
        typer.echo(f"wrote {out}", err=True)
    return exitcodes.OK
