"""A domain's XML as it must read on the target backend (live migration), and the provider identity question."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from dcctl.inventory.model import LibvirtBackend
from dcctl.placement import servers
from dcctl.providers.base import PermanentError
from dcctl.providers.libvirt import mapping
from dcctl.providers.libvirt.migrate import UUID_BACKEND, adopts_migrated_identity, retarget_xml
from tests.unit.consolidate.conftest import backend, load, write_province

NS = {"dcctl": mapping.NS}


def source_xml(tmp_path: Path) -> tuple[str, LibvirtBackend]:
    faku = {**backend("faku-kvm", level=2), "storage_path": "/srv/faku/images", "console_path": "/srv/faku/console"}
    inv = load(write_province(tmp_path, legacy=faku))
    source = inv.backends["faku-kvm"][1]
    assert isinstance(source, LibvirtBackend)
    server = next(d for d in mapping.desired_for(inv, source, servers(inv)) if d.kind == "server")
    return mapping.render_xml(server, "testprov"), source


def test_disks_consoles_and_metadata_are_retargeted_uuid_kept(tmp_path: Path) -> None:
    xml, _ = source_xml(tmp_path)
    out = retarget_xml(
        xml,
        backend="sy-kvm",
        digest="abc123",
        disk_paths={"vda": "/srv/sy/images/dcctl-faku-portal-app-1-root.qcow2"},
        console_path="/srv/sy/console",
    )
    root = ET.fromstring(out)
    assert root.findtext("uuid") == ET.fromstring(xml).findtext("uuid")  # libvirt refuses another
    assert [d.get("file") for d in root.findall("devices/disk/source")] == [
        "/srv/sy/images/dcctl-faku-portal-app-1-root.qcow2"
    ]
    assert {s.get("path") for s in root.findall("devices/serial/source")} == {
        "/srv/sy/console/dcctl-faku-portal-app-1.log",
        "/srv/sy/console/dcctl-faku-portal-app-1.ttyS1.sock",
    }
    meta = root.find("metadata/dcctl:resource", NS)
    assert meta is not None
    assert meta.findtext("dcctl:backend", namespaces=NS) == "sy-kvm"
    assert meta.findtext("dcctl:digest", namespaces=NS) == "abc123"
    assert meta.findtext(f"dcctl:{UUID_BACKEND}", namespaces=NS) == "faku-kvm"
    assert mapping.parse_domain(out)["metadata"][UUID_BACKEND] == "faku-kvm"  # what the provider will read
    again = retarget_xml(out, backend="prov-kvm", digest="d", disk_paths={"vda": "/x.qcow2"}, console_path=None)
    assert mapping.parse_domain(again)["metadata"][UUID_BACKEND] == "faku-kvm"  # minted once, kept on every move


def test_a_disk_without_a_volume_or_a_foreign_domain_is_refused(tmp_path: Path) -> None:
    xml, _ = source_xml(tmp_path)
    with pytest.raises(PermanentError, match="disk vda"):
        retarget_xml(xml, backend="sy-kvm", digest="d", disk_paths={}, console_path=None)
    with pytest.raises(PermanentError, match="no dcctl metadata"):
        retarget_xml("<domain><name>x</name></domain>", backend="b", digest="d", disk_paths={}, console_path=None)


def test_the_provider_adopts_a_migrated_domain() -> None:
    """libvirt keeps a domain's UUID across a live migration: the target's provider must own it (it records the
    backend that minted the UUID), or the next plan would call the migrated server foreign."""
    target = LibvirtBackend.model_validate(backend("sy-kvm"))
    assert adopts_migrated_identity(target, "testprov") is True
