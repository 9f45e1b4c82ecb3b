"""Ansible's openstack.cloud collection vs dcctl on the OpenStack lab: create N servers and wait, re-run, delete.

Usage: OS_CLIENT_CONFIG_FILE=/var/lib/dcctl-oslab/clouds.yaml .venv/bin/python bench/peers/openstack_peers.py [--n 20]
       [--reps 3]
Appends JSON lines to bench/peers/out/results.jsonl.

- Ansible (ANSIBLE_VENV, default /var/lib/dcctl-bench/ansible-venv: the `ansible` package with its bundled
  openstack.cloud and an openstacksdk the collection accepts) runs playbooks/create.yml (network, subnet, security
  group, then `openstack.cloud.server` with `wait: true` in a loop of N) and playbooks/delete.yml (the reverse), as
  a user of its own project `peerbench-ans` (made untimed with its flavor and image, before the runs; removed after).
- dcctl runs its CLI on an inventory of one tenancy (its own project, quotas, network, subnet, security group) with N
  servers in one soft-anti-affinity group, the flavor and image included: `apply` (create), `apply` again (re-run),
  `destroy` (delete). dcctl's timed runs also make the project, quotas, flavor and image; Ansible's do not.
- Each timed step, of either tool, starts after SETTLE_S seconds without a run: the cloud finishes what the previous
  step left it doing (port bindings, nova's periodic tasks, cinder's and neutron's reports), which otherwise lands on
  the next step's clock — on a seconds-long no-op far more than on a minutes-long one.
- Before dcctl's first repetition an untimed `destroy` with a fresh state removes what an earlier run may have left
  (dcctl finds its objects by their marks): a timed create must start from nothing.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import secrets
import subprocess
import sys
import time
from pathlib import Path

import openstack
import yaml

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent
sys.path.insert(0, str(ROOT))
from bench.gen_inventory import openstack_inventory  # noqa: E402

WORK = Path(os.environ.get("BENCH_WORK", "/var/lib/dcctl-bench/work"))
ANSIBLE_VENV = Path(os.environ.get("ANSIBLE_VENV", "/var/lib/dcctl-bench/ansible-venv"))
DCCTL = ROOT / ".venv" / "bin" / "dcctl"
OUT = HERE / "out" / "results.jsonl"
CLOUD = os.environ.get("DCCTL_BENCH_CLOUD", "dcctl-lab-admin")
#: seconds without a run before each timed step (both tools)
SETTLE_S = 10
PROJECT, USER, FLAVOR, IMAGE = "peerbench-ans", "peerbench-ans", "peerbench-ans-tiny", "peerbench-ans-disk"


def record(row: dict) -> None:
    OUT.parent.mkdir(parents=True, exist_ok=True)
    with OUT.open("a") as f:
        f.write(json.dumps(row) + "\n")
    print(json.dumps(row), flush=True)


# ------------------------------------------------------------------------------------------------ Ansible side
def ansible_setup() -> Path:
    """Untimed: the peer's project, user (a throwaway password made here), flavor and image, and its clouds.yaml."""
    admin = openstack.connect(cloud=CLOUD)
    project = admin.identity.find_project(PROJECT, domain_id="default") or admin.identity.create_project(
        name=PROJECT, domain_id="default", description="dcctl bench/peers: Ansible openstack.cloud side"
    )
    password = secrets.token_urlsafe(24)
    user = admin.identity.find_user(USER, domain_id="default")
    if user is None:
        user = admin.identity.create_user(
            name=USER, domain_id="default", password=password, default_project_id=project.id
        )
    else:
        admin.identity.update_user(user, password=password)
    for role_name in ("member", "admin"):  # admin: the quota-free way to pass nova's per-project limits at N
        role = admin.identity.find_role(role_name)
        admin.identity.assign_project_role_to_user(project, user, role)
    admin.set_compute_quotas(project.id, instances=100, cores=100, ram=100 * 1024)
    if not admin.compute.find_flavor(FLAVOR):
        admin.compute.create_flavor(name=FLAVOR, vcpus=1, ram=64, disk=1, is_public=True)
    if not admin.image.find_image(IMAGE):
        admin.image.create_image(
            IMAGE, data=b"\0" * 65536, disk_format="raw", container_format="bare", visibility="public", wait=True
        )
    clouds = WORK / "ansible-clouds.yaml"
    WORK.mkdir(parents=True, exist_ok=True)
    clouds.touch(mode=0o600)
    clouds.write_text(
        yaml.safe_dump(
            {
                "clouds": {
                    "peerbench-ans": {
                        "auth": {
                            "auth_url": admin.config.auth["auth_url"],
                            "username": USER,
                            "password": password,
                            "project_name": PROJECT,
                            "user_domain_name": "Default",
                            "project_domain_name": "Default",
                        },
                        "region_name": admin.config.get_region_name(),
                        "identity_api_version": 3,
                    }
                }
            }
        )
    )
    admin.close()
    return clouds


