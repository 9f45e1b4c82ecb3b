"""Providers: the only code that talks to backends. Each hides its SDK behind the ``Provider`` protocol."""

from __future__ import annotations

from dcctl.inventory.model import Backend, LibvirtBackend
from dcctl.providers.base import Provider, ProviderError


def provider_for(backend: Backend, province: str) -> Provider | None:
    """A provider for one backend (imports its SDK only now, so ``dcctl --help`` stays fast); None for a backend
    type this dcctl cannot provision."""
    if isinstance(backend, LibvirtBackend):
        from dcctl.providers.libvirt.provider import LibvirtProvider

        return LibvirtProvider(backend, province)
    try:
        from dcctl.providers.openstack.provider import OpenStackProvider  # type: ignore[import-not-found,unused-ignore]
    except ImportError:
        return None
    return OpenStackProvider(backend, province)  # type: ignore[no-any-return,unused-ignore]


__all__ = ["Provider", "ProviderError", "provider_for"]
