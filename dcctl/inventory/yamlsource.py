"""YAML bytes → plain Python data whose mappings remember where they came from.

PyYAML silently keeps the last of two equal keys and happily expands a billion-laughs document; this module does
neither. It composes the node graph (bounded memory: aliases are shared nodes), measures how large the document would
be once aliases are expanded, and only then constructs dicts and lists. Every mapping gets a ``Src`` under the key
``SRC_KEY`` so later stages can point at the file, line and column of any key. Nothing here raises for bad input:
problems become diagnostics.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import yaml
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from dcctl.diagnostics import Diagnostics, SourceRange

SRC_KEY = "__src__"

#: Upper bound on the nodes a document may expand to through aliases. A 10,000-server inventory is about
#: 150,000 nodes; anything over ten times larger is an attack or an accident.
MAX_EXPANDED_NODES = 2_000_000
#: Refuse to parse files larger than this (a province inventory is a few MiB).
MAX_FILE_BYTES = 64 * 1024 * 1024

_Loader: Any = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
_STR_TAG = "tag:yaml.org,2002:str"
_MERGE_TAG = "tag:yaml.org,2002:merge"
_SEQ_TAG = "tag:yaml.org,2002:seq"
_MAP_TAG = "tag:yaml.org,2002:map"


@dataclass(frozen=True)
class Src:
    """Where a mapping starts, and where each of its keys (and the items of its sequence values) are."""

    path: str
    line: int
    column: int
    keys: dict[str, tuple[int, int]] = field(default_factory=dict)
    items: dict[str, tuple[tuple[int, int], ...]] = field(default_factory=dict)

    def at(self, key: str | None = None, index: int | None = None) -> SourceRange:
        """The source of this mapping, of one of its keys, or of one item of a sequence-valued key."""
        if key is not None:
            if index is not None and key in self.items and 0 <= index < len(self.items[key]):
                line, col = self.items[key][index]
                return SourceRange(self.path, line, col)
            if key in self.keys:
                line, col = self.keys[key]
                return SourceRange(self.path, line, col)
        return SourceRange(self.path, self.line, self.column)


def src_of(data: object) -> Src | None:
    """The ``Src`` of a constructed mapping, if it has one."""
    if isinstance(data, dict):
        src = data.get(SRC_KEY)
        if isinstance(src, Src):
            return src
    return None


def _pos(node: Node) -> tuple[int, int]:
    return (node.start_mark.line + 1, node.start_mark.column + 1)


class _Builder:
    def __init__(self, path: str, diags: Diagnostics) -> None:
        self.path = path
        self.diags = diags
        self.constructor = yaml.constructor.SafeConstructor()

    def where(self, node: Node) -> SourceRange:
        line, col = _pos(node)
        return SourceRange(self.path, line, col)

    # -- alias bomb and recursion guard ------------------------------------------------------------------------
    def expanded_size(self, root: Node) -> int | None:
        """Number of nodes after alias expansion, or None (with a diagnostic) if it is recursive or too large."""
        sizes: dict[int, int] = {}
        active: set[int] = set()
        # Iterative post-order walk: documents can nest deeper than Python's recursion limit.
        stack: list[tuple[Node, bool]] = [(root, False)]
        while stack:
            node, done = stack.pop()
            nid = id(node)
            if done:
                active.discard(nid)
                total = 1
                for child in _children(node):
                    total += sizes[id(child)]
                    if total > MAX_EXPANDED_NODES:
                        self.diags.error(
                            "yaml-alias-bomb",
                            f"this document expands to more than {MAX_EXPANDED_NODES:,} nodes through aliases",
                            hint="aliases (*name) may reuse a block, but not multiply it exponentially; "
                            "write the data out or simplify the anchors",
                            source=self.where(node),
                        )
                        return None
                sizes[nid] = total
                continue
            if nid in sizes:
                continue
            if nid in active:
                self.diags.error(
                    "yaml-recursive-alias",
                    "an alias refers to the node that contains it (a recursive structure)",
                    hint="an anchor (&name) cannot be used inside its own value",
                    source=self.where(node),
                )
                return None
            active.add(nid)
            stack.append((node, True))
            for child in _children(node):
                if id(child) not in sizes:
                    stack.append((child, False))
        return sizes[id(root)]

    # -- construction ------------------------------------------------------------------------------------------
    def build(self, node: Node, depth: int = 0) -> Any:
        if depth > 200:
            self.diags.error("yaml-too-deep", "the document nests more than 200 levels", source=self.where(node))
            return None
        if isinstance(node, ScalarNode):
            return self.scalar(node)
        if node.tag not in (_SEQ_TAG, _MAP_TAG):
            self.diags.error(
                "yaml-bad-value",
                f"unsupported YAML tag {node.tag}",
                hint="inventories are plain YAML: remove the tag",
                source=self.where(node),
            )
            return None
        if isinstance(node, SequenceNode):
            return [self.build(child, depth + 1) for child in node.value]
        if isinstance(node, MappingNode):
            return self.mapping(node, depth)
        return None  # pragma: no cover - yaml has no other node kinds

    def scalar(self, node: ScalarNode) -> Any:
        if node.tag == _STR_TAG:
            return node.value
        try:
            return self.constructor.construct_object(node, deep=True)
        except yaml.YAMLError as exc:
            self.diags.error(
                "yaml-bad-value",
                f"cannot read this value ({_first_line(exc)})",
                hint="quote it to make it a string, or drop the unsupported tag",
                source=self.where(node),
            )
            return None

    def mapping(self, node: MappingNode, depth: int) -> dict[str, Any]:
        line, col = _pos(node)
        keys: dict[str, tuple[int, int]] = {}
        items: dict[str, tuple[tuple[int, int], ...]] = {}
        out: dict[str, Any] = {}
        merged: dict[str, Any] = {}
        for key_node, value_node in node.value:
            if key_node.tag == _MERGE_TAG:
                self.merge(value_node, merged, depth)
                continue
            if not isinstance(key_node, ScalarNode):
                self.diags.error(
                    "yaml-bad-key",
                    "a key must be a plain word, not a list or a mapping",
                    source=self.where(key_node),
                )
                continue
            key = str(key_node.value)
            if key in keys:
                first = keys[key][0]
                self.diags.error(
                    "yaml-duplicate-key",
                    f"key '{key}' appears twice in this mapping (first on line {first})",
                    hint="remove one of them; YAML would silently keep only the last",
                    source=self.where(key_node),
                )
            keys[key] = _pos(key_node)
            if isinstance(value_node, SequenceNode):
                items[key] = tuple(_pos(child) for child in value_node.value)
            out[key] = self.build(value_node, depth + 1)
        for key, value in merged.items():
            out.setdefault(key, value)
        out[SRC_KEY] = Src(self.path, line, col, keys, items)
        return out

    def merge(self, value_node: Node, into: dict[str, Any], depth: int) -> None:
        """YAML merge keys (``<<: *base``): explicit keys win, earlier merged mappings win over later ones."""
        sources = value_node.value if isinstance(value_node, SequenceNode) else [value_node]
        for source in sources:
            if not isinstance(source, MappingNode):
                self.diags.error(
                    "yaml-bad-merge",
                    "'<<' must merge a mapping or a list of mappings",
                    source=self.where(source),
                )
                continue
            for key, value in self.mapping(source, depth + 1).items():
                if key != SRC_KEY:
                    into.setdefault(key, value)


def _children(node: Node) -> list[Node]:
    if isinstance(node, SequenceNode):
        return list(node.value)
    if isinstance(node, MappingNode):
        return [n for pair in node.value for n in pair]
    return []


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__


def load_yaml(path: str, raw: bytes, diags: Diagnostics) -> Any:
    """Parse one YAML file into data (None if unreadable). Every problem, fatal or not, goes to ``diags``."""
    if len(raw) > MAX_FILE_BYTES:
        diags.error(
            "yaml-file-too-large",
            f"file is {len(raw):,} bytes; the limit is {MAX_FILE_BYTES:,}",
            hint="split the inventory into one file per city",
            source=SourceRange(path),
        )
        return None
    if raw.startswith(b"\xef\xbb\xbf"):
        raw = raw[3:]
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        diags.error(
            "yaml-not-utf8",
            f"byte {exc.start} is not valid UTF-8: this does not look like a YAML text file",
            hint="save the file as UTF-8 text (Chinese names are fine in UTF-8)",
            source=SourceRange(path, line, 1),
        )
        return None
    if "\x00" in text:
        line = text[: text.index("\x00")].count("\n") + 1
        diags.error(
            "yaml-not-text",
            "the file contains a NUL byte: this is binary data, not YAML",
            hint="remove the file or replace it with a YAML inventory file",
            source=SourceRange(path, line, 1),
        )
        return None
    try:
        root = yaml.compose(text, Loader=_Loader)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line, col = (mark.line + 1, mark.column + 1) if mark else (0, 0)
        problem = exc.problem or _first_line(exc)
        hint = "check indentation and quoting around this line"
        if "expected a single document" in str(exc):
            problem = "this file holds more than one YAML document ('---')"
            hint = "put each document in its own file"
        diags.error("yaml-syntax", f"YAML syntax error: {problem}", hint=hint, source=SourceRange(path, line, col))
        return None
    except yaml.YAMLError as exc:  # reader errors: control characters and the like
        mark = getattr(exc, "problem_mark", None) or getattr(exc, "mark", None)
        line = getattr(mark, "line", -1) + 1
        diags.error(
            "yaml-syntax",
            f"YAML cannot read this file: {_first_line(exc)}",
            hint="the file must be printable UTF-8 text",
            source=SourceRange(path, line, 1),
        )
        return None
    except RecursionError:
        diags.error("yaml-too-deep", "the document nests too deeply to read", source=SourceRange(path, 1, 1))
        return None
    if root is None:
        diags.error(
            "yaml-empty-file",
            "the file is empty",
            hint="add inventory sections (province, catalog, data_centers, tenancies) or delete the file",
            source=SourceRange(path, 1, 1),
        )
        return None
    builder = _Builder(path, diags)
    if builder.expanded_size(root) is None:
        return None
    return builder.build(root)