def ansible_teardown() -> list[str]:
    admin = openstack.connect(cloud=CLOUD)
    left: list[str] = []
    project = admin.identity.find_project(PROJECT, domain_id="default")
    if project is not None:
        for s in admin.compute.servers(all_projects=True, project_id=project.id):
            left.append(f"server {s.name}")
            admin.compute.delete_server(s)
        for s in admin.compute.servers(all_projects=True, project_id=project.id):
            admin.compute.wait_for_delete(s, wait=300)
        for sg in admin.network.security_groups(project_id=project.id):
            admin.network.delete_security_group(sg, ignore_missing=True)
        for p in admin.network.ports(project_id=project.id):
            admin.network.delete_port(p, ignore_missing=True)
        for sn in admin.network.subnets(project_id=project.id):
            left.append(f"subnet {sn.name}")
            admin.network.delete_subnet(sn, ignore_missing=True)
        for n in admin.network.networks(project_id=project.id):
            left.append(f"network {n.name}")
            admin.network.delete_network(n, ignore_missing=True)
    user = admin.identity.find_user(USER, domain_id="default")
    if user is not None:
        admin.identity.delete_user(user)
    if project is not None:
        admin.identity.delete_project(project)
    f = admin.compute.find_flavor(FLAVOR)
    if f:
        admin.compute.delete_flavor(f)
    for i in admin.image.images(name=IMAGE):
        admin.image.delete_image(i, ignore_missing=True)
    admin.close()
    (WORK / "ansible-clouds.yaml").unlink(missing_ok=True)
    return left


def ansible_run(playbook: str, n: int, clouds: Path) -> tuple[float, subprocess.CompletedProcess, dict]:
    env = {
        **os.environ,
        "OS_CLIENT_CONFIG_FILE": str(clouds),
        "ANSIBLE_HOME": str(WORK / "ansible-home"),
        "ANSIBLE_LOCALHOST_WARNING": "false",
        "ANSIBLE_INVENTORY_UNPARSED_WARNING": "false",
        "PATH": f"{ANSIBLE_VENV / 'bin'}:{os.environ['PATH']}",
    }
    cmd = [
        str(ANSIBLE_VENV / "bin" / "ansible-playbook"),
        "-i",
        "localhost,",
        "-c",
        "local",
        "-e",
        f"ansible_python_interpreter={ANSIBLE_VENV / 'bin' / 'python'}",
        "-e",
        f"n={n}",
        str(HERE / "playbooks" / playbook),
    ]
    time.sleep(SETTLE_S)
    t = time.perf_counter()
    p = subprocess.run(cmd, capture_output=True, text=True, env=env)  # noqa: PLW1510
    wall = time.perf_counter() - t
    m = re.search(r"ok=(\d+)\s+changed=(\d+)\s+unreachable=(\d+)\s+failed=(\d+)", p.stdout)
    recap = dict(zip(("ok", "changed", "unreachable", "failed"), map(int, m.groups()))) if m else {}  # noqa: B905
    return wall, p, recap


# -------------------------------------------------------------------------------------------------- dcctl side
def dcctl_inventory(n: int) -> Path:
    """One tenancy of ``n`` servers on the cloud, as the playbooks make them."""
    return openstack_inventory(
        WORK / f"dcctl-os-inv-{n}",
        prefix="pbos",
        cloud=CLOUD,
        tenancies=1,
        servers=n,
        storage_gb=2 * n,
        cidr=lambda _: "198.18.91.0/24",
    )


def dcctl_run(args: list[str]) -> tuple[float, subprocess.CompletedProcess]:
    time.sleep(SETTLE_S)
    t = time.perf_counter()
    p = subprocess.run([str(DCCTL), *args], capture_output=True, text=True)  # noqa: PLW1510
    return time.perf_counter() - t, p


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=20)
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--tools", default="dcctl,ansible")
    a = ap.parse_args()
    tools = a.tools.split(",")
    WORK.mkdir(parents=True, exist_ok=True)
    if "dcctl" in tools:
        inv = dcctl_inventory(a.n)
        state = WORK / "dcctl-os-state.db"
        state.unlink(missing_ok=True)
        left = subprocess.run(  # noqa: PLW1510
            [str(DCCTL), "destroy", str(inv), "--yes", "--state", str(state)], capture_output=True, text=True
        )
        record({"tool": "dcctl", "backend": "openstack", "step": "pre-clean", "output_tail": left.stdout[-300:]})
        for rep in range(a.reps):
            state.unlink(missing_ok=True)
            for step, args in (
                ("create", ["apply", str(inv), "--yes", "--state", str(state)]),
                ("rerun", ["apply", str(inv), "--yes", "--state", str(state)]),
                ("delete", ["destroy", str(inv), "--yes", "--state", str(state)]),
            ):
                wall, p = dcctl_run(args)
                row = {
                    "tool": "dcctl",
                    "backend": "openstack",
                    "n": a.n,
                    "rep": rep,
                    "step": step,
                    "wall": round(wall, 3),
                    "rc": p.returncode,
                }
                if step == "rerun":
                    row["no_change"] = "No changes" in p.stdout
                if p.returncode or step != "delete":
                    row["output_tail"] = (p.stdout + p.stderr)[-600:]
                (WORK / f"dcctl-os-r{rep}-{step}.out").write_text(p.stdout + "\n--- stderr\n" + p.stderr)
                record(row)
    if "ansible" in tools:
        clouds = ansible_setup()
        try:
            for rep in range(a.reps):
                for step, pb in (("create", "create.yml"), ("rerun", "create.yml"), ("delete", "delete.yml")):
                    wall, p, recap = ansible_run(pb, a.n, clouds)
                    row = {
                        "tool": "ansible",
                        "backend": "openstack",
                        "n": a.n,
                        "rep": rep,
                        "step": step,
                        "wall": round(wall, 3),
                        "rc": p.returncode,
                        **recap,
                    }
                    if p.returncode:
                        row["output_tail"] = (p.stdout + p.stderr)[-1500:]
                    (WORK / f"ansible-r{rep}-{step}.out").write_text(p.stdout + "\n--- stderr\n" + p.stderr)
                    record(row)
                    if p.returncode:
                        raise SystemExit(f"ansible {step} failed")
        finally:
            left = ansible_teardown()
            record({"tool": "ansible", "backend": "openstack", "step": "teardown", "left_over_cleaned": left})


if __name__ == "__main__":
    main()
