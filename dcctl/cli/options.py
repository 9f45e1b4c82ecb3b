"""Options shared by several commands, defined once."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated

import typer

DEFAULT_INVENTORY = os.environ.get("DCCTL_INVENTORY", "inventories/lab")

InventoryPath = Annotated[
    Path,
    typer.Argument(
        help="Inventory directory (one YAML file per city) or a single YAML file. "
        "Default: $DCCTL_INVENTORY, else inventories/lab.",
        show_default=False,
    ),
]
Json = Annotated[bool, typer.Option("--json", help="Print one JSON document on stdout instead of text.")]
