"""What a consolidation plan needs to know of the world: where the servers of the legacy data center and of its target
run (and whether they run), how many bytes their disks hold, and whether this dcctl's libvirt provider can adopt a
live-migrated domain. Observation only: nothing is changed."""

from __future__ import annotations

from collections.abc import Mapping

from dcctl.consolidate.plan import Facts, ServerState
from dcctl.dr.ssh import Ssh, SshTarget, q
from dcctl.errors import DcctlError
from dcctl.inventory import Inventory
from dcctl.inventory.model import LibvirtBackend
from dcctl.plan.build import Observation, observe_all
from dcctl.providers import provider_for
from dcctl.providers.base import Provider, ProviderError


def backends_involved(inv: Inventory, legacy_dc: str) -> list[str]:
    """The backends of the legacy data center and of its consolidation target."""
    dc = inv.data_centers.get(legacy_dc)
    if dc is None:
        return []
    target = inv.data_centers.get(dc.consolidate_into or "")
    return sorted({b.id for b in dc.backends} | ({b.id for b in target.backends} if target else set()))


def open_providers(inv: Inventory, backend_ids: list[str]) -> dict[str, Provider]:
    province = inv.province.id if inv.province else ""
    out = {}
    for bid in backend_ids:
        provider = provider_for(inv.backends[bid][1], province)
        if provider is not None:
            out[bid] = provider
    return out


def gather(
    inv: Inventory, providers: Mapping[str, Provider], *, measure: bool = True
) -> tuple[Facts, dict[str, Observation]]:
    """Observe the providers' backends once; with ``measure``, ask each libvirt host (over SSH) what its servers'
    disks hold. Unreachable backends are named in ``Facts.unobserved``."""
    # one backend after another: the first remote connection of a process starts libvirt's event loop, and
    # two first connections opened at once can start two (a crash in libvirt); later observations run in parallel
    observations = observe_all(providers, 1)
    servers: list[ServerState] = []
    unobserved = {b: o.error.message for b, o in observations.items() if o.error is not None}
    for backend_id, obs in sorted(observations.items()):
        if obs.error is not None:
            continue
        found = [r for r in obs.resources if r.kind == "server" and r.managed and r.key.startswith("server:")]
        paths = [p for r in found for p in r.attrs.get("disks", [])]
        sizes = _disk_bytes(inv.backends[backend_id][1], paths) if measure else {}
        for r in found:
            disks = tuple(r.attrs.get("disks", ()))
            held = [sizes.get(p) for p in disks]
            total = sum(x for x in held if x is not None) if held and None not in held else None
            servers.append(ServerState(r.key, r.name, backend_id, bool(r.attrs.get("running")), disks, total))
    from dcctl.providers.libvirt.migrate import LIVE_UNSUPPORTED, adopts_migrated_identity

    province = inv.province.id if inv.province else ""
    libvirt = [inv.backends[b][1] for b in providers if isinstance(inv.backends[b][1], LibvirtBackend)]
    adopts = all(adopts_migrated_identity(b, province) for b in libvirt if isinstance(b, LibvirtBackend))
    facts = Facts(tuple(servers), unobserved, "" if adopts else LIVE_UNSUPPORTED, observed=True)
    return facts, observations


def _disk_bytes(backend: object, paths: list[str]) -> dict[str, int]:
    """File → bytes it holds on the host (``du``: allocated blocks, what a copy carries). Empty when not measurable."""
    if not paths or not isinstance(backend, LibvirtBackend):
        return {}
    try:
        target = SshTarget.from_uri(backend.uri)
    except DcctlError:
        return {}  # a local or test URI: nothing to ask over SSH
    try:
        with Ssh(target) as ssh:
            _, out, _ = ssh.run("du -B1 -- " + " ".join(q(p) for p in paths) + " 2>/dev/null", check=False)
    except ProviderError:
        return {}
    sizes = {}
    for line in out.splitlines():
        size, _, path = line.partition("\t")
        if size.isdigit():
            sizes[path] = int(size)
    return sizes
