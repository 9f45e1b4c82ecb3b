"""Inventory path (a directory of YAML files, or one file) → ``Inventory`` plus every problem found, never an exception.

Each file may hold any of the sections ``province`` (in exactly one file), ``catalog``, ``data_centers`` and
``tenancies``; objects refer to each other by id across files. Every list item is validated on its own, so one
broken tenancy does not hide the problems of the others.
"""

from __future__ import annotations

import difflib
import hashlib
import os
import re
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError

from dcctl.diagnostics import Diagnostics, SourceRange
from dcctl.inventory.inventory import Inventory
from dcctl.inventory.model import Catalog, DataCenter, InventoryObject, Province, Tenancy
from dcctl.inventory.schema_errors import translate
from dcctl.inventory.yamlsource import SRC_KEY, load_yaml, src_of

SECTIONS = ("province", "catalog", "data_centers", "tenancies")
YAML_SUFFIXES = (".yaml", ".yml")

M = TypeVar("M", bound=BaseModel)

_SECRET_WORDS = ("password", "passwd", "secret", "token", "private_key", "api_key", "apikey", "access_key")
_URL_CREDENTIAL = re.compile(r"^[a-zA-Z][a-zA-Z0-9+.-]*://[^/@\s:]+:([^/@\s]+)@")


def is_secret_key(key: str) -> bool:
    lowered = key.lower().replace("-", "_")
    return any(word in lowered for word in _SECRET_WORDS)


def strip_secrets(data: Any) -> list[tuple[SourceRange, str]]:
    """Remove credentials from constructed YAML: keys that name one are dropped, passwords inside URLs are blanked.
    Returns where each was and what it was (for the secrets rule), never the secret itself."""
    found: list[tuple[SourceRange, str]] = []
    stack = [data]
    while stack:
        cur = stack.pop()
        if isinstance(cur, dict):
            src = src_of(cur)
            for key in [k for k in cur if k != SRC_KEY]:
                where = src.at(key) if src else SourceRange("")
                value = cur[key]
                if is_secret_key(key):
                    found.append((where, f"'{key}' looks like a credential"))
                    del cur[key]
                elif isinstance(value, str) and (match := _URL_CREDENTIAL.match(value)):
                    found.append((where, f"the URL in '{key}' carries a password"))
                    cur[key] = value[: match.start(1)] + "REDACTED" + value[match.end(1) :]
                else:
                    stack.append(value)
        elif isinstance(cur, list):
            stack.extend(cur)
    return found


def discover(path: Path, diags: Diagnostics) -> list[Path]:
    """The inventory's YAML files, sorted; hidden files and directories are skipped."""
    if not path.exists():
        diags.error(
            "inventory-not-found",
            f"no inventory at '{path}'",
            hint="pass a directory of YAML files (e.g. inventories/lab) or one YAML file",
            source=SourceRange(str(path)),
        )
        return []
    if path.is_file():
        return [path]
    files: list[Path] = []
    for dirpath, dirnames, filenames in os.walk(path):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        files.extend(
            Path(dirpath) / f for f in sorted(filenames) if f.endswith(YAML_SUFFIXES) and not f.startswith(".")
        )
    if not files:
        diags.error(
            "inventory-empty",
            f"'{path}' holds no .yaml or .yml files",
            hint="an inventory is a directory with province.yaml and one file per city",
            source=SourceRange(str(path)),
        )
    return sorted(files)


def _validate(
    model: type[M], data: Any, source: SourceRange, diags: Diagnostics, prefix: tuple[int | str, ...]
) -> M | None:
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        for err in exc.errors(include_url=False):
            diags.extend([translate(err, model, data, source, prefix)])
        return None


def _ids(items: Any) -> set[str]:
    """The ids written in a list of mappings, whatever else the list holds."""
    if not isinstance(items, list):
        return set()
    return {item["id"] for item in items if isinstance(item, dict) and isinstance(item.get("id"), str)}


