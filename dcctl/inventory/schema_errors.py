"""Pydantic validation errors → diagnostics a person can act on: the key's file:line, what was expected, a fix."""

from __future__ import annotations

import difflib
import types
import typing
from collections.abc import Sequence
from typing import Any

from pydantic import BaseModel
from pydantic_core import ErrorDetails

from dcctl.diagnostics import Diagnostic, Severity, SourceRange
from dcctl.inventory.model import ID_PATTERN
from dcctl.inventory.yamlsource import SRC_KEY, Src, src_of

Loc = Sequence[int | str]

_EXPECTED = {
    "int_type": "a whole number",
    "int_parsing": "a whole number",
    "int_from_float": "a whole number",
    "float_type": "a number",
    "float_parsing": "a number",
    "string_type": "a string (quote it if it looks like a number)",
    "bool_type": "true or false",
    "bool_parsing": "true or false",
    "list_type": "a list (items starting with '- ')",
    "dict_type": "a mapping (key: value lines)",
    "model_type": "a mapping (key: value lines)",
    "model_attributes_type": "a mapping (key: value lines)",
    "timedelta_type": "a duration like 15m, 4h or 2d",
    "none_required": "nothing",
}


def _models_in(annotation: Any) -> list[type[BaseModel]]:
    """The model classes an annotation can hold: X, list[X], X | None, Annotated[X | Y, ...]."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return [annotation]
    out: list[type[BaseModel]] = []
    origin = typing.get_origin(annotation)
    if origin is typing.Annotated:
        return _models_in(typing.get_args(annotation)[0])
    if origin in (list, tuple, typing.Union, types.UnionType):
        for arg in typing.get_args(annotation):
            out.extend(_models_in(arg))
    return out


def _discriminator_values(model: type[BaseModel]) -> list[str]:
    field = model.model_fields.get("type")
    if field is None:
        return []
    return [str(v) for v in typing.get_args(field.annotation)]


def models_at(root: type[BaseModel], loc: Loc) -> list[type[BaseModel]]:
    """The candidate model classes of the mapping that ``loc`` points into."""
    candidates = [root]
    for elem in loc:
        if isinstance(elem, int):
            continue
        nxt: list[type[BaseModel]] = []
        for model in candidates:
            field = model.model_fields.get(elem)
            if field is not None:
                nxt = _models_in(field.annotation)
                break
        else:
            narrowed = [m for m in candidates if elem in _discriminator_values(m)]
            if narrowed:
                nxt = narrowed
        if not nxt:
            return candidates
        candidates = nxt
    return candidates


def locate(data: Any, loc: Loc, fallback: SourceRange) -> tuple[SourceRange, Loc]:
    """The most precise source for ``loc`` within constructed YAML ``data`` (the key's line if it exists), and
    the path as the user wrote it (without pydantic's union tags)."""
    best = fallback
    shown: list[int | str] = []
    cur = data
    parent: tuple[Src, str] | None = None  # the mapping and key that hold ``cur``
    for i, elem in enumerate(loc):
        last = i == len(loc) - 1
        if isinstance(cur, dict) and isinstance(elem, str):
            if elem in cur:
                src = src_of(cur)
                if src:
                    best = src.at(elem)
                    parent = (src, elem)
                cur = cur[elem]
                shown.append(elem)
            elif last:
                shown.append(elem)
            continue
        if isinstance(cur, list) and isinstance(elem, int) and 0 <= elem < len(cur):
            shown.append(elem)
            cur = cur[elem]
            inner = src_of(cur)
            if inner:
                best = inner.at()
            elif parent is not None:
                best = parent[0].at(parent[1], elem)
            parent = None
            continue
        shown.extend(loc[i:])
        break
    return best, tuple(shown)


def _shown(value: Any) -> str:
    if isinstance(value, dict):
        return "a mapping"
    if isinstance(value, list):
        return "a list"
    if value is None:
        return "nothing (null)"
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _dotted(loc: Loc) -> str:
    out = ""
    for elem in loc:
        out += f"[{elem}]" if isinstance(elem, int) else (f".{elem}" if out else str(elem))
    return out


def translate(
    error: ErrorDetails, root: type[BaseModel], data: Any, fallback: SourceRange, prefix: Loc = ()
) -> Diagnostic:
    """One pydantic error → one diagnostic. ``data`` is the YAML mapping validated against ``root``."""
    loc: Loc = tuple(error["loc"])
    kind = error["type"]
    source, shown = locate(data, loc, fallback)
    key = next((str(e) for e in reversed(loc) if isinstance(e, str)), "")
    where = _dotted(tuple(prefix) + tuple(shown))
    value = error.get("input")
    ctx = error.get("ctx") or {}

    if kind == "extra_forbidden":
        allowed = sorted({f for m in models_at(root, loc[:-1]) for f in m.model_fields})
        close = difflib.get_close_matches(key, allowed, n=1, cutoff=0.6)
        hint = f"did you mean '{close[0]}'?" if close else f"allowed keys here: {', '.join(allowed)}"
        if key == SRC_KEY:  # pragma: no cover - defensive: SRC_KEY is always popped
            hint = ""
        return Diagnostic(Severity.ERROR, "schema-unknown-key", f"unknown key '{key}' ({where})", hint, source)
    if kind == "missing":
        field = None
        for model in models_at(root, loc[:-1]):
            field = model.model_fields.get(key)
            if field:
                break
        described = f": {field.description}" if field and field.description else ""
        return Diagnostic(
            Severity.ERROR,
            "schema-missing-key",
            f"missing required key '{key}' ({where})",
            f"add '{key}:'{described}",
            source,
        )
    if kind in ("union_tag_invalid", "union_tag_not_found"):
        expected = ctx.get("expected_tags", "")
        if kind == "union_tag_not_found":
            msg = f"missing key 'type' ({where})"
        else:
            msg = f"unknown type {_shown(ctx.get('tag'))} ({where})"
        return Diagnostic(Severity.ERROR, "schema-type", msg, f"'type' must be one of: {expected}", source)
    if kind in ("literal_error", "enum"):
        expected = ctx.get("expected", "")
        close = difflib.get_close_matches(str(value), [e.strip(" '") for e in str(expected).split(",")], n=1)
        hint = f"did you mean '{close[0]}'?" if close else f"use one of: {expected}"
        return Diagnostic(Severity.ERROR, "schema-value", f"'{key}' cannot be {_shown(value)} ({where})", hint, source)
    if kind == "string_pattern_mismatch" and ctx.get("pattern") == ID_PATTERN:
        return Diagnostic(
            Severity.ERROR,
            "schema-value",
            f"{_shown(value)} is not a valid id ({where})",
            "ids use lower-case letters, digits and '-', start with a letter, at most 63 characters",
            source,
        )
    if kind in _EXPECTED:
        return Diagnostic(
            Severity.ERROR,
            "schema-type",
            f"'{key}' must be {_EXPECTED[kind]}, got {_shown(value)} ({where})",
            "",
            source,
        )
    message = str(error["msg"]).removeprefix("Value error, ")
    return Diagnostic(Severity.ERROR, "schema-value", f"'{key}': {message} ({where})", "", source)
