"""The engine on a real OpenStack (scripts/openstack-lab: keystone, glance, placement, nova with its fake driver,
neutron, cinder): the lab inventory's Dalian data center and its two county tenancies.

Apply makes projects, quotas, networks, security groups, ACTIVE servers with attached volumes; a re-plan is empty; a
quota edited in YAML plans as exactly that update; a county's own keystone user sees and changes nothing of the other
county; kill -9 at distinct steps re-runs to the same end state without duplicates or orphans; a server nova cannot
place fails with nova's fault text; destroy leaves nothing of dcctl's on the cloud.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import shutil
import signal
import subprocess
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import ROOT, require_service
from tests.integration.conftest import dcctl
from tests.states import fresh_state, state_of

openstack = pytest.importorskip("openstack")

pytestmark = pytest.mark.integration

CLOUD = "dcctl-lab-admin"
TARGET = ("--target", "dalian-dc")
SERVERS = {
    "dcctl-changhai-portal-web-1": "dcctl-changhai-ext",
    "dcctl-changhai-portal-web-2": "dcctl-changhai-ext",
    "dcctl-zhuanghe-service-app-1": "dcctl-zhuanghe-ext",
}
VOLUMES = {f"{s}-data": s for s in SERVERS}
NETWORKS = {"dcctl-changhai-ext-app", "dcctl-changhai-ext-db", "dcctl-zhuanghe-ext-app"}


def _lab_up() -> bool:
    script = ROOT / "scripts" / "openstack-lab"
    try:
        status = subprocess.run([str(script), "status"], capture_output=True, timeout=120, check=False)
        clouds = subprocess.run([str(script), "clouds"], capture_output=True, text=True, timeout=30, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return False
    if status.returncode != 0 or not clouds.stdout.strip() or not Path(clouds.stdout.strip()).is_file():
        return False
    os.environ.setdefault("OS_CLIENT_CONFIG_FILE", clouds.stdout.strip())
    return True


@pytest.fixture(scope="module")
def cloud() -> Iterator[Any]:
    require_service("the OpenStack lab", _lab_up(), "scripts/openstack-lab up")
    conn = openstack.connect(cloud=CLOUD)
    yield conn
    conn.close()


@pytest.fixture(scope="module")
def workdir(tmp_path_factory: pytest.TempPathFactory, cloud: Any) -> Iterator[Path]:
    """The lab inventory's province and Dalian, its two libvirt hosts (the provincial data center and the DR site)
    replaced by libvirt's in-process test driver: only the cloud is real, and a destroy without --target removes the
    cloud's shared objects (flavor, image, domain) too."""
    work = tmp_path_factory.mktemp("openstack")
    shutil.copytree(
        ROOT / "inventories" / "lab",
        work / "inv",
        ignore=shutil.ignore_patterns(".dcctl", "shenyang.yaml", "provincial.yaml"),
    )
    province = work / "inv" / "province.yaml"  # text, not a YAML round trip: the tests edit these files as text
    uris = iter(["test:///default", f"test://{ROOT / 'tests' / 'cases' / 'engine' / 'node.xml'}"])
    province.write_text(re.sub(r'uri: "[^"]*"', lambda _m: f'uri: "{next(uris)}"', province.read_text()))
    with fresh_state(work):  # state_of(work): the module's one state, on the backend under test
        yield work
        run(work, "destroy", "--yes", targeted=False, check=True)
    assert dcctl_objects(cloud) == {}, "destroy left dcctl objects on the cloud"


def run(
    workdir: Path, *args: str, inv: Path | None = None, targeted: bool = True, **kw: Any
) -> subprocess.CompletedProcess[str]:
    command, *rest = args
    return dcctl(
        command,
        str(inv or workdir / "inv"),
        "--state",
        state_of(workdir),
        *(TARGET if targeted else ()),
        *rest,
        **kw,
    )


def edited(workdir: Path, name: str, *changes: tuple[str, str, str]) -> Path:
    target = workdir / name
    shutil.rmtree(target, ignore_errors=True)
    shutil.copytree(workdir / "inv", target)
    for file, old, new in changes:
        text = (target / file).read_text()
        assert old in text, (file, old)
        (target / file).write_text(text.replace(old, new, 1))
    return target


#: the names this module's inventory gives (its data center's domain, its counties, the catalog's flavor and image);
#: other dcctl inventories on the same cloud (a benchmark's, an engineer's) are not this test's to judge
OURS = ("dcctl-dalian-", "dcctl-changhai-", "dcctl-zhuanghe-", "dcctl-lab-")


