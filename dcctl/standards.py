"""The standards' facts (GB/T 20988 levels, MLPS backup requirements, audit retention) loaded from one data file."""

from __future__ import annotations

import functools
from dataclasses import dataclass
from datetime import timedelta
from importlib import resources
from typing import Any

import yaml

from dcctl.inventory.model import format_duration, parse_duration


def _duration(value: object) -> timedelta | None:
    if value is None:
        return None
    parsed = parse_duration(value)
    assert isinstance(parsed, timedelta), value
    return parsed


@dataclass(frozen=True)
class DrLevel:
    level: int
    name: str
    name_en: str
    rto_max: timedelta | None
    rpo_max: timedelta | None
    data_backup: str


@dataclass(frozen=True)
class MlpsLevel:
    level: int
    requires: tuple[str, ...]
    dr_required: bool
    rpo_max: timedelta | None
    rto_max: timedelta | None
    dedicated_pool: bool


@dataclass(frozen=True)
class Standards:
    raw: dict[str, Any]

    def dr_edition(self, edition: str) -> dict[str, Any]:
        return dict(self.raw["gbt20988"][edition])

    def dr_levels(self, edition: str) -> tuple[str, list[DrLevel]]:
        """The level table that grades ``edition``, and the edition the numbers come from."""
        table_edition = self.dr_edition(edition).get("levels_from", edition)
        rows = self.raw["gbt20988"][table_edition]["levels"]
        levels = [
            DrLevel(
                r["level"], r["name"], r["name_en"], _duration(r["rto_max"]), _duration(r["rpo_max"]), r["data_backup"]
            )
            for r in rows
        ]
        return table_edition, levels

    def mlps_level(self, level: int, edition: str = "GB/T 22239-2019") -> MlpsLevel:
        row = next(r for r in self.raw["mlps"][edition]["levels"] if r["level"] == level)
        return MlpsLevel(
            level,
            tuple(row["requires"]),
            bool(row.get("dr_required")),
            _duration(row.get("rpo_max")),
            _duration(row.get("rto_max")),
            bool(row.get("dedicated_pool")),
        )

    @property
    def minimum_audit_retention_days(self) -> int:
        return int(self.raw["audit"]["minimum_retention_days"])

    def dr_level_achieved(self, edition: str, rpo: timedelta | None, rto: timedelta | None) -> int:
        """The highest GB/T 20988 level whose RPO and RTO bands the measured figures meet (0: none measured)."""
        _, levels = self.dr_levels(edition)
        achieved = 0
        for lvl in levels:
            rpo_ok = lvl.rpo_max is None or (rpo is not None and rpo <= lvl.rpo_max)
            rto_ok = lvl.rto_max is None or (rto is not None and rto <= lvl.rto_max)
            if rpo is not None and rpo_ok and rto_ok:
                achieved = lvl.level
        return achieved


@functools.cache
def load_standards() -> Standards:
    text = resources.files("dcctl").joinpath("data/standards.yaml").read_text(encoding="utf-8")
    return Standards(yaml.safe_load(text))


__all__ = ["DrLevel", "MlpsLevel", "Standards", "format_duration", "load_standards"]
