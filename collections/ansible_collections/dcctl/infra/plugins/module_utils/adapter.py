# -*- coding: utf-8 -*-
# Copyright: dcctl maintainers
# Apache License 2.0 (see https://www.apache.org/licenses/LICENSE-2.0)
"""Shared plumbing of the dcctl.infra modules: one import guard, the inventory options, dcctl errors as failures,
and dcctl values (diagnostics, plans, apply results) as plain data and as Ansible diffs.

A module over a new dcctl API is a few lines::

    module = new_module(dict(site=dict(type="str")))
    status = call(module, dcctl_api().dr_status, **inventory_args(module))
    module.exit_json(changed=False, **status.to_dict())

Everything runs on the controller (dcctl talks to libvirt and OpenStack itself), with the interpreter that has dcctl:
``ansible_python_interpreter: "{{ ansible_playbook_python }}"``.
"""

from __future__ import annotations

import traceback
from typing import Any, Callable

from ansible.module_utils.basic import AnsibleModule, missing_required_lib

try:
    import yaml
    from dcctl import api as _api
    from dcctl.errors import DcctlError
except ImportError:
    _api = None
    IMPORT_ERROR: str | None = traceback.format_exc()

    class DcctlError(Exception):  # type: ignore[no-redef]  # never raised: only keeps `except` clauses valid
        message = ""
        hint = ""

else:
    IMPORT_ERROR = None

#: the options every module that opens an inventory takes
INVENTORY_OPTIONS: dict[str, dict[str, Any]] = {
    "path": {"type": "path", "required": True},
    "state": {"type": "path"},
    "targets": {"type": "list", "elements": "str", "default": []},
}


def new_module(argument_spec: dict[str, dict[str, Any]], *, inventory: bool = True, **kwargs: Any) -> AnsibleModule:
    """An AnsibleModule with check mode, the inventory options, and a clear failure when dcctl is not importable."""
    spec = {**INVENTORY_OPTIONS, **argument_spec} if inventory else dict(argument_spec)
    module = AnsibleModule(argument_spec=spec, supports_check_mode=True, **kwargs)
    if IMPORT_ERROR is not None:
        module.fail_json(
            msg=missing_required_lib("dcctl")
            + ' Run the task on the controller with ansible_python_interpreter: "{{ ansible_playbook_python }}"',
            exception=IMPORT_ERROR,
        )
    return module


def dcctl_api() -> Any:
    """The dcctl.api module (after new_module has checked that it imports)."""
    return _api


def inventory_args(module: AnsibleModule) -> dict[str, Any]:
    """The keyword arguments dcctl.api's inventory functions take, from the module's options."""
    return {
        "path": module.params["path"],
        "targets": tuple(module.params["targets"] or ()),
        "state": module.params["state"],
    }


def call(module: AnsibleModule, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    """Call a dcctl API function; its DcctlError becomes a task failure with the message and the hint."""
    try:
        return fn(*args, **kwargs)
    except DcctlError as exc:
        module.fail_json(msg=exc.message + (" — " + exc.hint if exc.hint else ""), hint=exc.hint)
    return None  # not reached: fail_json exits


def diagnostics_data(diagnostics: Any) -> dict[str, Any]:
    """Counts and every diagnostic (file, line, column, rule, message, hint), sorted by place.

    (Not ``errors``/``warnings``: ``warnings`` is a reserved key of a module's result.)"""
    return {
        "error_count": len(diagnostics.errors),
        "warning_count": len(diagnostics.warnings),
        "diagnostics": [d.to_dict() for d in diagnostics.sorted()],
    }


def error_lines(diagnostics: Any, limit: int = 10) -> str:
    """The first errors, one per line, as the CLI prints them (FILE:LINE:COL: error[RULE]: message — hint)."""
    lines = []
    for d in diagnostics.sorted():
        if d.severity.value != "error":
            continue
        where = "%s: " % d.source if d.source else ""
        hint = " — %s" % d.hint if d.hint else ""
        lines.append("%serror[%s]: %s%s" % (where, d.code, d.message, hint))
    more = len(lines) - limit
    return "\n".join(lines[:limit] + (["… and %d more" % more] if more > 0 else []))


def change_data(change: Any) -> dict[str, Any]:
    """One pending change, without the bulky specs: what, where, which action and why."""
    return {
        "key": change.key,
        "kind": change.kind,
        "name": change.name,
        "backend": change.backend,
        "action": change.action.value,
        "reason": change.reason.value,
        "changed_fields": list(change.changed_fields),
        "replace_fields": list(change.replace_fields),
        "source": str(change.source) if change.source else None,
    }


def plan_data(plan: Any) -> dict[str, Any]:
    """A plan as task results: counts, the pending changes, diagnostics, and what it was computed from."""
    return {
        "inventory": plan.inventory,
        "inventory_digest": plan.inventory_digest,
        "mode": plan.mode.value,
        "applyable": plan.applyable,
        "has_changes": plan.has_changes,
        "counts": plan.counts(),
        "changes": [change_data(c) for c in plan.pending],
        **diagnostics_data(plan.diagnostics),
    }


def _text(value: Any) -> str:
    if not value:
        return ""
    return yaml.safe_dump(value, allow_unicode=True, default_flow_style=False, sort_keys=True, width=120)


def _sides(change: Any) -> tuple[Any, Any]:
    action = change.action.value
    before = dict(change.before or {})
    observed = before.pop("observed", None)
    if action == "create":
        return None, change.spec or change.after or {"name": change.name}
    if action == "delete":
        return observed or {"name": change.name}, None
    fields = list(change.changed_fields) or sorted(set(before) | set(change.after or {}))
    after = change.after or {}
    return (
        {f: before.get(f) for f in fields},
        {f: after.get(f) for f in fields},
    )


def plan_diff(plan: Any) -> list[dict[str, str]]:
    """The plan as Ansible diffs, one per pending change: before and after as YAML text, headed by backend and key."""
    diffs = []
    for c in plan.pending:
        before, after = _sides(c)
        where = "%s: %s %s [%s]" % (c.backend, c.kind, c.name, c.key)
        diffs.append(
            {
                "before_header": where + ("" if before is not None else " (absent)"),
                "after_header": "%s (%s: %s)" % (where, c.action.value, c.reason.value),
                "before": _text(before),
                "after": _text(after),
            }
        )
    return diffs


def apply_data(result: Any) -> dict[str, Any]:
    """An apply run as task results: run id, outcome, counts, every failure with its hint."""
    return {
        "run_id": result.run_id,
        "ok": result.ok,
        "seconds": round(result.seconds, 2),
        **result.counts(),
        "failures": [
            {
                "key": r.change.key,
                "kind": r.change.kind,
                "backend": r.change.backend,
                "action": r.change.action.value,
                "error": r.error,
                "hint": r.hint,
            }
            for r in result.results
            if not r.ok and not r.skipped
        ],
    }
