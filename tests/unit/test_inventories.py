"""The inventories shipped with dcctl are valid: errors none, warnings only for legacy data centers."""

from __future__ import annotations

import pytest

from dcctl import api
from tests.conftest import ROOT


@pytest.mark.parametrize("name", ["lab", "liaoning"])
def test_shipped_inventory_is_valid(name: str) -> None:
    result = api.validate(ROOT / "inventories" / name)
    assert result.valid, [str(d.source) + " " + d.message for d in result.diagnostics.errors]
    assert {d.code for d in result.diagnostics.warnings} <= {"dc-legacy-awaiting-consolidation"}
    legacy = [dc for dc in result.inventory.data_centers.values() if dc.legacy]
    assert len(result.diagnostics.warnings) == len(legacy) >= 1


def test_liaoning_covers_the_province() -> None:
    inv = api.validate(ROOT / "inventories" / "liaoning").inventory
    assert inv.province is not None
    assert len(inv.province.cities) == 14
    municipal = {dc.city for dc in inv.data_centers.values() if dc.tier.value == "municipal" and not dc.legacy}
    assert municipal == {c.id for c in inv.province.cities}
    for city in inv.province.cities:
        hosted = {t.id for t in inv.tenancies.values() if t.city == city.id and t.kind.value in ("county", "district")}
        assert len({t.split("-")[0] for t in hosted}) >= 2, f"{city.id} hosts fewer than two county-level tenancies"
    assert any(w.mlps_level == 4 for _, w in inv.workloads.values())
    assert inv.dr_site is not None
