"""Loading a multi-file inventory: references across files, anchors, and messages that say how to fix things."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from dcctl import api
from dcctl.inventory import load_inventory
from dcctl.inventory.model import Zone
from tests.conftest import CASES

BASE = CASES / "policy" / "_base"


@pytest.fixture
def inv_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    target = tmp_path / "inv"
    shutil.copytree(BASE, target)
    monkeypatch.chdir(target)
    return target


def codes(path: Path | str) -> list[tuple[str, str, int]]:
    result = api.validate(path)
    return [(d.code, d.source.path if d.source else "", d.source.line if d.source else 0) for d in result.diagnostics]


def test_references_resolve_across_files(inv_dir: Path) -> None:
    inv, diags = load_inventory(".")
    assert not diags.has_errors()
    tenancy = inv.tenancies["kangping-ext"]
    assert tenancy.hosted_in in inv.data_centers  # tenancies.yaml → datacenters.yaml
    assert inv.workloads["kangping-portal"][1].servers[0].flavor in inv.flavors  # → province.yaml
    assert tenancy.zone is Zone.EXTRANET
    assert tenancy.where("hosted_in") is not None
    assert tenancy.where("hosted_in").line == 6  # type: ignore[union-attr]


def test_dangling_reference_names_the_nearest_ids(inv_dir: Path) -> None:
    text = (inv_dir / "tenancies.yaml").read_text().replace("hosted_in: shenyang-dc", "hosted_in: shenyng-dc")
    (inv_dir / "tenancies.yaml").write_text(text)
    result = api.validate(".")
    [d] = result.diagnostics.errors
    assert d.code == "ref-unknown"
    assert "'shenyng-dc'" in d.message
    assert "did you mean 'shenyang-dc'" in d.hint
    assert (d.source.path, d.source.line) == ("tenancies.yaml", 6)  # type: ignore[union-attr]


def test_unknown_key_suggests_the_right_one(inv_dir: Path) -> None:
    text = (inv_dir / "tenancies.yaml").read_text().replace("mlps_level: 3", "mlps_levl: 3")
    (inv_dir / "tenancies.yaml").write_text(text)
    errors = api.validate(".").diagnostics.errors
    unknown = [d for d in errors if d.code == "schema-unknown-key"]
    assert len(unknown) == 1
    assert unknown[0].hint == "did you mean 'mlps_level'?"
    assert unknown[0].source.line == 14  # type: ignore[union-attr]
    assert any(d.code == "schema-missing-key" and "'mlps_level'" in d.message for d in errors)


def test_type_error_names_the_expected_type(inv_dir: Path) -> None:
    text = (inv_dir / "tenancies.yaml").read_text().replace("vcpus: 8,", "vcpus: eight,")
    (inv_dir / "tenancies.yaml").write_text(text)
    [d] = api.validate(".").diagnostics.errors
    assert d.code == "schema-type"
    assert "'vcpus' must be a whole number, got 'eight'" in d.message
    assert d.source.line == 8  # type: ignore[union-attr]


def test_duplicate_ids_across_files_are_rejected(inv_dir: Path) -> None:
    shutil.copy(inv_dir / "tenancies.yaml", inv_dir / "tenancies-copy.yaml")
    errors = api.validate(".").diagnostics.errors
    dups = [d for d in errors if d.code == "id-duplicate"]
    assert {d.source.path for d in dups} == {"tenancies.yaml"}  # type: ignore[union-attr]
    assert any("first at tenancies-copy.yaml:2:5" in d.message for d in dups)


def test_anchors_and_merge_keys_are_allowed(inv_dir: Path) -> None:
    (inv_dir / "tenancies.yaml").write_text(
        """\
x-defaults: &county
  kind: county
  city: shenyang
  hosted_in: shenyang-dc
  zone: extranet
  quotas: &small {vcpus: 4, ram_gb: 8, storage_gb: 100, instances: 2}
tenancies:
  - {<<: *county, id: kangping-ext, name: 康平县人民政府}
  - <<: *county
    id: faku-ext
    name: 法库县人民政府
    quotas: *small
"""
    )
    found = codes(".")
    # the only complaint is the unknown helper section; anchors and merges themselves are fine
    assert found == [("schema-unknown-key", "tenancies.yaml", 1)]
    inv, _ = load_inventory(".")
    assert inv.tenancies["faku-ext"].hosted_in == "shenyang-dc"
    assert inv.tenancies["kangping-ext"].quotas.vcpus == 4


def test_one_broken_object_does_not_hide_the_others(inv_dir: Path) -> None:
    (inv_dir / "more.yaml").write_text(
        """\
tenancies:
  - {id: a-ext, name: A, kind: county, city: shenyang, hosted_in: shenyang-dc, zone: outernet,
     quotas: {vcpus: 1, ram_gb: 1, storage_gb: 1, instances: 1}}
  - {id: b-ext, name: B, kind: county, city: shenyang, hosted_in: nowhere-dc, zone: extranet,
     quotas: {vcpus: 1, ram_gb: 1, storage_gb: 1, instances: 1}}
"""
    )
    found = codes(".")
    assert ("schema-value", "more.yaml", 2) in found
    assert ("ref-unknown", "more.yaml", 4) in found


def test_single_file_inventory(tmp_path: Path) -> None:
    merged = tmp_path / "all.yaml"
    merged.write_text("\n".join((BASE / f).read_text() for f in ("province.yaml", "datacenters.yaml")))
    inv, diags = load_inventory(merged)
    assert not diags.has_errors()
    assert len(inv.data_centers) == 4
