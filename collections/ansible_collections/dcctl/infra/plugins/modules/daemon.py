#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: dcctl maintainers
# Apache License 2.0 (see https://www.apache.org/licenses/LICENSE-2.0)
"""dcctl.infra.daemon: a daemon kept running through its pidfile, for hosts without systemd."""

from __future__ import annotations

DOCUMENTATION = r"""
---
module: daemon
short_description: Start (or restart) a self-daemonizing program through its pidfile, where there is no systemd
version_added: "0.1.0"
description:
  - For hosts without a service manager (containers, namespace hosts, minimal images), where
    M(ansible.builtin.systemd_service) cannot work. With systemd, use that module instead.
  - A daemon runs when its pidfile names a live process whose executable is O(executable); a stale pidfile counts as
    not running. Only that process is ever signalled.
  - The program must put itself in the background (for example C(libvirtd -d)); its output goes to O(log).
  - Check mode reports what would be done without doing it; diff mode shows the state before and after.
  - Runs on the managed host, with its own Python (standard library only).
options:
  name:
    description: A name for messages.
    type: str
    required: true
  executable:
    description: The program.
    type: path
    required: true
  args:
    description: Its arguments (it must daemonize itself, and write O(pidfile)).
    type: list
    elements: str
    default: []
  pidfile:
    description: The pidfile the daemon writes.
    type: path
    required: true
  state:
    description: C(started) starts it unless it runs; C(restarted) stops it if it runs, then starts it.
    type: str
    choices: [started, restarted]
    default: started
  environment:
    description: Extra environment variables for the daemon.
    type: dict
    default: {}
  ready_path:
    description: A path (such as its socket) that exists once the daemon is ready; the module waits for it.
    type: path
  log:
    description: Where the program's standard output and error go while it starts.
    type: path
    default: /dev/null
  timeout:
    description: Seconds to wait for the daemon to start, or to stop on a restart.
    type: int
    default: 60
author:
  - dcctl maintainers
"""

EXAMPLES = r"""
- name: Start libvirtd without systemd
  dcctl.infra.daemon:
    name: libvirtd
    executable: /usr/sbin/libvirtd
    args: [-d, -p, /run/libvirt/libvirtd.pid]
    pidfile: /run/libvirt/libvirtd.pid
    ready_path: /run/libvirt/libvirt-sock
"""

RETURN = r"""
pid:
  description: The daemon's process id (null in check mode when it would be started).
  type: int
  returned: always
was_running:
  description: Whether it ran before the task.
  type: bool
  returned: always
"""

import os
import signal
import subprocess
import time

from ansible.module_utils.basic import AnsibleModule


def running_pid(pidfile: str, executable: str) -> int | None:
    """The pid in the pidfile, if that process is alive and runs the executable (pid reuse is not mistaken)."""
    try:
        with open(pidfile, encoding="ascii") as f:
            pid = int(f.read().strip() or "0")
        exe = os.readlink("/proc/%d/exe" % pid)
    except (OSError, ValueError):
        return None
    if pid <= 0:
        return None
    exe = exe[: -len(" (deleted)")] if exe.endswith(" (deleted)") else exe  # upgraded under a running daemon
    return pid if os.path.realpath(exe) == os.path.realpath(executable) else None


def wait(predicate, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.1)
    return predicate()


def tail(path: str, lines: int = 20) -> str:
    if path == os.devnull:
        return ""
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            return "".join(f.readlines()[-lines:])
    except OSError:
        return ""


def alive(pid: int) -> bool:
    """Whether the process runs (a zombie waiting for its parent to reap it has stopped)."""
    try:
        with open("/proc/%d/stat" % pid, encoding="ascii", errors="replace") as f:
            state = f.read().rpartition(")")[2].split()[0]
    except (OSError, IndexError):
        return False
    return state not in ("Z", "X")


def stop(module: AnsibleModule, pid: int, timeout: float) -> None:
    os.kill(pid, signal.SIGTERM)
    if not wait(lambda: not alive(pid), timeout):
        module.fail_json(msg="%s (pid %d) did not stop within %ds of SIGTERM" % (module.params["name"], pid, timeout))


def start(module: AnsibleModule) -> int:
    p = module.params
    env = dict(os.environ, **{str(k): str(v) for k, v in p["environment"].items()})
    with open(p["log"], "ab") as log:
        proc = subprocess.Popen(  # noqa: S603  (the executable and arguments are the task's)
            [p["executable"], *p["args"]],
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            env=env,
            close_fds=True,
            start_new_session=True,
        )
        try:
            rc = proc.wait(timeout=p["timeout"])
        except subprocess.TimeoutExpired:
            module.fail_json(msg="%s did not put itself in the background within %ds" % (p["name"], p["timeout"]))
    if rc != 0:
        module.fail_json(msg="%s exited %d while starting" % (p["name"], rc), log=tail(p["log"]))

    def ready() -> bool:
        return running_pid(p["pidfile"], p["executable"]) is not None and (
            not p["ready_path"] or os.path.exists(p["ready_path"])
        )

    if not wait(ready, p["timeout"]):
        module.fail_json(msg="%s did not become ready within %ds" % (p["name"], p["timeout"]), log=tail(p["log"]))
    return running_pid(p["pidfile"], p["executable"]) or 0


def main() -> None:
    module = AnsibleModule(
        argument_spec={
            "name": {"type": "str", "required": True},
            "executable": {"type": "path", "required": True},
            "args": {"type": "list", "elements": "str", "default": []},
            "pidfile": {"type": "path", "required": True},
            "state": {"type": "str", "choices": ["started", "restarted"], "default": "started"},
            "environment": {"type": "dict", "default": {}},
            "ready_path": {"type": "path"},
            "log": {"type": "path", "default": os.devnull},
            "timeout": {"type": "int", "default": 60},
        },
        supports_check_mode=True,
    )
    p = module.params
    if not os.access(p["executable"], os.X_OK):
        module.fail_json(msg="%s: %s is not an executable program" % (p["name"], p["executable"]))
    pid = running_pid(p["pidfile"], p["executable"])
    changed = pid is None or p["state"] == "restarted"
    result = {"changed": changed, "pid": pid, "was_running": pid is not None}
    if module._diff:
        result["diff"] = {
            "before_header": p["name"],
            "after_header": p["name"],
            "before": "running (pid %d)\n" % pid if pid else "stopped\n",
            "after": "running\n" if changed else "running (pid %d)\n" % pid,
        }
    if not changed or module.check_mode:
        module.exit_json(**result)
    if pid is not None:
        stop(module, pid, p["timeout"])
    result["pid"] = start(module)
    module.exit_json(**result)


if __name__ == "__main__":
    main()
