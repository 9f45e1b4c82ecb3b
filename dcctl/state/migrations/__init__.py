"""Versioned schema migrations, one SQL file per version and dialect: ``NNNN_name.<sqlite|postgres>.sql``.

Version N of every dialect describes the same tables and columns (only the types differ), so a state moves between
backends row for row. A store records the version it reached in ``meta.schema_version``; opening it applies the
missing versions in order, inside one writer's transaction, and refuses a version newer than this dcctl knows.
Never edit a released file: add the next version.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import cache
from importlib import resources

DIALECTS = ("sqlite", "postgres")
_NAME = re.compile(r"^(\d{4})_([a-z0-9_]+)\.(sqlite|postgres)\.sql$")


@dataclass(frozen=True)
class Migration:
    version: int
    name: str
    dialect: str
    sql: str

    def statements(self) -> list[str]:
        """The script as single statements: ``--`` comments dropped, split at ``;`` (the files keep no ``;`` or
        ``--`` inside string literals)."""
        text = "\n".join(line.split("--", 1)[0] for line in self.sql.splitlines())
        return [s.strip() for s in text.split(";") if s.strip()]


@cache
def migrations(dialect: str) -> tuple[Migration, ...]:
    """Every migration of a dialect, oldest first; versions are 1, 2, … without a gap."""
    if dialect not in DIALECTS:
        raise ValueError(f"unknown state dialect {dialect!r}")
    found = []
    for entry in resources.files(__package__).iterdir():
        match = _NAME.match(entry.name)
        if match and match.group(3) == dialect:
            found.append(Migration(int(match.group(1)), match.group(2), dialect, entry.read_text(encoding="utf-8")))
    found.sort(key=lambda m: m.version)
    if [m.version for m in found] != list(range(1, len(found) + 1)):
        raise RuntimeError(f"{dialect} migrations are not numbered 1…N: {[m.version for m in found]}")
    return tuple(found)


def latest() -> int:
    """The schema version this dcctl writes (the same for every dialect)."""
    versions = {len(migrations(d)) for d in DIALECTS}
    if len(versions) != 1:
        raise RuntimeError(f"the dialects' migrations disagree on the latest version: {sorted(versions)}")
    return versions.pop()


def pending(dialect: str, current: int) -> tuple[Migration, ...]:
    return tuple(m for m in migrations(dialect) if m.version > current)


__all__ = ["DIALECTS", "Migration", "latest", "migrations", "pending"]
