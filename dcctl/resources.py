"""The two sides of a diff: what the inventory wants (DesiredResource) and what a backend has (ObservedResource)."""

from __future__ import annotations

import hashlib
import json
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from dcctl.diagnostics import SourceRange

#: Every name dcctl gives a resource on a backend starts with this, so its own resources can be listed cheaply.
NAME_PREFIX = "dcctl-"
#: Namespace of deterministic UUIDs: the same inventory key on the same backend always gets the same UUID.
_UUID_NAMESPACE = uuid.UUID("5c0f6a2e-8d4b-4f0e-9d6b-7a3f3f6c2d11")


def stable_uuid(province: str, backend: str, key: str) -> str:
    return str(uuid.uuid5(_UUID_NAMESPACE, f"{province}/{backend}/{key}"))


def digest(value: Any) -> str:
    """A short, stable digest of a JSON-able value (specs, observations)."""
    text = json.dumps(value, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


@dataclass(frozen=True)
class DesiredResource:
    """One resource the inventory wants on one backend.

    ``key`` is the inventory address (``server:kangping-portal/web/1``); ``name`` the name it gets on the backend;
    ``spec`` a JSON-able description the provider understands; ``depends_on`` keys on the same backend.
    """

    kind: str
    key: str
    backend: str
    name: str
    spec: Mapping[str, Any]
    depends_on: tuple[str, ...] = ()
    source: SourceRange | None = None

    @property
    def spec_digest(self) -> str:
        return digest(self.spec)


@dataclass(frozen=True)
class ObservedResource:
    """One resource found on a backend. ``managed`` is False for a foreign object whose name dcctl would use."""

    kind: str
    key: str
    backend: str
    name: str
    provider_id: str
    attrs: Mapping[str, Any] = field(default_factory=dict)
    managed: bool = True

    @property
    def fingerprint(self) -> str:
        return digest([self.kind, self.key, self.name, self.provider_id, self.attrs, self.managed])
