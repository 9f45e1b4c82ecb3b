#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: dcctl maintainers
# Apache License 2.0 (see https://www.apache.org/licenses/LICENSE-2.0)
"""dcctl.infra.validate: an adapter over dcctl.api.validate."""

from __future__ import annotations

DOCUMENTATION = r"""
---
module: validate
short_description: Check a dcctl inventory against its schema, references and policy rules
version_added: "0.1.0"
description:
  - Loads a dcctl inventory (a directory of YAML files, or one file) and reports every problem at once, each with its
    file, line, column, rule id and hint, exactly as C(dcctl validate) does.
  - Never changes anything, so it always reports C(changed=false) and runs the same in check mode.
  - "Runs on the controller, with the Python that has dcctl installed:
    C(ansible_python_interpreter: \"{{ ansible_playbook_python }}\")."
options:
  path:
    description: The inventory directory, or a single inventory file.
    type: path
    required: true
  state:
    description: Not used by validation; accepted so one set of inventory options fits every dcctl module.
    type: path
  targets:
    description: Not used by validation; accepted so one set of inventory options fits every dcctl module.
    type: list
    elements: str
    default: []
  fail_on_errors:
    description: Fail the task when the inventory has errors. Warnings never fail it.
    type: bool
    default: true
requirements:
  - dcctl (the Python package, on the controller)
author:
  - dcctl maintainers
"""

EXAMPLES = r"""
- name: Validate the province's inventory
  dcctl.infra.validate:
    path: inventories/liaoning
  register: validation

- name: Show how big it is
  ansible.builtin.debug:
    msg: "{{ validation.summary.servers }} servers in {{ validation.summary.tenancies }} tenancies"
"""

RETURN = r"""
valid:
  description: Whether the inventory has no errors (warnings allowed).
  type: bool
  returned: always
summary:
  description: What the inventory declares (files, data centers by tier, backends, tenancies, workloads, servers).
  type: dict
  returned: always
error_count:
  description: How many errors.
  type: int
  returned: always
warning_count:
  description: How many warnings.
  type: int
  returned: always
diagnostics:
  description: Every problem, sorted by file and line, each with severity, code, message, hint, file, line, column.
  type: list
  elements: dict
  returned: always
"""

from ansible_collections.dcctl.infra.plugins.module_utils.adapter import (
    call,
    dcctl_api,
    diagnostics_data,
    error_lines,
    new_module,
)


def main() -> None:
    module = new_module({"fail_on_errors": {"type": "bool", "default": True}})
    validation = call(module, dcctl_api().validate, module.params["path"])
    result = {"changed": False, "valid": validation.valid, "summary": validation.summary()}
    result.update(diagnostics_data(validation.diagnostics))
    if not validation.valid and module.params["fail_on_errors"]:
        module.fail_json(msg="the inventory has %d errors:\n%s" % (result["error_count"], error_lines(validation.diagnostics)), **result)
    module.exit_json(**result)


if __name__ == "__main__":
    main()
