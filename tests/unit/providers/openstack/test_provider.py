"""The OpenStack provider without a cloud: observe lists each kind once, knows its own by their marks, and plans
exactly the fields that differ. (The real cloud: tests/integration/test_openstack_engine.py.)"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest

from dcctl.inventory.model import OpenStackBackend
from dcctl.providers.openstack import mapping
from dcctl.providers.openstack.provider import OpenStackProvider, _dedupe
from dcctl.resources import DesiredResource, ObservedResource

PROVINCE, BACKEND = "liaoning-lab", "dalian-os"


class Obj:
    """An SDK resource stand-in: unknown attributes read as None."""

    def __init__(self, **attrs: Any) -> None:
        self.__dict__.update(attrs)

    def __getattr__(self, name: str) -> Any:
        return None


class Service:
    """One proxy: list methods return canned objects and are counted; anything else fails the test."""

    def __init__(self, calls: Counter[str], prefix: str, **lists: list[Any]) -> None:
        self._calls, self._prefix, self._lists = calls, prefix, lists

    def __getattr__(self, name: str) -> Any:
        if name not in self._lists:
            raise AssertionError(f"observe called {self._prefix}.{name}: only list calls are allowed")

        def lister(*_args: Any, **_query: Any) -> Iterator[Any]:
            self._calls[f"{self._prefix}.{name}"] += 1
            return iter(self._lists[name])

        return lister


def marks(key: str) -> str:
    return mapping.describe("x", PROVINCE, BACKEND, key)


class FakeCloud:
    def __init__(self) -> None:
        self.calls: Counter[str] = Counter()
        self.config = Obj(config={"auth": {"username": "admin", "password": "pw-secret"}})
        self.current_user_id = "me"
        token = Obj(  # keystone lists implied roles in a token: admin implies member
            role_names=["admin", "member", "reader"],
            role_ids=["r0", "r1", "r2"],
            issued=datetime(2026, 11, 26, 10, tzinfo=UTC),
        )
        self.session = Obj(auth=Obj(get_access=lambda _session: token))
        dom = Obj(
            id="d1", name="dcctl-dalian-dc", description=marks("backend:dalian-os/domain:dalian-dc"), is_enabled=True
        )
        ours = Obj(
            id="p1",
            name="dcctl-changhai-ext",
            domain_id="d1",
            is_enabled=True,
            description=marks("tenancy:changhai-ext/project"),
            tags=["dcctl", "dcctl-zone=extranet", "dcctl-quota-compute=cores:4;instances:3;ram:2048"],
        )
        foreign = Obj(
            id="p2", name="dcctl-zhuanghe-ext", domain_id="d1", is_enabled=True, description="made by hand", tags=[]
        )
        group = Obj(
            id="g1",
            name="dcctl-changhai-ext-admins",
            domain_id="d1",
            description=marks("tenancy:changhai-ext/group:admins"),
        )
        direct = [
            Obj(scope={"project": {"id": "p1"}}, role={"id": "r1"}, group={"id": "g1"}, user=None),
            Obj(scope={"project": {"id": "p1"}}, role={"id": "r1"}, group=None, user={"id": "me"}),
            Obj(scope={"project": {"id": "p1"}}, role={"id": "r1"}, group=None, user={"id": "someone"}),
        ]
        effective = [Obj(user={"id": "u1", "name": "alice"}, links={"membership": "http://k/v3/groups/g1/users/u1"})]
        server = Obj(
            id="s1",
            name="dcctl-changhai-portal-web-1",
            project_id="p1",
            status="ERROR",
            metadata=mapping.metadata(PROVINCE, BACKEND, "server:changhai-portal/web/1"),
            flavor={"vcpus": 1, "ram": 192, "disk": 1, "original_name": "dcctl-lab-tiny"},
            image={"id": "i1"},
            addresses={"dcctl-changhai-ext-app": []},
            security_groups=[{"name": "dcctl-changhai-ext-baseline"}],
            fault={"message": "No valid host was found."},
        )
        lookalike = Obj(id="s9", name="dcctl-elsewhere-1", project_id="p-other", status="ACTIVE", metadata={})
        volume = Obj(
            id="v1",
            name="dcctl-changhai-portal-web-1-data",
            project_id="p1",
            size=1,
            status="in-use",
            metadata=mapping.metadata(PROVINCE, BACKEND, "server:changhai-portal/web/1/disk:data"),
            attachments=[{"server_id": "s1"}],
        )
        sgroup = Obj(
            id="sg1", name="dcctl-changhai-portal-web", project_id="p1", policy="soft-anti-affinity", member_ids=["s1"]
        )
        self.identity = Service(
            self.calls,
            "identity",
            domains=[dom],
            projects=[ours, foreign],
            groups=[group],
            roles=[Obj(id="r1", name="member")],
            role_assignments=[],
        )
        self._direct, self._effective = direct, effective
        self.compute = Service(self.calls, "compute", flavors=[], servers=[server, lookalike], server_groups=[sgroup])
        self.image = Service(self.calls, "image", images=[])
        self.block_storage = Service(self.calls, "block_storage", volumes=[volume])
        nq = Obj(
            project_id="p1",
            networks=2,
            subnets=2,
            routers=1,
            ports=20,
            floating_ips=3,
            security_groups=10,
            security_group_rules=100,
        )
        self.network = Service(
            self.calls, "network", quotas=[nq], networks=[], subnets=[], routers=[], ports=[], security_groups=[]
        )

        def role_assignments(**query: Any) -> Iterator[Any]:
            self.calls["identity.role_assignments"] += 1
            return iter(self._effective if query.get("effective") else self._direct)

        self.identity._lists["role_assignments"] = []
        self.identity.__dict__["role_assignments"] = role_assignments


@pytest.fixture
def cloud(monkeypatch: pytest.MonkeyPatch) -> FakeCloud:
    fake = FakeCloud()
    monkeypatch.setattr("dcctl.providers.openstack.provider.openstack.connect", lambda **_kw: fake)
    return fake


@pytest.fixture
def provider() -> OpenStackProvider:
    backend = OpenStackBackend(
        id=BACKEND,
        type="openstack",
        cloud="dcctl-lab-admin",
        zones=["extranet"],
        level=3,
        capacity={"vcpus": 8, "ram_gb": 16, "storage_gb": 100},
    )
    return OpenStackProvider(backend, PROVINCE)


def test_observe_lists_each_kind_once_and_fetches_nothing_one_by_one(
    cloud: FakeCloud, provider: OpenStackProvider
) -> None:
    provider.observe()
    assert all(n == 1 for name, n in cloud.calls.items() if name != "identity.role_assignments"), cloud.calls
    assert cloud.calls["identity.role_assignments"] == 2  # direct assignments, and effective ones for members
    assert "identity.roles" not in cloud.calls  # the member role's id comes with dcctl's token
    assert "network.ports" not in cloud.calls  # no router of dcctl's: no router interfaces to list
    assert {"compute.servers", "block_storage.volumes", "network.networks", "identity.projects"} <= set(cloud.calls)


def test_observe_knows_its_own_by_their_marks(cloud: FakeCloud, provider: OpenStackProvider) -> None:
    found = {(r.kind, r.name): r for r in provider.observe()}
    assert found[("project", "dcctl-changhai-ext")].managed
    assert found[("project", "dcctl-changhai-ext")].key == "tenancy:changhai-ext/project"
    foreign = found[("project", "dcctl-zhuanghe-ext")]
    assert not foreign.managed and foreign.key == "project:dcctl-zhuanghe-ext"
    assert found[("project", "dcctl-dalian-dc")].attrs["is_domain"]
    assert found[("group", "dcctl-changhai-ext-admins")].attrs["members"] == ["alice"]
    assignments = {r.key for r in found.values() if r.kind == "role_assignment"}
    assert assignments == {"tenancy:changhai-ext/role_assignment:admins", "tenancy:changhai-ext/role_assignment:dcctl"}
    quota = found[("quota", "dcctl-changhai-ext")]
    assert quota.attrs["compute"] == {"cores": 4, "instances": 3, "ram": 2048}
    assert quota.attrs["network"]["router"] == 1
    server = found[("server", "dcctl-changhai-portal-web-1")]
    assert server.attrs["fault"] == "No valid host was found."
    assert server.attrs["server_group"] == "dcctl-changhai-portal-web"
    assert ("server", "dcctl-elsewhere-1") not in found  # a look-alike outside dcctl's projects is not in the way
    assert found[("volume_attachment", "dcctl-changhai-portal-web-1-data")].attrs["server"] == server.name
    assert found[("server_group", "dcctl-changhai-portal-web")].key == "workload:changhai-portal/server_group:web"
    assert "pw-secret" not in repr([r.attrs for r in found.values()])


def test_dcctl_own_object_wins_over_a_same_named_foreign_one() -> None:
    ours = ObservedResource("network", "tenancy:t/network:a", BACKEND, "dcctl-t-a", "n1", {})
    foreign = ObservedResource("network", "network:dcctl-t-a", BACKEND, "dcctl-t-a", "n2", {}, managed=False)
    assert _dedupe([foreign, ours], set()) == [ours]
    assert _dedupe([foreign], set()) == [foreign]


def test_a_duplicate_or_one_left_in_a_project_that_is_gone_is_planned_away() -> None:
    orphan = ObservedResource(
        "network", "tenancy:t/network:a", BACKEND, "dcctl-t-a", "old12345x", {"project_id": "gone"}
    )
    live = ObservedResource("network", "tenancy:t/network:a", BACKEND, "dcctl-t-a", "new", {"project_id": "p1"})
    kept, extra = _dedupe([orphan, live], {"p1"})
    assert kept == live
    assert (extra.name, extra.key, extra.provider_id) == (
        "dcctl-t-a~old12345",
        "tenancy:t/network:a~old12345",
        "old12345x",
    )
    assert extra.managed  # the plan has no desired resource of that name: it deletes it


def _desired(kind: str, name: str, spec: dict[str, Any]) -> DesiredResource:
    return DesiredResource(kind, f"x:{name}", BACKEND, name, spec)


def test_a_quota_change_plans_exactly_that_field(provider: OpenStackProvider) -> None:
    spec = {"project": "p", "compute": {"cores": 6, "ram": 2048}, "volume": {"gigabytes": 4}, "network": {"port": 9}}
    have = {"compute": {"cores": 4, "ram": 2048}, "volume": {"gigabytes": 4}, "network": {"port": 9}}
    changes = provider.plan(_desired("quota", "q", spec), ObservedResource("quota", "k", BACKEND, "q", "p", have))
    assert changes.changed == ("cores",) and changes.requires_replace == ()
    assert changes.before == {"cores": 4} and changes.after == {"cores": 6}


def test_a_server_in_error_is_replaced_and_a_stopped_one_started(provider: OpenStackProvider) -> None:
    spec = {
        "vcpus": 1,
        "ram_mb": 192,
        "disk_gb": 1,
        "image": "dcctl-i",
        "networks": ["n"],
        "security_groups": ["sg"],
        "server_group": None,
    }
    attrs = {
        "status": "ERROR",
        "vcpus": 1,
        "ram_mb": 192,
        "disk_gb": 1,
        "networks": ["n"],
        "security_groups": ["sg"],
        "server_group": None,
    }
    err = provider.plan(_desired("server", "s", spec), ObservedResource("server", "k", BACKEND, "s", "id", attrs))
    assert err.requires_replace == ("status",)
    stopped = provider.plan(
        _desired("server", "s", spec),
        ObservedResource("server", "k", BACKEND, "s", "id", {**attrs, "status": "SHUTOFF"}),
    )
    assert stopped.changed == ("status",) and stopped.requires_replace == ()
    bigger = provider.plan(
        _desired("server", "s", {**spec, "ram_mb": 256}),
        ObservedResource("server", "k", BACKEND, "s", "id", {**attrs, "status": "ACTIVE"}),
    )
    assert bigger.changed == ("ram_mb",) and bigger.requires_replace == ()  # a resize, not a new server


def test_an_image_whose_file_changed_is_replaced(provider: OpenStackProvider) -> None:
    spec = {"source": "/x.raw", "source_as_written": "x.raw", "checksum": "sha256:" + "b" * 64}
    attrs = {"status": "active", "sha256": "a" * 64, "source": "x.raw"}
    changes = provider.plan(_desired("image", "i", spec), ObservedResource("image", "k", BACKEND, "i", "id", attrs))
    assert changes.requires_replace == ("sha256",)
    moved = {**spec, "source": "/elsewhere/x.raw", "checksum": "sha256:" + "a" * 64}  # the inventory moved
    same = provider.plan(_desired("image", "i", moved), ObservedResource("image", "k", BACKEND, "i", "id", attrs))
    assert same.changed == ()


def test_foreign_objects_are_never_touched(provider: OpenStackProvider) -> None:
    from dcctl.providers.base import Conflict

    foreign = ObservedResource("server", "server:x", BACKEND, "dcctl-x", "id", {}, managed=False)
    with pytest.raises(Conflict, match="not created by dcctl"):
        provider.delete(foreign, deadline=0)
    with pytest.raises(Conflict):
        provider.apply(_desired("server", "dcctl-x", {}), foreign, deadline=0, on_progress=print)


def test_an_image_file_that_does_not_match_its_checksum_is_refused_before_upload(tmp_path: Any) -> None:
    from dcctl.providers.base import PermanentError
    from dcctl.providers.openstack.provider import _verify

    disk = tmp_path / "disk.raw"
    disk.write_bytes(b"\0" * 1024)
    good = _verify(str(disk), None, "dcctl-x")
    assert _verify(str(disk), f"sha256:{good}", "dcctl-x") == good
    with pytest.raises(PermanentError, match="not the"):
        _verify(str(disk), "sha256:" + "0" * 64, "dcctl-x")


def test_one_list_call_serves_every_waiting_server() -> None:
    from dcctl.providers.openstack.provider import _ServerWatch

    fetches: list[str | None] = []

    def fetch(since: str | None) -> list[Any]:
        fetches.append(since)
        return [Obj(id=f"s{i}", status="BUILD", fault=None, updated_at="2026-11-26T10:00:00Z") for i in range(50)]

    watch = _ServerWatch(fetch, datetime(2026, 11, 26, 9, 59, tzinfo=UTC), interval=60)
    assert all(watch.status(f"s{i}")["status"] == "BUILD" for i in range(50))  # type: ignore[index]
    assert fetches == ["2026-11-26T09:59:00Z"]
    assert watch.status("unknown") is None


def test_new_servers_are_waited_for_by_the_shared_poll_alone(cloud: FakeCloud, provider: OpenStackProvider) -> None:
    from dcctl.providers.base import PermanentError

    queries: list[dict[str, Any]] = []
    changed = [Obj(id="n1", status="BUILD", fault=None, updated_at="2026-11-26T10:00:05Z")]

    def servers(**query: Any) -> Iterator[Any]:
        queries.append(query)
        return iter(changed)

    cloud.compute.__dict__["servers"] = servers
    provider._server_watch().interval = 0
    provider._server_watch().building("n2")  # what a create tells the poll
    assert not provider._server_ready("n1", "dcctl-n1")
    assert not provider._server_ready("n2", "dcctl-n2")  # not listed yet: still building, and not read by itself
    changed[:] = [
        Obj(id="n1", status="ACTIVE", fault=None, updated_at="2026-11-26T10:00:09Z"),
        Obj(id="n2", status="ERROR", fault={"message": "No valid host was found."}, updated_at="2026-11-26T10:00:09Z"),
    ]
    assert provider._server_ready("n1", "dcctl-n1")
    with pytest.raises(PermanentError, match=r"went to ERROR.*No valid host"):
        provider._server_ready("n2", "dcctl-n2")
    # the live servers changed since dcctl's token was issued (nova's clock, a minute's margin), then since the last
    # change seen; never the deleted ones, which nova lists with changes-since unless told not to
    assert [q["changes_since"] for q in queries] == [
        "2026-11-26T09:59:00Z",
        "2026-11-26T10:00:03Z",
        "2026-11-26T10:00:03Z",
        "2026-11-26T10:00:07Z",
    ]
    assert all(q["deleted"] is False and q["all_projects"] for q in queries)
