"""Providers: the only code that talks to backends. Each hides its SDK behind the ``Provider`` protocol."""

from __future__ import annotations

from dcctl.inventory.model import Backend, LibvirtBackend
from dcctl.providers.base import Provider, ProviderError


def provider_for(backend: Backend, province: str) -> Provider:
    """A connected provider for one backend (imports the SDK only now, so ``dcctl --help`` stays fast)."""
    if isinstance(backend, LibvirtBackend):
        from dcctl.providers.libvirt.provider import LibvirtProvider

        return LibvirtProvider(backend, province)
    from dcctl.errors import DcctlError

    raise DcctlError(
        f"backend '{backend.id}' is of type '{backend.type}', which this dcctl cannot provision yet",
        hint="libvirt backends are supported; OpenStack arrives with the OpenStack provider",
    )


__all__ = ["Provider", "ProviderError", "provider_for"]
