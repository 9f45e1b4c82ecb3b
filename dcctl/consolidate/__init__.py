"""Consolidating legacy data centers into their city's or the province's (逐步整合): plan the moves, run them, and
report progress. ``progress`` is what reports show per legacy data center."""

from __future__ import annotations

from dcctl.consolidate.progress import LegacyProgress, progress

__all__ = ["LegacyProgress", "progress"]
