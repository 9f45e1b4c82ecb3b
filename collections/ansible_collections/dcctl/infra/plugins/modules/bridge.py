#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: dcctl maintainers
# Apache License 2.0 (see https://www.apache.org/licenses/LICENSE-2.0)
"""dcctl.infra.bridge: a Linux bridge, its ports and addresses, made with iproute2."""

from __future__ import annotations

DOCUMENTATION = r"""
---
module: bridge
short_description: A Linux bridge with its ports and addresses, at runtime (iproute2)
version_added: "0.1.0"
description:
  - Makes sure a Linux bridge exists and is up, that the listed ports (physical NICs, bonds, VLAN interfaces) are its
    members, and that it carries the listed addresses. Addresses and ports not listed are left alone.
  - With O(state=absent), deletes the bridge (its ports are released, not deleted).
  - Works on the running system only; persist the bridge with the host's network configuration
    (prepare-hosts.yml writes an ifupdown stanza where ifupdown is installed).
  - Check mode reports what would be done without doing it; diff mode shows the bridge before and after.
  - Runs on the managed host, with its own Python (standard library only) and C(ip) from iproute2.
options:
  name:
    description: The bridge's interface name (at most 15 characters).
    type: str
    required: true
  state:
    description: Whether the bridge should exist.
    type: str
    choices: [present, absent]
    default: present
  addresses:
    description: Addresses in CIDR notation (such as C(198.18.51.1/24)) the bridge should carry.
    type: list
    elements: str
    default: []
  ports:
    description: Interfaces to enslave to the bridge.
    type: list
    elements: str
    default: []
author:
  - dcctl maintainers
"""

EXAMPLES = r"""
- name: The extranet uplink bridge
  dcctl.infra.bridge:
    name: br-extranet
    ports: [eno2]
    addresses: [198.18.52.10/24]
"""

RETURN = r"""
bridge:
  description: The bridge after the task (name, present, up, addresses, ports); as it would be, in check mode.
  type: dict
  returned: always
commands:
  description: The ip commands run (or that would run, in check mode).
  type: list
  elements: list
  returned: always
"""

import ipaddress
import json

from ansible.module_utils.basic import AnsibleModule


def link(module: AnsibleModule, name: str) -> dict | None:
    rc, out, err = module.run_command(["ip", "-j", "-d", "link", "show", "dev", name])
    if rc != 0:
        return None
    found = json.loads(out or "[]")
    return found[0] if found else None


def observe(module: AnsibleModule, name: str) -> dict:
    """The bridge as it is: present, up, its addresses (CIDR) and its ports."""
    found = link(module, name)
    if found is None:
        return {"name": name, "present": False, "up": False, "addresses": [], "ports": []}
    if (found.get("linkinfo") or {}).get("info_kind") != "bridge":
        module.fail_json(msg="%s exists and is not a bridge" % name)
    rc, out, err = module.run_command(["ip", "-j", "addr", "show", "dev", name], check_rc=True)
    addrs = [
        "%s/%s" % (a["local"], a["prefixlen"])
        for entry in json.loads(out or "[]")
        for a in entry.get("addr_info", [])
        if a.get("scope") != "link"
    ]
    rc, out, err = module.run_command(["ip", "-j", "link", "show", "master", name], check_rc=True)
    ports = sorted(p["ifname"] for p in json.loads(out or "[]"))
    return {"name": name, "present": True, "up": "UP" in found.get("flags", []), "addresses": addrs, "ports": ports}


def normalized(module: AnsibleModule, cidr: str) -> str:
    try:
        iface = ipaddress.ip_interface(cidr)
    except ValueError as exc:
        module.fail_json(msg="addresses: %s" % exc)
    if "/" not in cidr:
        module.fail_json(msg="addresses: %s has no prefix length (CIDR notation, such as 198.18.51.1/24)" % cidr)
    return "%s/%d" % (iface.ip, iface.network.prefixlen)


def text(state: dict) -> str:
    if not state["present"]:
        return "absent\n"
    return "bridge %s %s\naddresses: %s\nports: %s\n" % (
        state["name"],
        "up" if state["up"] else "down",
        ", ".join(sorted(state["addresses"])) or "-",
        ", ".join(sorted(state["ports"])) or "-",
    )


def main() -> None:
    module = AnsibleModule(
        argument_spec={
            "name": {"type": "str", "required": True},
            "state": {"type": "str", "choices": ["present", "absent"], "default": "present"},
            "addresses": {"type": "list", "elements": "str", "default": []},
            "ports": {"type": "list", "elements": "str", "default": []},
        },
        supports_check_mode=True,
    )
    p = module.params
    name = p["name"]
    if not 0 < len(name) <= 15 or "/" in name or " " in name:
        module.fail_json(msg="bridge name %r: 1-15 characters, no '/' or spaces" % name)
    before = observe(module, name)
    after = dict(before, addresses=list(before["addresses"]), ports=list(before["ports"]))
    commands = []
    if p["state"] == "absent":
        if before["present"]:
            commands.append(["ip", "link", "del", "dev", name])
        after = {"name": name, "present": False, "up": False, "addresses": [], "ports": []}
    else:
        if not before["present"]:
            commands.append(["ip", "link", "add", "name", name, "type", "bridge"])
        for port in p["ports"]:
            if port not in before["ports"]:
                if link(module, port) is None:
                    module.fail_json(msg="port %s of bridge %s does not exist" % (port, name))
                commands.append(["ip", "link", "set", "dev", port, "master", name])
                commands.append(["ip", "link", "set", "dev", port, "up"])
                after["ports"].append(port)
        for cidr in (normalized(module, a) for a in p["addresses"]):
            if cidr not in before["addresses"]:
                commands.append(["ip", "addr", "add", cidr, "dev", name])
                after["addresses"].append(cidr)
        if not before["up"]:
            commands.append(["ip", "link", "set", "dev", name, "up"])
        after.update(present=True, up=True)
    result = {"changed": bool(commands), "commands": commands, "bridge": after}
    if module._diff and commands:
        result["diff"] = {"before_header": name, "after_header": name, "before": text(before), "after": text(after)}
    if module.check_mode:
        module.exit_json(**result)
    for command in commands:
        module.run_command(command, check_rc=True)
    if commands:
        result["bridge"] = observe(module, name) if p["state"] == "present" else after
    module.exit_json(**result)


if __name__ == "__main__":
    main()
