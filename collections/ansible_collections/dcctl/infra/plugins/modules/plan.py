#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: dcctl maintainers
# Apache License 2.0 (see https://www.apache.org/licenses/LICENSE-2.0)
"""dcctl.infra.plan: an adapter over dcctl.api.plan."""

from __future__ import annotations

DOCUMENTATION = r"""
---
module: plan
short_description: Show what dcctl would change on the backends, and why
version_added: "0.1.0"
description:
  - Observes every backend in scope (one list per kind per host) and diffs the inventory against what exists, as
    C(dcctl plan) does. Changes nothing, so it runs the same in check mode.
  - Reports C(changed=true) when the plan has changes, so a pipeline can branch on it.
  - With C(--diff), shows the plan itself, one diff per change (before and after as YAML, headed by backend and key).
  - Fails when the plan has errors (for example a foreign object in the way), listing them.
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
    description: Plan the removal of everything dcctl made for the inventory (or for O(targets)).
    type: bool
    default: false
requirements:
  - dcctl (the Python package, on the controller)
author:
  - dcctl maintainers
"""

EXAMPLES = r"""
- name: Plan the county portals only
  dcctl.infra.plan:
    path: inventories/liaoning
    targets: [kangping-portal, faku-portal]
  register: plan

- name: Stop the pipeline for a human when something would be replaced
  ansible.builtin.assert:
    that: plan.counts.replace == 0
    fail_msg: "{{ plan.counts.replace }} servers would be replaced: review the plan first"
"""

RETURN = r"""
has_changes:
  description: Whether anything would change (also the task's C(changed)).
  type: bool
  returned: success
counts:
  description: Changes per action (noop, create, update, replace, delete).
  type: dict
  returned: success
changes:
  description: The pending changes (key, kind, name, backend, action, reason, changed_fields, replace_fields, source).
  type: list
  elements: dict
  returned: success
applyable:
  description: Whether the plan has no errors.
  type: bool
  returned: success
mode:
  description: normal or destroy.
  type: str
  returned: success
inventory_digest:
  description: Digest of the inventory files the plan was computed from.
  type: str
  returned: success
diagnostics:
  description: Problems found while planning, sorted by file and line.
  type: list
  elements: dict
  returned: always
"""

from ansible_collections.dcctl.infra.plugins.module_utils.adapter import (
    call,
    dcctl_api,
    error_lines,
    inventory_args,
    new_module,
    plan_data,
    plan_diff,
)


def main() -> None:
    module = new_module({"destroy": {"type": "bool", "default": False}})
    plan = call(module, dcctl_api().plan, destroy=module.params["destroy"], **inventory_args(module))
    result = plan_data(plan)
    if not plan.applyable:
        module.fail_json(msg="the plan has errors:\n%s" % error_lines(plan.diagnostics), **result)
    if module._diff and plan.has_changes:
        result["diff"] = plan_diff(plan)
    module.exit_json(changed=plan.has_changes, **result)


if __name__ == "__main__":
    main()
