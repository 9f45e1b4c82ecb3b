"""The few exceptions dcctl raises for failures (user-input problems are diagnostics, not exceptions)."""

from __future__ import annotations


class DcctlError(Exception):
    """A failure with a message for people, and an optional hint on how to fix it."""

    def __init__(self, message: str, *, hint: str = "") -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint


class InventoryError(DcctlError):
    """The inventory cannot be used (it has errors)."""


class UsageError(DcctlError):
    """The command line asks for something that does not exist."""
