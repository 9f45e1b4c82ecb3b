"""In-place edits of inventory YAML by source position: one scalar value replaced, every other byte kept.

An engineer's inventory carries comments, flow mappings aligned by hand and the order they chose; re-dumping the YAML
would lose all of that. An edit names where a key is written (the ``file:line:column`` every inventory object gives
with ``.where(key)``), the key, the value expected there and the new value. The file is parsed again (PyYAML's
events carry each scalar's exact character span), only the value's characters are replaced — its quoting style
kept — and the result is parsed once more: its events must equal the original's except for that one value. The file
is then replaced atomically (a temporary file in the same directory, renamed over it, mode kept).

An edit is refused, with the reason, when the file changed since the inventory was read (the value there is not the
expected one), when the key is not written at that place (a value that came through a merge key ``<<``), when the
value is an alias (``*name``) or carries an anchor (``&name``: other places would change with it), or when it is not
a plain or quoted scalar.
"""

from __future__ import annotations

import hashlib
import itertools
import os
import tempfile
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from dcctl.diagnostics import SourceRange
from dcctl.errors import DcctlError

_BOM = "\ufeff"
#: PyYAML's line breaks (its marks count lines by these)
_BREAKS = ("\r\n", "\r", "\n", "\x85", "\u2028", "\u2029")


class EditError(DcctlError):
    """An inventory file could not be edited safely; nothing was written."""


@dataclass(frozen=True)
class ScalarEdit:
    """Replace the value of ``key`` written at ``source`` (the key's own position) from ``old`` to ``new``."""

    source: SourceRange
    key: str
    old: str
    new: str


@dataclass(frozen=True)
class FileEdit:
    """What was written to one file: its SHA-256 before and after, and the edits applied."""

    path: str
    sha256_before: str
    sha256_after: str
    edits: tuple[ScalarEdit, ...]


def apply_edits(edits: Iterable[ScalarEdit], *, dry_run: bool = False) -> list[FileEdit]:
    """Apply the edits, file by file; each file is written only if all its edits are safe (else ``EditError``,
    and no file is written). ``dry_run`` checks everything and writes nothing."""
    by_file: dict[str, list[ScalarEdit]] = {}
    for e in edits:
        by_file.setdefault(e.source.path, []).append(e)
    planned: list[tuple[Path, bytes, bytes, FileEdit]] = []
    for path, file_edits in sorted(by_file.items()):
        raw = _read(Path(path))
        new_raw = edit_text(raw, file_edits, path)
        planned.append((Path(path), raw, new_raw, FileEdit(path, _sha(raw), _sha(new_raw), tuple(file_edits))))
    if not dry_run:
        for target, _, new_raw, _ in planned:
            _write_atomically(target, new_raw)
    return [p[3] for p in planned]


def edit_text(raw: bytes, edits: Sequence[ScalarEdit], path: str = "<text>") -> bytes:
    """The file's bytes with the edits applied (pure; raises ``EditError`` if any edit is unsafe)."""
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise EditError(f"{path} is not UTF-8 text ({exc.reason})") from None
    bom = text.startswith(_BOM)
    if bom:
        text = text[1:]
    before = _events(text, path)
    spans = []
    for e in edits:
        event = _value_event(before, text, e, path)
        spans.append((event.start_mark.index, event.end_mark.index, _render(event, e.new, path), e))
    spans.sort(key=lambda s: s[0])
    for (_, end, _, a), (start, _, _, b) in itertools.pairwise(spans):
        if start < end:
            raise EditError(f"{path}: two edits overlap ({a.key} at {a.source}, {b.key} at {b.source})")
    out = text
    for start, end, rendered, _ in reversed(spans):
        out = out[:start] + rendered + out[end:]
    _check_same_but_edited(before, _events(out, path), {(e.source.line, e.source.column): e for e in edits}, path)
    return ((_BOM if bom else "") + out).encode("utf-8")


# ------------------------------------------------------------------------------------------------------ parsing
def _events(text: str, path: str) -> list[Any]:
    try:
        return list(yaml.parse(text, Loader=yaml.SafeLoader))
    except yaml.YAMLError as exc:
        raise EditError(f"{path} is not valid YAML: {str(exc).splitlines()[0]}") from None