def dcctl_objects(conn: Any) -> dict[str, list[str]]:
    """Every object of this inventory on the cloud, by kind (duplicates show as repeated names)."""
    found: dict[str, list[str]] = {
        "domains": [d.name for d in conn.identity.domains()],
        "projects": [p.name for p in conn.identity.projects()],
        "groups": [g.name for g in conn.identity.groups()],
        "flavors": [f.name for f in conn.compute.flavors(is_public=None)],
        "images": [i.name for i in conn.image.images()],
        "servers": [s.name for s in conn.compute.servers(all_projects=True)],
        "server_groups": [g.name for g in conn.compute.server_groups(all_projects=True)],
        "volumes": [v.name for v in conn.block_storage.volumes(all_projects=True)],
        "networks": [n.name for n in conn.network.networks()],
        "subnets": [s.name for s in conn.network.subnets()],
        "routers": [r.name for r in conn.network.routers()],
        "security_groups": [g.name for g in conn.network.security_groups()],
    }
    mine = {k: sorted(n for n in v if (n or "").startswith(OURS)) for k, v in found.items()}
    return {k: v for k, v in mine.items() if v}


def assert_converged(conn: Any) -> None:
    """Exactly what the inventory asks for: no duplicates, no orphans, servers ACTIVE, volumes attached."""
    found = dcctl_objects(conn)
    for kind, names in found.items():
        assert len(names) == len(set(names)), f"duplicate {kind}: {Counter(names).most_common(2)}"
    assert set(found["servers"]) == set(SERVERS)
    assert set(found["volumes"]) == set(VOLUMES)
    assert set(found["networks"]) == NETWORKS and set(found["subnets"]) == NETWORKS
    assert found["routers"] == ["dcctl-changhai-ext"]
    assert set(found["projects"]) == {"dcctl-changhai-ext", "dcctl-zhuanghe-ext"}
    assert found["domains"] == ["dcctl-dalian-dc"]
    assert set(found["security_groups"]) == {"dcctl-changhai-ext-baseline", "dcctl-zhuanghe-ext-baseline"}
    assert set(found["server_groups"]) == {"dcctl-changhai-portal-web", "dcctl-zhuanghe-service-app"}
    servers = {s.name: s for s in conn.compute.servers(all_projects=True) if s.name in SERVERS}
    assert {s.status for s in servers.values()} == {"ACTIVE"}
    by_id = {s.id: s.name for s in servers.values()}
    for v in conn.block_storage.volumes(all_projects=True):
        if v.name in VOLUMES:
            assert v.status == "in-use", (v.name, v.status)
            assert [by_id.get(a["server_id"]) for a in v.attachments] == [VOLUMES[v.name]]


@pytest.fixture(scope="module")
def applied(workdir: Path, cloud: Any) -> None:
    run(workdir, "destroy", "--yes", targeted=False, check=True)  # a clean slate, whatever an earlier run left
    result = run(workdir, "apply", "--yes", check=True)
    assert "Apply complete: 33 succeeded, 0 failed" in result.stdout, result.stdout + result.stderr


def test_apply_makes_tenancies_with_quotas_networks_baselines_and_running_servers(applied: None, cloud: Any) -> None:
    assert_converged(cloud)
    domain = cloud.identity.find_domain("dcctl-dalian-dc")
    projects = {p.name: p for p in cloud.identity.projects(domain_id=domain.id)}
    assert set(projects) == {"dcctl-changhai-ext", "dcctl-zhuanghe-ext"}
    changhai = projects["dcctl-changhai-ext"]
    assert "key=tenancy:changhai-ext/project" in changhai.description
    compute = cloud.compute.get_quota_set(changhai.id)
    assert (compute.cores, compute.ram, compute.instances) == (4, 2048, 3)
    assert cloud.block_storage.get_quota_set(changhai.id).gigabytes == 4
    assert cloud.network.get_quota(changhai.id).networks == 2
    for name, project in SERVERS.items():
        server = next(cloud.compute.servers(all_projects=True, name=f"^{name}$"))
        assert server.project_id == projects[project].id
        assert server.metadata["dcctl_key"].startswith("server:")
        assert {g["name"] for g in server.security_groups} == {f"{project}-baseline"}
    baseline = next(cloud.network.security_groups(name="dcctl-changhai-ext-baseline"))
    https = [r for r in baseline.security_group_rules if r["port_range_min"] == 443]
    assert [(r["direction"], r["remote_ip_prefix"]) for r in https] == [("ingress", "0.0.0.0/0")]
    group = next(cloud.compute.server_groups(all_projects=True, name="dcctl-changhai-portal-web"))
    assert group.policy == "soft-anti-affinity" and len(group.member_ids) == 2


def test_second_plan_has_no_changes(applied: None, workdir: Path) -> None:
    result = run(workdir, "plan", "--detailed-exitcode")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "No changes" in result.stdout


