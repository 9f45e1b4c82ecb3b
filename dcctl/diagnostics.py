"""Problems found in user input, as data: severity, code, message, hint and the YAML source they point at."""

from __future__ import annotations

import enum
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field


class Severity(enum.StrEnum):
    ERROR = "error"
    WARNING = "warning"


@dataclass(frozen=True, order=True)
class SourceRange:
    """A place in an inventory file; line and column are 1-based."""

    path: str
    line: int = 0
    column: int = 0

    def __str__(self) -> str:
        if self.line <= 0:
            return self.path
        return f"{self.path}:{self.line}:{self.column}"


@dataclass(frozen=True)
class Diagnostic:
    """One problem, for a person (rendered as text) and for tools (rendered as JSON)."""

    severity: Severity
    code: str
    message: str
    hint: str = ""
    source: SourceRange | None = None
    address: str = ""

    def sort_key(self) -> tuple[str, int, int, str]:
        src = self.source or SourceRange("")
        return (src.path, src.line, src.column, self.code)

    def to_dict(self) -> dict[str, object]:
        return {
            "severity": self.severity.value,
            "code": self.code,
            "message": self.message,
            "hint": self.hint,
            "file": self.source.path if self.source else None,
            "line": self.source.line if self.source else None,
            "column": self.source.column if self.source else None,
            "address": self.address or None,
        }


@dataclass
class Diagnostics:
    """An ordered collection of diagnostics: warnings travel with errors so all problems come out in one pass."""

    items: list[Diagnostic] = field(default_factory=list)

    def add(
        self,
        severity: Severity,
        code: str,
        message: str,
        *,
        hint: str = "",
        source: SourceRange | None = None,
        address: str = "",
    ) -> None:
        self.items.append(Diagnostic(severity, code, message, hint, source, address))

    def error(
        self, code: str, message: str, *, hint: str = "", source: SourceRange | None = None, address: str = ""
    ) -> None:
        self.add(Severity.ERROR, code, message, hint=hint, source=source, address=address)

    def warning(
        self, code: str, message: str, *, hint: str = "", source: SourceRange | None = None, address: str = ""
    ) -> None:
        self.add(Severity.WARNING, code, message, hint=hint, source=source, address=address)

    def extend(self, other: Iterable[Diagnostic]) -> None:
        self.items.extend(other)

    def __iter__(self) -> Iterator[Diagnostic]:
        return iter(self.items)

    def __len__(self) -> int:
        return len(self.items)

    @property
    def errors(self) -> list[Diagnostic]:
        return [d for d in self.items if d.severity is Severity.ERROR]

    @property
    def warnings(self) -> list[Diagnostic]:
        return [d for d in self.items if d.severity is Severity.WARNING]

    def has_errors(self) -> bool:
        return any(d.severity is Severity.ERROR for d in self.items)

    def sorted(self) -> list[Diagnostic]:
        return sorted(self.items, key=Diagnostic.sort_key)