def _value_event(events: list[Any], text: str, edit: ScalarEdit, path: str) -> Any:
    """The event of the value of the key written at ``edit.source`` (a mapping key, by its 1-based line/column)."""
    where = f"{path}:{edit.source.line}:{edit.source.column}"
    for key_event, value_event in _mapping_pairs(events):
        mark = key_event.start_mark
        if (mark.line + 1, mark.column + 1) != (edit.source.line, edit.source.column):
            continue
        if not isinstance(key_event, yaml.ScalarEvent) or key_event.value != edit.key:
            found = key_event.value if isinstance(key_event, yaml.ScalarEvent) else type(key_event).__name__
            raise EditError(
                f"{where}: expected the key '{edit.key}' here but found '{found}'",
                hint="the key may come from a merge key (<<: *anchor): edit the anchored mapping by hand",
            )
        if isinstance(value_event, yaml.AliasEvent):
            raise EditError(
                f"{where}: '{edit.key}' is an alias (*{value_event.anchor}); changing it here would change the anchor",
                hint="edit the anchored value by hand",
            )
        if not isinstance(value_event, yaml.ScalarEvent):
            raise EditError(f"{where}: '{edit.key}' is not a single value (a mapping or a list)")
        if value_event.anchor is not None:
            raise EditError(
                f"{where}: the value of '{edit.key}' carries an anchor (&{value_event.anchor}) other places may use",
                hint="edit it by hand",
            )
        if value_event.style not in (None, "", "'", '"'):
            raise EditError(f"{where}: '{edit.key}' is a block scalar (| or >); edit it by hand")
        if value_event.value != edit.old:
            raise EditError(
                f"{where}: '{edit.key}' is '{value_event.value}' in the file, not '{edit.old}': the file changed since "
                "the inventory was read",
                hint="run the command again",
            )
        return value_event
    line = _line_text(text, edit.source.line)
    raise EditError(
        f"{where}: no key '{edit.key}' is written at this place (the line reads: {line.strip()[:80]!r})",
        hint="the file changed since the inventory was read, or the value comes from a merge key (<<)",
    )


def _mapping_pairs(events: list[Any]) -> Iterable[tuple[Any, Any]]:
    """(key event, value event) of every mapping entry in the stream; a value that is a collection is given by its
    start event."""
    # each frame: [is_mapping, expecting_key, pending_key_event]
    stack: list[list[Any]] = []
    for event in events:
        if isinstance(event, yaml.MappingEndEvent | yaml.SequenceEndEvent):
            stack.pop()
            continue
        if not isinstance(event, yaml.ScalarEvent | yaml.AliasEvent | yaml.MappingStartEvent | yaml.SequenceStartEvent):
            continue
        if stack and stack[-1][0]:
            frame = stack[-1]
            if frame[1]:
                frame[1], frame[2] = False, event
            else:
                frame[1] = True
                yield frame[2], event
        if isinstance(event, yaml.MappingStartEvent):
            stack.append([True, True, None])
        elif isinstance(event, yaml.SequenceStartEvent):
            stack.append([False, False, None])


def _render(event: Any, value: str, path: str) -> str:
    """``value`` written in the style of the scalar it replaces; it must read back as the same string."""
    if event.style == "'":
        rendered = "'" + value.replace("'", "''") + "'"
    elif event.style == '"':
        rendered = '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
    else:
        rendered = value
    probe = _events(f"k: {rendered}\n", path)
    scalars = [e for e in probe if isinstance(e, yaml.ScalarEvent)]
    resolved = yaml.safe_load(f"k: {rendered}\n")
    if len(scalars) != 2 or scalars[1].value != value or resolved != {"k": value}:
        raise EditError(f"'{value}' cannot be written as a plain value here", hint="quote it in the file first")
    return rendered


def _check_same_but_edited(
    before: list[Any], after: list[Any], edits: dict[tuple[int, int], ScalarEdit], path: str
) -> None:
    """The edited text must parse to the same events, except the edited values."""
    if len(before) != len(after):
        raise EditError(f"{path}: the edit would change the document's structure; nothing was written")
    targets = {}
    for key_event, value_event in _mapping_pairs(before):
        mark = key_event.start_mark
        if (mark.line + 1, mark.column + 1) in edits:
            targets[id(value_event)] = edits[(mark.line + 1, mark.column + 1)].new
    for old, new in zip(before, after, strict=True):
        if type(old) is not type(new):
            raise EditError(f"{path}: the edit would change the document's structure; nothing was written")
        want = targets.get(id(old), getattr(old, "value", None))
        fields = ("anchor", "tag", "implicit", "style", "flow_style")
        if getattr(new, "value", None) != want or any(getattr(old, f, None) != getattr(new, f, None) for f in fields):
            raise EditError(f"{path}: the edit would change more than the value asked; nothing was written")


def _line_text(text: str, line: int) -> str:
    """Line ``line`` (1-based), counting line breaks as PyYAML does."""
    for br in _BREAKS:  # "\r\n" before "\r"
        text = text.replace(br, "\n")
    parts = text.split("\n")
    return parts[line - 1] if 0 < line <= len(parts) else ""


# ------------------------------------------------------------------------------------------------------- files
def _read(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError as exc:
        raise EditError(f"cannot read {path}: {exc.strerror}") from None


def _sha(raw: bytes) -> str:
    return hashlib.sha256(raw).hexdigest()


def _write_atomically(path: Path, raw: bytes) -> None:
    """A temporary file in the same directory, flushed, renamed over the original (its mode kept)."""
    try:
        mode = path.stat().st_mode & 0o7777
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(raw)
                f.flush()
                os.fsync(f.fileno())
            Path(tmp).chmod(mode)
            Path(tmp).replace(path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
    except OSError as exc:
        raise EditError(f"cannot write {path}: {exc.strerror}") from None