def test_quota_change_in_yaml_plans_exactly_that_update(applied: None, workdir: Path) -> None:
    inv = edited(
        workdir,
        "more-cpu",
        (
            "dalian.yaml",
            "quotas: {vcpus: 4, ram_gb: 2, storage_gb: 4, instances: 3}",
            "quotas: {vcpus: 6, ram_gb: 2, storage_gb: 4, instances: 3}",
        ),
    )
    result = run(workdir, "plan", "--json", "--detailed-exitcode", inv=inv)
    assert result.returncode == 2, result.stdout + result.stderr
    pending = [c for c in json.loads(result.stdout)["plan"]["changes"] if c["action"] != "noop"]
    assert [(c["action"], c["kind"], c["key"], c["changed_fields"]) for c in pending] == [
        ("update", "quota", "tenancy:changhai-ext/quota", ["cores"])
    ]
    assert (pending[0]["before"]["cores"], pending[0]["after"]["cores"]) == (4, 6)


def _connect_as(user: str, password: str, project: str) -> Any:
    return openstack.connect(
        auth_url="http://127.0.0.1:5000/v3",
        username=user,
        password=password,
        user_domain_name="dcctl-dalian-dc",
        project_name=project,
        project_domain_name="dcctl-dalian-dc",
        region_name="RegionOne",
        load_yaml_config=False,
        load_envvars=False,
    )


def test_a_countys_own_user_cannot_see_or_change_the_other_county(applied: None, workdir: Path, cloud: Any) -> None:
    domain = cloud.identity.find_domain("dcctl-dalian-dc")
    name = f"changhai-admin-{secrets.token_hex(3)}"
    password = secrets.token_urlsafe(24)
    user = cloud.identity.create_user(name=name, password=password, domain_id=domain.id)
    admins = ("dalian.yaml", "    admins: []                        # user names", f"    admins: [{name}]  #")
    inv = edited(workdir, "admins", admins)
    try:
        plan = json.loads(run(workdir, "plan", "--json", inv=inv).stdout)["plan"]
        pending = [(c["kind"], c["key"], c["changed_fields"]) for c in plan["changes"] if c["action"] != "noop"]
        assert pending == [("group", "tenancy:changhai-ext/group:admins", ["members"])]
        run(workdir, "apply", "--yes", inv=inv, check=True)

        county = _connect_as(name, password, "dcctl-changhai-ext")
        token = county.session.get_token()  # a token keystone issued to the county's own user
        assert token
        own = {s.name for s in county.compute.servers()}
        assert own == {"dcctl-changhai-portal-web-1", "dcctl-changhai-portal-web-2"}
        assert {n.name for n in county.network.networks()} == {"dcctl-changhai-ext-app", "dcctl-changhai-ext-db"}
        assert {v.name for v in county.block_storage.volumes()} == {
            "dcctl-changhai-portal-web-1-data",
            "dcctl-changhai-portal-web-2-data",
        }

        other_server = next(cloud.compute.servers(all_projects=True, name="^dcctl-zhuanghe-service-app-1$"))
        other_net = next(cloud.network.networks(name="dcctl-zhuanghe-ext-app"))
        with pytest.raises(openstack.exceptions.HttpException) as seen:
            list(county.compute.servers(all_projects=True))
        assert seen.value.status_code == 403
        with pytest.raises(openstack.exceptions.NotFoundException):
            county.compute.get_server(other_server.id)
        with pytest.raises(openstack.exceptions.NotFoundException):
            county.compute.delete_server(other_server.id, ignore_missing=False)
        with pytest.raises(openstack.exceptions.NotFoundException):
            county.network.update_network(other_net.id, description="taken over")
        with pytest.raises(openstack.exceptions.HttpException):
            county.network.create_port(network_id=other_net.id, name="dcctl-sneak")
        with pytest.raises(openstack.exceptions.HttpException):
            county.network.delete_network(other_net.id, ignore_missing=False)
        county.close()

        after = cloud.compute.get_server(other_server.id)
        assert after.status == "ACTIVE" and after.name == "dcctl-zhuanghe-service-app-1"
        assert "taken over" not in (cloud.network.get_network(other_net.id).description or "")
        assert not list(cloud.network.ports(name="dcctl-sneak"))
    finally:
        run(workdir, "apply", "--yes", check=True)  # admins: [] again: dcctl takes the user out of the group
        cloud.identity.delete_user(user, ignore_missing=True)
    group = next(cloud.identity.groups(name="dcctl-changhai-ext-admins"))
    assert list(cloud.identity.group_users(group)) == []
    assert run(workdir, "plan", "--detailed-exitcode").returncode == 0


