#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: dcctl maintainers
# Apache License 2.0 (see https://www.apache.org/licenses/LICENSE-2.0)
"""dcctl.infra.apply: an adapter over dcctl.api.plan (check mode) and dcctl.api.apply."""

from __future__ import annotations

DOCUMENTATION = r"""
---
module: apply
short_description: Make the backends match a dcctl inventory
version_added: "0.1.0"
description:
  - Plans, then applies the plan when it has changes, as C(dcctl apply --yes) does. Every backend touched is locked
    for the run; an interrupted run re-runs to the same end state.
  - Idempotent. A second run finds nothing to do and reports C(changed=false).
  - In check mode it only plans, and reports C(changed=true) when something would change.
  - With C(--diff), shows the plan, one diff per change (before and after as YAML, headed by backend and key).
  - Fails when the plan has errors (nothing is applied) or when any step fails (the others are kept and the failures
    listed, each with its error and hint).
  - "Runs on the controller, with the Python that has dcctl installed:
    C(ansible_python_interpreter: \"{{ ansible_playbook_python }}\")."
options:
  path:
    description: The inventory directory, or a single inventory file.
    type: path
    required: true
  state:
    description: The state database. Default C($DCCTL_STATE), else C(<inventory>/.dcctl/state.db).
    type: path
  targets:
    description: Limit to these workload, tenancy, data center or backend ids.
    type: list
    elements: str
    default: []
  destroy:
    description: Remove what dcctl made for the inventory (or for O(targets)) instead.
    type: bool
    default: false
  timeout:
    description: Seconds any one step may take, retries included.
    type: float
    default: 900
requirements:
  - dcctl (the Python package, on the controller)
author:
  - dcctl maintainers
"""

EXAMPLES = r"""
- name: Apply the province's inventory
  dcctl.infra.apply:
    path: inventories/liaoning
    state: /var/lib/dcctl/state.db
  register: applied

- name: Remove one county's tenancy
  dcctl.infra.apply:
    path: inventories/liaoning
    targets: [kangping-ext]
    destroy: true
"""

RETURN = r"""
has_changes:
  description: Whether the plan had changes.
  type: bool
  returned: success
counts:
  description: The plan's changes per action (noop, create, update, replace, delete).
  type: dict
  returned: success
changes:
  description: The plan's pending changes (key, kind, name, backend, action, reason, changed_fields, source).
  type: list
  elements: dict
  returned: success
result:
  description: >-
    The apply run (run_id, ok, seconds, succeeded, failed, skipped, failures with key, backend, error and hint);
    null in check mode and when there was nothing to do.
  type: dict
  returned: success
diagnostics:
  description: Problems found while planning, sorted by file and line.
  type: list
  elements: dict
  returned: always
"""

from ansible_collections.dcctl.infra.plugins.module_utils.adapter import (
    DcctlError,
    apply_data,
    call,
    dcctl_api,
    error_lines,
    inventory_args,
    new_module,
    plan_data,
    plan_diff,
)


def main() -> None:
    module = new_module(
        {
            "destroy": {"type": "bool", "default": False},
            "timeout": {"type": "float", "default": 900.0},
        }
    )
    api = dcctl_api()
    args = dict(inventory_args(module), destroy=module.params["destroy"])
    run = None
    if module.check_mode:
        plan = call(module, api.plan, **args)
    else:
        try:
            plan, run = api.apply(timeout=module.params["timeout"], **args)
        except DcctlError as exc:
            plan = call(module, api.plan, **args)  # apply refused: plan again to report why, rule by rule
            if plan.applyable:
                module.fail_json(msg=exc.message + (" — " + exc.hint if exc.hint else ""), hint=exc.hint)
    result = plan_data(plan)
    result["result"] = apply_data(run) if run is not None else None
    if not plan.applyable:
        module.fail_json(msg="the plan has errors, nothing was applied:\n%s" % error_lines(plan.diagnostics), **result)
    if module._diff and plan.has_changes:
        result["diff"] = plan_diff(plan)
    if run is not None and not run.ok:
        failures = result["result"]["failures"]
        shown = "; ".join("%s on %s: %s" % (f["key"], f["backend"], f["error"]) for f in failures[:5])
        module.fail_json(
            msg="%d of %d changes failed: %s" % (len(failures), len(plan.pending), shown),
            changed=any(r.ok for r in run.results),
            **result,
        )
    module.exit_json(changed=plan.has_changes, **result)


if __name__ == "__main__":
    main()
