"""The collection's module_utils: dcctl values as task results and as Ansible diffs (the plan, one per change)."""

from __future__ import annotations

import sys

import pytest
import yaml

from dcctl.diagnostics import Diagnostics, SourceRange
from dcctl.engine.apply import ApplyResult, StepResult
from dcctl.plan.model import Action, Change, Mode, Plan, Reason
from tests.unit.ansible.sandbox import COLLECTIONS

pytest.importorskip("ansible", reason="Ansible is not installed: scripts/bootstrap installs it")
sys.path.insert(0, str(COLLECTIONS))
from ansible_collections.dcctl.infra.plugins.module_utils import adapter

CREATE = Change(
    "server:portal/web/1",
    "server",
    "sy-kvm",
    "dcctl-portal-web-1",
    Action.CREATE,
    Reason.NEW_IN_INVENTORY,
    spec={"vcpus": 1, "ram_mb": 192, "networks": ["dcctl-kangping-ext-app"]},
    source=SourceRange("inv/shenyang.yaml", 40, 13),
)
UPDATE = Change(
    "server:portal/web/2",
    "server",
    "sy-kvm",
    "dcctl-portal-web-2",
    Action.UPDATE,
    Reason.FIELDS_DIFFER,
    changed_fields=("ram_mb",),
    before={"observed": {"provider_id": "u-2", "ram_mb": 192, "vcpus": 1}, "ram_mb": 192},
    after={"ram_mb": 256},
)
DELETE = Change(
    "tenancy:old/network:app",
    "network",
    "sy-kvm",
    "dcctl-old-app",
    Action.DELETE,
    Reason.REMOVED_FROM_INVENTORY,
    before={"observed": {"provider_id": "n-1", "cidr": "198.18.9.0/24"}},
)
NOOP = Change("backend:sy-kvm/pool", "pool", "sy-kvm", "dcctl", Action.NOOP, Reason.IN_SYNC)


def plan(*changes: Change) -> Plan:
    return Plan("inv", "d1g3st", Mode.NORMAL, "2026-01-01T00:00:00+00:00", "0", changes=list(changes))


def test_diff_has_one_entry_per_pending_change_with_yaml_sides() -> None:
    diffs = adapter.plan_diff(plan(NOOP, CREATE, UPDATE, DELETE))
    assert len(diffs) == 3
    create, update, delete = diffs
    assert create["before"] == ""
    assert create["before_header"] == "sy-kvm: server dcctl-portal-web-1 [server:portal/web/1] (absent)"
    assert create["after_header"].endswith("(create: new_in_inventory)")
    assert yaml.safe_load(create["after"]) == CREATE.spec
    assert (yaml.safe_load(update["before"]), yaml.safe_load(update["after"])) == ({"ram_mb": 192}, {"ram_mb": 256})
    assert yaml.safe_load(delete["before"]) == {"provider_id": "n-1", "cidr": "198.18.9.0/24"}
    assert delete["after"] == ""


def test_plan_data_lists_pending_changes_without_specs() -> None:
    data = adapter.plan_data(plan(NOOP, CREATE, UPDATE))
    assert data["has_changes"] is True
    assert data["counts"] == {"noop": 1, "create": 1, "update": 1, "replace": 0, "delete": 0}
    assert [c["key"] for c in data["changes"]] == ["server:portal/web/1", "server:portal/web/2"]
    assert data["changes"][0]["source"] == "inv/shenyang.yaml:40:13"
    assert "spec" not in data["changes"][0]
    # `warnings` is a reserved key of a module's result: the counts have their own names
    assert (data["error_count"], data["warning_count"]) == (0, 0)
    assert "warnings" not in data


def test_error_lines_are_the_cli_format() -> None:
    diags = Diagnostics()
    diags.error("foreign-resource", "server 'x' exists", hint="rename it", source=SourceRange("a.yaml", 3, 5))
    for i in range(12):
        diags.error("net-cidr-overlap", f"overlap {i}", source=SourceRange("b.yaml", i + 1, 1))
    text = adapter.error_lines(diags)
    assert text.splitlines()[0] == "a.yaml:3:5: error[foreign-resource]: server 'x' exists — rename it"
    assert text.splitlines()[-1] == "… and 3 more"


def test_apply_data_reports_failures_with_hints() -> None:
    run = ApplyResult(
        7,
        [
            StepResult(CREATE, True, seconds=1.0),
            StepResult(UPDATE, False, error="libvirt: domain busy", hint="retry later"),
            StepResult(DELETE, False, skipped=True),
        ],
        seconds=3.14159,
    )
    data = adapter.apply_data(run)
    assert (data["run_id"], data["ok"], data["seconds"]) == (7, False, 3.14)
    assert (data["succeeded"], data["failed"], data["skipped"]) == (1, 1, 1)
    assert data["failures"] == [
        {
            "key": "server:portal/web/2",
            "kind": "server",
            "backend": "sy-kvm",
            "action": "update",
            "error": "libvirt: domain busy",
            "hint": "retry later",
        }
    ]