class _Loader:
    def __init__(self, root: Path, diags: Diagnostics) -> None:
        self.inv = Inventory(root=str(root))
        self.diags = diags
        self.first_seen: dict[tuple[str, str], SourceRange | None] = {}
        self.province_written = False

    def note_seen(self, kind: str, ids: Iterable[str]) -> None:
        self.inv.seen.setdefault(kind, set()).update(ids)

    def unique(self, kind: str, key: str, source: SourceRange | None, label: str) -> bool:
        """Record that ``kind`` ``key`` is defined at ``source``; report and refuse a second definition."""
        if (kind, key) in self.first_seen:
            first = self.first_seen[(kind, key)]
            self.diags.error(
                "id-duplicate",
                f"{label} '{key}' is defined twice (first at {first})",
                hint=f"give each {label} its own id",
                source=source,
            )
            return False
        self.first_seen[(kind, key)] = source
        return True

    def load_file(self, path: Path, display: str) -> bytes:
        try:
            raw = path.read_bytes()
        except OSError as exc:
            self.diags.error(
                "inventory-unreadable",
                f"cannot read the file: {exc.strerror or exc}",
                source=SourceRange(display),
            )
            return b""
        self.load_document(raw, display)
        return raw

    def load_document(self, raw: bytes, display: str) -> None:
        """Parse one file's bytes and add its sections to the inventory."""
        data = load_yaml(display, raw, self.diags)
        if data is None:
            return
        here = SourceRange(display, 1, 1)
        if not isinstance(data, dict):
            self.diags.error(
                "schema-type",
                "the top level of an inventory file must be a mapping of sections",
                hint=f"start with one of: {', '.join(s + ':' for s in SECTIONS)}",
                source=here,
            )
            return
        self.inv.secret_keys.extend(strip_secrets(data))
        src = src_of(data)
        for key, value in data.items():
            if key == SRC_KEY:
                continue
            if key not in SECTIONS and src is not None:
                close = difflib.get_close_matches(key, SECTIONS, n=1, cutoff=0.6)
                self.diags.error(
                    "schema-unknown-key",
                    f"unknown section '{key}'",
                    hint=f"did you mean '{close[0]}'?" if close else f"sections are: {', '.join(SECTIONS)}",
                    source=src.at(key),
                )
            elif key in SECTIONS:
                self.section(key, value, src.at(key) if src else here)

    def section(self, name: str, value: Any, source: SourceRange) -> None:
        if name == "province":
            self.province_written = True
            self.note_seen("city", _ids(value.get("cities") if isinstance(value, dict) else None))
            province = _validate(Province, value, source, self.diags, ("province",))
            if province is not None and self.unique("province", "province", source, "province"):
                self.inv.province = province
                for city in province.cities:
                    if self.unique("city", city.id, city.where(), "city"):
                        self.inv.cities[city.id] = city
            return
        if name == "catalog":
            if isinstance(value, dict):
                for kind in ("flavors", "images"):
                    self.note_seen(kind[:-1], _ids(value.get(kind)))
            catalog = _validate(Catalog, value, source, self.diags, ("catalog",))
            if catalog is not None:
                self.inv.catalogs.append(catalog)
                for flavor in catalog.flavors:
                    if self.unique("flavor", flavor.id, flavor.where(), "flavor"):
                        self.inv.flavors[flavor.id] = flavor
                for image in catalog.images:
                    if self.unique("image", image.id, image.where(), "image"):
                        self.inv.images[image.id] = image
            return
        if not isinstance(value, list):
            self.diags.error(
                "schema-type",
                f"'{name}' must be a list (items starting with '- '), got {type(value).__name__}",
                source=source,
            )
            return
        add: Callable[[Any], None] = self.add_data_center if name == "data_centers" else self.add_tenancy
        model: type[InventoryObject] = DataCenter if name == "data_centers" else Tenancy
        self.note_seen(name[:-1] if name == "data_centers" else "tenancy", _ids(value))
        for index, item in enumerate(value):
            self.note_nested_ids(name, item)
            item_src = src_of(item)
            obj = _validate(model, item, item_src.at() if item_src else source, self.diags, (name, index))
            if obj is not None:
                add(obj)

    def note_nested_ids(self, section: str, item: Any) -> None:
        if not isinstance(item, dict):
            return
        if section == "data_centers":
            self.note_seen("backend", _ids(item.get("backends")))
        else:
            self.note_seen("workload", _ids(item.get("workloads")))

    def add_data_center(self, dc: DataCenter) -> None:
        if not self.unique("data_center", dc.id, dc.where(), "data center"):
            return
        self.inv.data_centers[dc.id] = dc
        for backend in dc.backends:
            if self.unique("backend", backend.id, backend.where(), "backend"):
                self.inv.backends[backend.id] = (dc, backend)

    def add_tenancy(self, tenancy: Tenancy) -> None:
        if not self.unique("tenancy", tenancy.id, tenancy.where(), "tenancy"):
            return
        self.inv.tenancies[tenancy.id] = tenancy
        networks: set[str] = set()
        for network in tenancy.networks:
            if network.id in networks:
                self.diags.error(
                    "id-duplicate",
                    f"network '{network.id}' is defined twice in tenancy '{tenancy.id}'",
                    source=network.where(),
                )
            networks.add(network.id)
        for workload in tenancy.workloads:
            if self.unique("workload", workload.id, workload.where(), "workload"):
                self.inv.workloads[workload.id] = (tenancy, workload)
            groups: set[str] = set()
            for group in workload.servers:
                if group.name in groups:
                    self.diags.error(
                        "id-duplicate",
                        f"server group '{group.name}' appears twice in workload '{workload.id}'",
                        source=group.where(),
                    )
                groups.add(group.name)


def load_inventory(path: str | Path) -> tuple[Inventory, Diagnostics]:
    """Load and validate an inventory: schema, duplicate ids and references. Policy is checked separately."""
    from dcctl.inventory.references import check_references

    root = Path(path)
    diags = Diagnostics()
    loader = _Loader(root, diags)
    digest = hashlib.sha256()
    files = discover(root, diags)
    shown: list[str] = []
    for file in files:
        display = str(file) if not root.is_dir() else os.path.relpath(file, Path.cwd())
        if display.startswith(".." + os.sep + ".."):
            display = str(file)
        shown.append(display)
        raw = loader.load_file(file, display)
        digest.update(display.encode() + b"\0" + raw + b"\0")
    inv = loader.inv
    inv.files = tuple(shown)
    inv.digest = digest.hexdigest()
    if files and not loader.province_written and not diags.has_errors():
        diags.error(
            "province-missing",
            "no file of this inventory has a 'province' section",
            hint="add province.yaml with the province's id, name, cities and dr_site",
            source=SourceRange(str(root)),
        )
    check_references(inv, diags)
    return inv, diags