KILL_POINTS = [
    "openstack.project-created:1",  # a project made, not recorded
    "openstack.quota-compute-set:1",  # nova's quota set, cinder's and neutron's not
    "openstack.network-created:2",  # a network made, its subnet not
    "openstack.security-group-created:1",  # a group with neutron's default rules, not yet the baseline
    "openstack.volume-created:1",  # a volume creating
    "openstack.server-created:2",  # a server building, not waited for
    "openstack.attachment-created:1",  # a volume attaching
]


@pytest.mark.parametrize("point", KILL_POINTS)
def test_kill_9_mid_apply_then_reapply_converges(point: str, workdir: Path, cloud: Any) -> None:
    run(workdir, "destroy", "--yes", check=True)
    killed = run(workdir, "apply", "--yes", env={"DCCTL_FAILPOINTS": point})
    assert killed.returncode == -signal.SIGKILL, (point, killed.stdout, killed.stderr)
    run(workdir, "apply", "--yes", check=True)
    assert run(workdir, "plan", "--detailed-exitcode").returncode == 0
    assert_converged(cloud)


def test_a_server_nova_cannot_place_fails_with_novas_fault(workdir: Path, cloud: Any) -> None:
    run(workdir, "apply", "--yes", check=True)
    huge = (
        "province.yaml",
        "    - {id: lab-tiny, vcpus: 1, ram_mb: 192, disk_gb: 1}",
        "    - {id: lab-tiny, vcpus: 1, ram_mb: 192, disk_gb: 1}\n"
        "    - {id: lab-huge, vcpus: 1, ram_mb: 819200, disk_gb: 1}  # more than the fake hypervisor's 800000 MiB",
    )
    capacity = (
        "dalian.yaml",
        "capacity: {vcpus: 8, ram_gb: 16, storage_gb: 100}",
        "capacity: {vcpus: 8, ram_gb: 1024, storage_gb: 100}",
    )
    quota = (
        "dalian.yaml",
        "quotas: {vcpus: 2, ram_gb: 1, storage_gb: 2, instances: 2}",
        "quotas: {vcpus: 2, ram_gb: 801, storage_gb: 3, instances: 2}",
    )
    big = (
        "dalian.yaml",
        "      - id: zhuanghe-service\n",
        "      - id: zhuanghe-big\n        name: 大内存系统\n        mlps_level: 2\n        servers:\n"
        "          - {name: big, flavor: lab-huge, image: lab-disk, networks: [app], anti_affinity: false}\n"
        "      - id: zhuanghe-service\n",
    )
    inv = edited(workdir, "huge", huge, capacity, quota, big)
    result = run(workdir, "apply", "--yes", "--json", inv=inv)
    assert result.returncode == 1, result.stdout + result.stderr
    failures = json.loads(result.stdout)["result"]["failures"]
    assert [f["key"] for f in failures] == ["server:zhuanghe-big/big/1"]
    assert "went to ERROR" in failures[0]["error"]
    assert "No valid host was found" in failures[0]["error"]  # nova's own fault message
    plan = json.loads(run(workdir, "plan", "--json", inv=inv).stdout)["plan"]
    replace = [(c["key"], c["replace_fields"]) for c in plan["changes"] if c["action"] == "replace"]
    assert [key for key, _ in replace] == ["server:zhuanghe-big/big/1"]
    assert "status" in replace[0][1]  # ERROR: the plan replaces it (it never got its network ports either)
    # the big server goes with the edit (untargeted: --target scopes by the current inventory's workloads, and
    # zhuanghe-big is no longer in it; this inventory's libvirt hosts have nothing to do)
    run(workdir, "apply", "--yes", targeted=False, check=True)
    assert_converged(cloud)


def test_a_server_on_a_kernel_only_image_is_left_out_with_a_plan_warning(applied: None, workdir: Path) -> None:
    inv = edited(
        workdir,
        "kernel-image",
        (
            "dalian.yaml",
            "{name: app, flavor: lab-tiny, image: lab-disk,",
            "{name: app, flavor: lab-tiny, image: lab-guest,",
        ),
    )
    plan = json.loads(run(workdir, "plan", "--json", inv=inv).stdout)["plan"]
    [warning] = [d for d in plan["diagnostics"] if d["code"] == "image-not-on-openstack"]
    assert warning["severity"] == "warning" and "lab-guest" in warning["message"]
    assert warning["file"].endswith("dalian.yaml") and warning["line"] > 0
    assert plan["applyable"]
    deletes = {c["key"] for c in plan["changes"] if c["action"] == "delete"}
    assert "server:zhuanghe-service/app/1" in deletes  # the server would go: the plan says so before anything does
