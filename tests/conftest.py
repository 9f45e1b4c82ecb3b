"""Shared fixtures: paths to the project's inventories and test cases."""

from __future__ import annotations

from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
CASES = ROOT / "tests" / "cases"


@pytest.fixture
def root() -> Path:
    return ROOT


def require_service(name: str, available: bool, start_with: str) -> None:
    """Skip a test whose service is missing, saying how to start it; in CI (DCCTL_REQUIRE_SERVICES=1) fail instead."""
    import os

    if available:
        return
    message = f"{name} is not running: start it with `{start_with}`"
    if os.environ.get("DCCTL_REQUIRE_SERVICES"):
        pytest.fail(message + " (CI must start every service its tests need)")
    pytest.skip(message)
