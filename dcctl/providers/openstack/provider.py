"""The OpenStack provider: the only module (with ``errors.py``) that imports openstacksdk.

**Observe** lists each kind once per cloud with the cloud's admin credentials — domains, projects, groups, role
assignments (direct, and effective ones for the members of dcctl's groups when it has any; filtered server-side to the
``member`` role, whose id comes with dcctl's token), flavors, images, servers (all projects, server-side name filter
``^dcctl-``), server groups, volumes (their attachments come with them), neutron networks, subnets, routers, router
ports (filtered to router interfaces; when dcctl has routers) and security groups (rules included), and neutron's
quotas of every project: 14 to 16 lists whatever the estate's size, in parallel, on one token. Neutron objects are
listed for all projects, so an object with dcctl's marks left in a project that is gone is found and deleted; a
look-alike without marks counts as foreign only inside dcctl's projects. Nova and cinder have no call that lists many
projects' quotas, so dcctl records the compute and volume quotas it set as project tags and plans against those (a
hand change to them is not seen; neutron's are read back). No resource is fetched one by one.

**Apply** creates and updates with the admin connection where OpenStack lets an admin act for a project (keystone,
neutron, quotas, flavors, images) and with a connection scoped to the tenancy's project where it does not (nova
servers and server groups, cinder volumes): dcctl's cloud user holds the ``member`` role on each tenancy project for
that (the ``role_assignment:dcctl`` resource). Every create is idempotent: names are a pure function of inventory
keys, marks go in with the create call, and a retried or resumed create looks for its object first. Every wait has a
deadline and failure states (one helper, ``_wait``); server status is polled for all waiting servers with one list
call of the live servers nova changed since the last (``changes-since``, ``deleted=false``), not one GET per server: a
server just created is known to be building without a read of its own. A server in ERROR fails with nova's fault
message.

Credentials come from ``clouds.yaml`` (``OS_CLIENT_CONFIG_FILE``, the cloud named by the backend) and never leave
openstacksdk: no auth value is put in an observation, a log line or an error message (secret values are scrubbed
from every message dcctl builds).
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import shutil
import tempfile
import threading
import time
import urllib.request
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, ClassVar, TypeVar, cast

import openstack
from keystoneauth1.access import AccessInfo
from keystoneauth1.identity.base import BaseIdentityPlugin
from openstack import exceptions as os_exc
from openstack.compute.v2.server import Server as _Server
from openstack.connection import Connection
from openstack.identity.v3._proxy import Proxy as IdentityProxy
from openstack.image.v2._proxy import Proxy as ImageProxy

from dcctl import __version__, failpoints
from dcctl.diagnostics import Diagnostics
from dcctl.inventory import Inventory
from dcctl.inventory.model import OpenStackBackend
from dcctl.placement import Server
from dcctl.providers.base import (
    Conflict,
    FieldChanges,
    NotFound,
    PermanentError,
    ProgressCallback,
    ProviderError,
    TransientError,
    wait_until,
)
from dcctl.providers.openstack import mapping
from dcctl.providers.openstack.errors import SDK_ERRORS, scrub, secrets_of, translate
from dcctl.resources import NAME_PREFIX, DesiredResource, ObservedResource

T = TypeVar("T")
JSON = dict[str, Any]

#: nova statuses from which a server does not become ACTIVE by waiting
_SERVER_FAILED = {"ERROR", "DELETED", "SOFT_DELETED", "SHELVED", "SHELVED_OFFLOADED"}
_VOLUME_FAILED = {"error", "error_extending", "error_deleting", "error_restoring"}
#: seconds after which a server the shared poll has not seen change is read by itself (a change nova committed after
#: the poll's margin, or a server made before the poll began)
_STALE = 30.0


def identity(conn: Connection) -> IdentityProxy:
    return cast(IdentityProxy, conn.identity)


def _timestamp(value: str | None) -> datetime | None:
    if not value:
        return None
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


class _ServerWatch:
    """The status of every server being waited for, refreshed by one list call (``changes-since``) per interval for
    all of them. ``since`` is on nova's clock: where the last list's newest change was, less a margin for changes
    committed late; at first, when dcctl's token was issued (before anything this run made)."""

    def __init__(self, fetch: Callable[[str], list[Any]], since: datetime, interval: float = 1.0) -> None:
        self.fetch = fetch
        self.interval = interval
        self.lock = threading.Lock()
        self.known: dict[str, JSON] = {}
        self.at = 0.0
        self.since = since

    def status(self, server_id: str) -> JSON | None:
        with self.lock:
            if time.monotonic() - self.at >= self.interval:
                newest = self.since
                for s in self.fetch(self.since.strftime("%Y-%m-%dT%H:%M:%SZ")):
                    self.known[s.id] = {"status": s.status, "fault": s.fault, "at": time.monotonic()}
                    updated = _timestamp(s.updated_at)
                    if updated is not None and updated - timedelta(seconds=2) > newest:
                        newest = updated - timedelta(seconds=2)
                self.since = newest
                self.at = time.monotonic()
            return self.known.get(server_id)

    def learn(self, server_id: str, info: JSON) -> None:
        with self.lock:
            self.known[server_id] = {**info, "at": time.monotonic()}

    def building(self, server_id: str) -> None:
        """A server nova has just accepted: building, unless a list has already said more (no read of its own)."""
        with self.lock:
            self.known.setdefault(server_id, {"status": "BUILD", "fault": None, "at": time.monotonic()})


class OpenStackProvider:
    name: ClassVar[str] = "openstack"
    kinds: ClassVar[tuple[str, ...]] = mapping.KINDS

    def __init__(self, backend: OpenStackBackend, province: str) -> None:
        self.backend = backend
        self.province = province
        self.cloud = backend.cloud
        self.diagnostics = Diagnostics()
        self._conn: Connection | None = None
        self._scoped: dict[str, Connection] = {}
        self._lock = threading.RLock()
        self._locks: dict[str, threading.Lock] = {}
        self._ids: dict[tuple[str, str], str] = {}
        self._attempted: set[str] = set()
        self._secrets: list[str] = []
        self._roles: dict[str, str] = {}
        self._watches: dict[bool, _ServerWatch] = {}

    # ---------------------------------------------------------------------------------------------- connections
    def _admin(self) -> Connection:
        with self._lock:
            if self._conn is None:
                try:
                    conn = openstack.connect(
                        cloud=self.cloud, region_name=self.backend.region, app_name="dcctl", app_version=__version__
                    )
                    self._secrets = secrets_of(conn.config.config.get("auth"))
                except SDK_ERRORS as exc:
                    raise self._translate(exc, f"connecting to cloud '{self.cloud}'") from None
                self._conn = conn
            return self._conn

    def _project_conn(self, project_id: str) -> Connection:
        """A connection scoped to a tenancy's project (nova and cinder create in the token's project)."""
        with self._lock:
            found = self._scoped.get(project_id)
            if found is None:
                found = self._admin().connect_as_project({"id": project_id})
                self._scoped[project_id] = found
            return found

    def _token(self) -> AccessInfo:
        """dcctl's token on the admin connection: fetched once, renewed by keystoneauth only as it nears expiry."""
        conn = self._admin()
        return cast(BaseIdentityPlugin, conn.session.auth).get_access(conn.session)

    def _translate(self, exc: BaseException, what: str) -> ProviderError:
        return translate(exc, what, cloud=self.cloud, secrets=self._secrets)

    def _call(self, what: str, fn: Callable[[], T]) -> T:
        try:
            return fn()
        except SDK_ERRORS as exc:
            raise self._translate(exc, what) from None

    def _keyed_lock(self, key: str) -> threading.Lock:
        with self._lock:
            return self._locks.setdefault(key, threading.Lock())

    def _remember(self, kind: str, name: str, rid: str) -> str:
        with self._lock:
            self._ids[(kind, name)] = rid
        return rid

    def _forget(self, kind: str, name: str) -> None:
        with self._lock:
            self._ids.pop((kind, name), None)

    def _known(self, kind: str, name: str) -> str | None:
        with self._lock:
            return self._ids.get((kind, name))

    def _ours(self, found: dict[str, str], prefix: str = "") -> bool:
        key = found.get("key", "")
        return (
            found.get("province") == self.province
            and found.get("backend") == self.backend.id
            and bool(key)
            and key.startswith(prefix)
        )

    # ---------------------------------------------------------------------------------------------- desired
    def desired(self, inv: Inventory, servers: Iterable[Server]) -> list[DesiredResource]:
        result = mapping.desired_for(inv, self.backend, servers, self.province)
        self.diagnostics = result.diagnostics
        return result.resources

    # ---------------------------------------------------------------------------------------------- observe
    def observe(self) -> list[ObservedResource]:
        """One list call per kind (see the module docstring); foreign look-alikes come back ``managed=False``."""
        try:
            return self._observe()
        except SDK_ERRORS as exc:
            raise self._translate(exc, f"observing {self.backend.id}") from None

    def _observe(self) -> list[ObservedResource]:
        conn = self._admin()
        prefix = f"^{NAME_PREFIX}"
        _ = conn.session  # the keystoneauth session is made here, not by racing workers (one token, one catalog)
        # Every list at once, with two exceptions that keep keystone (every other service's bottleneck while dcctl's
        # token is new) from thrashing: each service answers one cheap list first, so that it checks the token with
        # keystone once and caches it (lists arriving together would each have it checked), and keystone's own lists
        # wait for nova's first answer (they are never on the longest path; the other services' token checks are).
        # A task waits only for tasks submitted before it, so the pool (as wide as the tasks) cannot deadlock.
        with ThreadPoolExecutor(max_workers=24) as pool:
            services = ("identity", "compute", "image", "block_storage", "network")
            proxies = {s: pool.submit(getattr, conn, s) for s in services}  # each one's version discovery, once

            def lists(service: str, method: str, after: Future[Any] | None = None, **query: Any) -> Future[list[Any]]:
                def run() -> list[Any]:
                    if after is not None:
                        after.exception()  # wait for it; its failure is reported by its own result()
                    return list(getattr(proxies[service].result(), method)(**query))

                return pool.submit(run)

            def if_ours(first: Future[list[Any]], fetch: Callable[[], Iterable[Any]]) -> Future[list[Any]]:
                """``fetch()``'s list once ``first`` has come back holding an object of dcctl's, else nothing."""
                return pool.submit(
                    lambda: (
                        list(fetch())
                        if any(self._ours(mapping.parse_description(i.description)) for i in first.result())
                        else []
                    )
                )

            def assignments(**query: Any) -> list[Any]:
                member = f_member.result()
                ident = cast(IdentityProxy, proxies["identity"].result())
                return list(ident.role_assignments(role_id=member, include_names=True, **query)) if member else []

            f_flavors = lists("compute", "flavors", details=True, is_public=None)
            f_nquotas = lists("network", "quotas")
            f_images = lists("image", "images")
            f_volumes = lists("block_storage", "volumes", details=True, all_projects=True)
            f_member = pool.submit(self._find_role, mapping.MEMBER_ROLE)
            f_servers = lists("compute", "servers", f_flavors, details=True, all_projects=True, name=prefix)
            f_sgroups = lists("compute", "server_groups", f_flavors, all_projects=True)
            # neutron objects of all projects: an object with dcctl's marks left in a project that is gone is found
            f_networks = lists("network", "networks", f_nquotas)
            f_subnets = lists("network", "subnets", f_nquotas)
            f_routers = lists("network", "routers", f_nquotas)
            f_sgs = lists("network", "security_groups", f_nquotas)
            f_ports = if_ours(
                f_routers, lambda: proxies["network"].result().ports(device_owner="network:router_interface")
            )
            f_domains = lists("identity", "domains", f_flavors)
            f_projects = lists("identity", "projects", f_flavors)
            f_groups = lists("identity", "groups", f_flavors)
            f_direct = pool.submit(assignments)
            f_effective = if_ours(f_groups, lambda: assignments(effective=True))  # the members of dcctl's groups

            domains = f_domains.result()
            projects = f_projects.result()
            me = conn.current_user_id or ""

            out: list[ObservedResource] = []
            domain_names = {d.id: d.name for d in domains}
            for d in domains:
                if not d.name.startswith(NAME_PREFIX):
                    continue
                found = mapping.parse_description(d.description)
                ours = self._ours(found, f"backend:{self.backend.id}/domain:")
                attrs = {"id": d.id, "is_domain": True, "description": d.description, "enabled": d.is_enabled}
                if ours:
                    self._remember("domain", d.name, d.id)
                out.append(self._obs("project", found, ours, f"project:{d.name}", d.name, d.id, attrs))

            ours_projects: dict[str, ObservedResource] = {}
            for p in projects:
                if not p.name.startswith(NAME_PREFIX):
                    continue
                found = mapping.parse_description(p.description)
                ours = self._ours(found, "tenancy:")
                tags = list(p.tags or [])
                attrs = {
                    "id": p.id,
                    "domain": domain_names.get(p.domain_id, p.domain_id),
                    "description": p.description,
                    "enabled": p.is_enabled,
                    "tags": sorted(t for t in tags if not t.startswith(mapping.QUOTA_TAG_PREFIX)),
                    "quota_marks": mapping.parse_quota_tags(tags),
                }
                res = self._obs("project", found, ours, f"project:{p.name}", p.name, p.id, attrs)
                out.append(res)
                if ours:
                    self._remember("project", p.name, p.id)
                    ours_projects[p.id] = res
            existing = {p.id for p in projects}

            out += self._observe_groups(f_groups.result(), domain_names, f_effective.result())
            out += self._observe_assignments(f_direct.result(), ours_projects, out, me)
            out += self._observe_quotas(ours_projects, f_nquotas.result())
            out += self._observe_flavors(f_flavors.result())
            out += self._observe_images(f_images.result())
            servers = self._observe_servers(f_servers.result(), ours_projects, f_sgroups.result())
            out += servers
            out += self._observe_volumes(f_volumes.result(), ours_projects, servers)
            out += self._observe_server_groups(f_sgroups.result(), ours_projects, existing, servers)
            out += self._observe_network(
                f_networks.result(),
                f_subnets.result(),
                f_routers.result(),
                f_ports.result(),
                f_sgs.result(),
                ours_projects,
            )
        return _dedupe(out, set(ours_projects))

    def _obs(
        self, kind: str, found: dict[str, str], ours: bool, fallback: str, name: str, rid: str, attrs: JSON
    ) -> ObservedResource:
        key = found["key"] if ours else fallback
        return ObservedResource(kind, key, self.backend.id, name, rid, attrs, ours)

    def _observe_groups(
        self, groups: list[Any], domain_names: dict[str, str], effective: list[Any]
    ) -> list[ObservedResource]:
        members: dict[str, set[str]] = {}
        for ra in effective:
            link = (ra.links or {}).get("membership") or ""
            if "/groups/" in link and ra.user:
                gid = link.split("/groups/", 1)[1].split("/", 1)[0]
                members.setdefault(gid, set()).add(ra.user.get("name") or ra.user.get("id"))
        out = []
        for g in groups:
            if not g.name.startswith(NAME_PREFIX):
                continue
            found = mapping.parse_description(g.description)
            ours = self._ours(found, "tenancy:")
            attrs = {
                "id": g.id,
                "domain": domain_names.get(g.domain_id, g.domain_id),
                "description": g.description,
                "members": sorted(members.get(g.id, ())),
            }
            if ours:
                self._remember("group", g.name, g.id)
            out.append(self._obs("group", found, ours, f"group:{g.name}", g.name, g.id, attrs))
        return out

    def _observe_assignments(
        self, direct: list[Any], projects: dict[str, ObservedResource], seen: list[ObservedResource], me: str
    ) -> list[ObservedResource]:
        groups = {r.provider_id: r for r in seen if r.kind == "group" and r.managed}
        out = []
        for ra in direct:
            project = projects.get(((ra.scope or {}).get("project") or {}).get("id", ""))
            if project is None:
                continue
            tenancy = project.key.split("/", 1)[0]
            role_id = (ra.role or {}).get("id")
            if ra.group and ra.group.get("id") in groups:
                group = groups[ra.group["id"]]
                name, key, actor = (
                    f"{group.name}@{project.name}",
                    f"{tenancy}/role_assignment:admins",
                    group.provider_id,
                )
            elif ra.user and ra.user.get("id") == me:
                name, key, actor = f"{project.name}-dcctl@{project.name}", f"{tenancy}/role_assignment:dcctl", me
            else:
                continue  # the tenancy's own users: its administrators' business
            attrs = {"project_id": project.provider_id, "actor_id": actor, "role_id": role_id}
            out.append(
                ObservedResource("role_assignment", key, self.backend.id, name, f"{project.provider_id}/{actor}", attrs)
            )
        return out

    def _observe_quotas(self, projects: dict[str, ObservedResource], network: list[Any]) -> list[ObservedResource]:
        by_project = {q.project_id: q for q in network}
        out = []
        for pid, project in projects.items():
            marks = dict(project.attrs.get("quota_marks") or {})
            nq = by_project.get(pid)
            if not marks and nq is None:
                continue
            values: JSON = {"compute": marks.get("compute", {}), "volume": marks.get("volume", {}), "network": {}}
            if nq is not None:
                values["network"] = {
                    k: getattr(nq, attr)
                    for k, attr in (
                        ("network", "networks"),
                        ("subnet", "subnets"),
                        ("router", "routers"),
                        ("port", "ports"),
                        ("floatingip", "floating_ips"),
                        ("security_group", "security_groups"),
                        ("security_group_rule", "security_group_rules"),
                    )
                }
            key = project.key.split("/", 1)[0] + "/quota"
            out.append(ObservedResource("quota", key, self.backend.id, project.name, pid, values))
        return out

    def _observe_flavors(self, flavors: list[Any]) -> list[ObservedResource]:
        out = []
        for f in flavors:
            if not f.name.startswith(NAME_PREFIX):
                continue
            found = mapping.parse_description(f.description)
            ours = self._ours(found, "flavor:")
            attrs = {
                "id": f.id,
                "vcpus": f.vcpus,
                "ram_mb": f.ram,
                "disk_gb": f.disk,
                "description": f.description,
                "public": f.is_public,
            }
            if ours:
                self._remember("flavor", f.name, f.id)
            out.append(self._obs("flavor", found, ours, f"flavor:{f.name}", f.name, f.id, attrs))
        return out

    def _observe_images(self, images: list[Any]) -> list[ObservedResource]:
        out = []
        for i in images:
            if not (i.name or "").startswith(NAME_PREFIX):
                continue
            props = dict(i.properties or {})
            found = mapping.parse_metadata(props)
            ours = self._ours(found, "image:")
            attrs = {
                "id": i.id,
                "status": i.status,
                "sha256": props.get("dcctl_sha256"),
                "source": props.get("dcctl_source"),
                "disk_format": i.disk_format,
                "min_disk_gb": i.min_disk,
            }
            if ours:
                self._remember("image", i.name, i.id)
            out.append(self._obs("image", found, ours, f"image:{i.name}", i.name, i.id, attrs))
        return out

    def _observe_servers(
        self, servers: list[Any], projects: dict[str, ObservedResource], sgroups: list[Any]
    ) -> list[ObservedResource]:
        group_of = {m: g.name for g in sgroups for m in g.member_ids or []}  # nova lists no server_groups
        out = []
        for s in servers:
            if not s.name.startswith(NAME_PREFIX) or s.status in ("DELETED", "SOFT_DELETED"):
                continue  # a deleted server nova still lists while its host cleans up is gone for dcctl
            found = mapping.parse_metadata(s.metadata)
            ours = self._ours(found, "server:")
            if not ours and s.project_id not in projects:
                continue  # a look-alike in somebody else's project is not in dcctl's way
            flavor = s.flavor or {}
            fault = s.fault or {}
            attrs = {
                "id": s.id,
                "project_id": s.project_id,
                "status": s.status,
                "running": s.status == "ACTIVE",
                "task_state": s.task_state,
                "vcpus": flavor.get("vcpus"),
                "ram_mb": flavor.get("ram"),
                "disk_gb": flavor.get("disk"),
                "flavor": flavor.get("original_name"),
                "image_id": (s.image or {}).get("id"),
                "networks": sorted((s.addresses or {}).keys()),
                "security_groups": sorted({g.get("name") for g in (s.security_groups or []) if g.get("name")}),
                "server_group": group_of.get(s.id),
                "fault": fault.get("message"),
            }
            if ours:
                self._remember("server", s.name, s.id)
            out.append(self._obs("server", found, ours, f"server:{s.name}", s.name, s.id, attrs))
        return out

    def _observe_volumes(
        self, volumes: list[Any], projects: dict[str, ObservedResource], servers: list[ObservedResource]
    ) -> list[ObservedResource]:
        by_id = {s.provider_id: s for s in servers if s.managed}
        out = []
        for v in volumes:
            if not (v.name or "").startswith(NAME_PREFIX):
                continue
            found = mapping.parse_metadata(v.metadata)
            ours = self._ours(found, "server:")
            if not ours and v.project_id not in projects:
                continue
            attachments = [a for a in (v.attachments or []) if a.get("server_id")]
            attrs = {
                "id": v.id,
                "project_id": v.project_id,
                "size_gb": v.size,
                "status": v.status,
                "servers": sorted(by_id[a["server_id"]].name for a in attachments if a["server_id"] in by_id),
            }
            out.append(self._obs("volume", found, ours, f"volume:{v.name}", v.name, v.id, attrs))
            if not ours:
                continue
            self._remember("volume", v.name, v.id)
            for a in attachments:
                server = by_id.get(a["server_id"])
                if server is None:
                    continue
                akey = found["key"].replace("/disk:", "/attachment:")
                aattrs = {"server": server.name, "server_id": server.provider_id, "volume_id": v.id}
                out.append(
                    ObservedResource(
                        "volume_attachment", akey, self.backend.id, v.name, f"{server.provider_id}/{v.id}", aattrs
                    )
                )
        return out

    def _observe_server_groups(
        self,
        sgroups: list[Any],
        projects: dict[str, ObservedResource],
        existing: set[str],
        servers: list[ObservedResource],
    ) -> list[ObservedResource]:
        """Server groups carry no marks: dcctl's are those with its names in its projects, and (left behind) in a
        project that no longer exists."""
        keys = {s.provider_id: s.key for s in servers if s.managed}
        out = []
        for g in sgroups:
            if not g.name.startswith(NAME_PREFIX) or (g.project_id not in projects and g.project_id in existing):
                continue
            key = f"server_group:{g.name}"
            for member in g.member_ids or []:
                if member in keys:  # server:<workload>/<group>/<n> → workload:<workload>/server_group:<group>
                    workload, group, _ = keys[member].removeprefix("server:").split("/", 2)
                    key = f"workload:{workload}/server_group:{group}"
                    break
            attrs = {"id": g.id, "project_id": g.project_id, "policy": g.policy, "members": len(g.member_ids or [])}
            self._remember("server_group", g.name, g.id)
            out.append(ObservedResource("server_group", key, self.backend.id, g.name, g.id, attrs))
        return out

    def _observe_network(
        self,
        networks: list[Any],
        subnets: list[Any],
        routers: list[Any],
        ports: list[Any],
        sgs: list[Any],
        projects: dict[str, ObservedResource],
    ) -> list[ObservedResource]:
        out: list[ObservedResource] = []
        net_names = {n.id: n.name for n in networks}
        subnet_names = {s.id: s.name for s in subnets}
        for n in networks:
            if not n.name.startswith(NAME_PREFIX):
                continue
            found = mapping.parse_description(n.description)
            ours = self._ours(found, "tenancy:")
            attrs = {
                "id": n.id,
                "project_id": n.project_id,
                "description": n.description,
                "status": n.status,
                "active": n.status == "ACTIVE",
            }
            if ours:
                self._remember("network", n.name, n.id)
            out.append(self._obs("network", found, ours, f"network:{n.name}", n.name, n.id, attrs))
        for s in subnets:
            if not (s.name or "").startswith(NAME_PREFIX):
                continue
            found = mapping.parse_description(s.description)
            ours = self._ours(found, "tenancy:")
            attrs = {
                "id": s.id,
                "project_id": s.project_id,
                "network": net_names.get(s.network_id, s.network_id),
                "cidr": s.cidr,
                "gateway": s.gateway_ip,
                "description": s.description,
            }
            if ours:
                self._remember("subnet", s.name, s.id)
            out.append(self._obs("subnet", found, ours, f"subnet:{s.name}", s.name, s.id, attrs))
        interfaces: dict[str, list[str]] = {}
        for p in ports:
            for ip in p.fixed_ips or []:
                interfaces.setdefault(p.device_id, []).append(
                    subnet_names.get(ip.get("subnet_id"), ip.get("subnet_id"))
                )
        for r in routers:
            if not (r.name or "").startswith(NAME_PREFIX):
                continue
            found = mapping.parse_description(r.description)
            ours = self._ours(found, "tenancy:")
            attrs = {
                "id": r.id,
                "project_id": r.project_id,
                "description": r.description,
                "interfaces": sorted(interfaces.get(r.id, [])),
            }
            if ours:
                self._remember("router", r.name, r.id)
            out.append(self._obs("router", found, ours, f"router:{r.name}", r.name, r.id, attrs))
        for g in sgs:
            if not (g.name or "").startswith(NAME_PREFIX):
                continue
            found = mapping.parse_description(g.description)
            ours = self._ours(found, "tenancy:")
            rules = [(mapping.normal_rule(r), r.get("id")) for r in (g.security_group_rules or [])]
            attrs = {
                "id": g.id,
                "project_id": g.project_id,
                "description": g.description,
                "rules": sorted((r for r, _ in rules), key=mapping.rule_sort_key),
                "rule_ids": [[mapping.rule_sort_key(r), rid] for r, rid in rules],
            }
            if ours:
                self._remember("security_group", g.name, g.id)
            out.append(self._obs("security_group", found, ours, f"security_group:{g.name}", g.name, g.id, attrs))
        # a look-alike without marks matters only inside dcctl's projects (neutron names are not unique)
        return [r for r in out if r.managed or r.attrs.get("project_id") in projects]

    # ------------------------------------------------------------------------------------------------- plan
    def plan(self, desired: DesiredResource, observed: ObservedResource) -> FieldChanges:
        spec, attrs = desired.spec, observed.attrs
        changed: list[str] = []
        replace: list[str] = []
        before: JSON = {}
        after: JSON = {}

        def differ(field: str, want: Any, have: Any, *, forces_replace: bool = False) -> None:
            if want != have:
                changed.append(field)
                before[field], after[field] = have, want
                if forces_replace:
                    replace.append(field)

        kind = desired.kind
        if kind == "project" and spec.get("is_domain"):
            differ("description", spec["description"], attrs.get("description"))
            differ("enabled", True, attrs.get("enabled"))
        elif kind == "project":
            differ("domain", spec["domain"], attrs.get("domain"), forces_replace=True)
            differ("description", spec["description"], attrs.get("description"))
            differ("enabled", True, attrs.get("enabled"))
            differ("tags", sorted(spec["tags"]), attrs.get("tags"))
        elif kind == "group":
            differ("domain", spec["domain"], attrs.get("domain"), forces_replace=True)
            differ("description", spec["description"], attrs.get("description"))
            differ("members", list(spec["members"]), attrs.get("members"))
        elif kind == "quota":
            for service in ("compute", "volume", "network"):
                have = attrs.get(service) or {}
                for field, want in sorted(spec[service].items()):
                    differ(field, want, have.get(field))
        elif kind == "security_group":
            differ("description", spec["description"], attrs.get("description"))
            differ("rules", list(spec["rules"]), attrs.get("rules"))
        elif kind == "server_group":
            differ("policy", spec["policy"], attrs.get("policy"), forces_replace=True)
        elif kind == "network":
            differ("description", spec["description"], attrs.get("description"))
        elif kind == "subnet":
            differ("network", spec["network"], attrs.get("network"), forces_replace=True)
            differ("cidr", spec["cidr"], attrs.get("cidr"), forces_replace=True)
            differ("gateway", spec["gateway"], attrs.get("gateway"))
            differ("description", spec["description"], attrs.get("description"))
        elif kind == "router":
            differ("description", spec["description"], attrs.get("description"))
            differ("interfaces", list(spec["interfaces"]), attrs.get("interfaces"))
        elif kind == "volume":
            status = attrs.get("status")
            differ("status", "usable", "usable" if status not in _VOLUME_FAILED else status, forces_replace=True)
            have = attrs.get("size_gb")
            if have is not None and spec["size_gb"] > have:
                differ("size_gb", spec["size_gb"], have)
        elif kind == "server":
            status = attrs.get("status")
            differ("status", "ACTIVE", status, forces_replace=status in _SERVER_FAILED)
            for field in ("vcpus", "ram_mb", "disk_gb"):
                differ(field, spec[field], attrs.get(field))
            image = self._known("image", spec["image"])
            if image is not None and attrs.get("image_id") and attrs.get("image_id") != image:
                differ("image", spec["image"], attrs.get("image_id"), forces_replace=True)
            differ("networks", sorted(spec["networks"]), attrs.get("networks"), forces_replace=True)
            differ("security_groups", sorted(spec["security_groups"]), attrs.get("security_groups"))
            differ("server_group", spec["server_group"], attrs.get("server_group"), forces_replace=True)
        elif kind == "volume_attachment":
            differ("server", spec["server"], attrs.get("server"), forces_replace=True)
        elif kind == "flavor":
            for field in ("vcpus", "ram_mb", "disk_gb"):
                differ(field, spec[field], attrs.get(field), forces_replace=True)
            differ("description", spec["description"], attrs.get("description"))
        elif kind == "image":
            differ("status", "active", attrs.get("status"), forces_replace=True)
            if spec.get("checksum"):  # the content, wherever the inventory (and so the file) now lives
                differ("sha256", spec["checksum"].removeprefix("sha256:"), attrs.get("sha256"), forces_replace=True)
            else:
                differ("source", spec.get("source_as_written"), attrs.get("source"), forces_replace=True)
        return FieldChanges(tuple(changed), tuple(replace), before or None, after or None)

    # ------------------------------------------------------------------------------------------------ apply
    def apply(
        self,
        desired: DesiredResource,
        observed: ObservedResource | None,
        *,
        deadline: float,
        on_progress: ProgressCallback,
    ) -> ObservedResource:
        if observed is not None:
            self.verify_owned(observed)
        what = f"{desired.kind} {desired.name}"
        retry = desired.key in self._attempted
        self._attempted.add(desired.key)
        handlers: dict[str, Callable[..., str]] = {
            "project": self._apply_project,
            "group": self._apply_group,
            "role_assignment": self._apply_role_assignment,
            "quota": self._apply_quota,
            "security_group": self._apply_security_group,
            "server_group": self._apply_server_group,
            "network": self._apply_network,
            "subnet": self._apply_subnet,
            "router": self._apply_router,
            "volume": self._apply_volume,
            "server": self._apply_server,
            "volume_attachment": self._apply_attachment,
            "flavor": self._apply_flavor,
            "image": self._apply_image,
        }
        handler = handlers.get(desired.kind)
        if handler is None:
            raise PermanentError(f"OpenStack provider cannot make a {desired.kind}")
        try:
            rid = handler(desired, observed, retry=retry, deadline=deadline, on_progress=on_progress)
        except SDK_ERRORS as exc:
            raise self._translate(exc, f"applying {what}") from None
        return ObservedResource(desired.kind, desired.key, self.backend.id, desired.name, rid)

    def _marks(self, desired: DesiredResource) -> dict[str, str]:
        return mapping.metadata(self.province, self.backend.id, desired.key)

    def _find_one(self, kind: str, name: str, items: Iterable[Any], marks_of: Callable[[Any], dict[str, str]]) -> Any:
        """The object with dcctl's marks among same-named ones (after a crash or a retried create); a same-named
        object without them is foreign and stops the change."""
        found = [i for i in items if i.name == name]
        ours = [i for i in found if self._ours(marks_of(i))]
        if ours:
            return ours[0]
        if found:
            raise Conflict(
                f"{kind} '{name}' exists on cloud '{self.cloud}' but was not created by dcctl (id {found[0].id})",
                hint="dcctl never touches it: rename or remove it by hand, or give the dcctl object another id",
            )
        return None

    def _need(self, kind: str, name: str, lookup: Callable[[], Iterable[Any]]) -> str:
        """The id of a dcctl object this change depends on: from observation or an earlier step, else one lookup."""
        rid = self._known(kind, name)
        if rid is not None:
            return rid
        found = [i for i in lookup() if i.name == name]
        if not found:
            raise TransientError(f"{kind} '{name}' that this change needs does not exist (yet) on '{self.cloud}'")
        return self._remember(kind, name, found[0].id)

    # identity ---------------------------------------------------------------------------------------------
    def _domain(self, name: str, description: str) -> str:
        """Find or create the data center's domain (tenancy projects and groups make sure it exists first)."""
        rid = self._known("domain", name)
        if rid is not None:
            return rid
        with self._keyed_lock(f"domain:{name}"):
            rid = self._known("domain", name)
            if rid is not None:
                return rid
            ident = identity(self._admin())
            existing = self._find_one(
                "domain", name, ident.domains(name=name), lambda d: mapping.parse_description(d.description)
            )
            if existing is None:
                existing = ident.create_domain(name=name, description=description, enabled=True)
                failpoints.reach("openstack.domain-created")
            return self._remember("domain", name, existing.id)

    def _apply_project(self, desired: DesiredResource, observed: ObservedResource | None, **kw: Any) -> str:
        spec = desired.spec
        ident = identity(self._admin())
        if spec.get("is_domain"):
            rid = self._domain(desired.name, spec["description"])
            if observed is not None:
                ident.update_domain(rid, description=spec["description"], enabled=True)
            return rid
        domain_id = self._domain(spec["domain"], spec["domain_description"])
        if observed is not None:
            rid = observed.provider_id
            current = ident.get_project(rid)
            keep = [t for t in (current.tags or []) if t.startswith(mapping.QUOTA_TAG_PREFIX)]
            ident.update_project(
                rid, description=spec["description"], is_enabled=True, tags=sorted(spec["tags"]) + keep
            )
            return rid
        existing = None
        if kw["retry"]:
            existing = self._find_one(
                "project",
                desired.name,
                ident.projects(domain_id=domain_id, name=desired.name),
                lambda p: mapping.parse_description(p.description),
            )
        if existing is None:
            existing = ident.create_project(
                name=desired.name,
                domain_id=domain_id,
                description=spec["description"],
                tags=sorted(spec["tags"]),
                is_enabled=True,
            )
            failpoints.reach("openstack.project-created")
        return self._remember("project", desired.name, existing.id)

    def _project_id(self, name: str) -> str:
        ident = identity(self._admin())
        return self._need("project", name, lambda: ident.projects(name=name))

    def _apply_group(self, desired: DesiredResource, observed: ObservedResource | None, **kw: Any) -> str:
        spec = desired.spec
        ident = identity(self._admin())
        domain_id = self._domain(spec["domain"], spec["domain_description"])
        if observed is not None:
            rid = observed.provider_id
            if observed.attrs.get("description") != spec["description"]:
                ident.update_group(rid, description=spec["description"])
        else:
            existing = None
            if kw["retry"]:
                existing = self._find_one(
                    "group",
                    desired.name,
                    ident.groups(domain_id=domain_id, name=desired.name),
                    lambda g: mapping.parse_description(g.description),
                )
            if existing is None:
                existing = ident.create_group(name=desired.name, domain_id=domain_id, description=spec["description"])
                failpoints.reach("openstack.group-created")
            rid = self._remember("group", desired.name, existing.id)
        # membership: the YAML's admins, no one else (users live in the identity backend; dcctl never creates them)
        want = set(spec["members"])
        users = {u.name: u.id for u in ident.users(domain_id=domain_id)} if want else {}
        missing = sorted(want - set(users))
        current = {u.name: u.id for u in ident.group_users(rid)}
        for name in sorted(set(current) - want):
            ident.remove_user_from_group(current[name], rid)
        for name in sorted((want & set(users)) - set(current)):
            ident.add_user_to_group(users[name], rid)
        if missing:
            raise PermanentError(
                f"administrators {', '.join(missing)} of '{desired.key.split('/')[0]}' are no users of domain "
                f"'{spec['domain']}' on cloud '{self.cloud}'",
                hint="create them in the identity backend (LDAP or keystone) first, or remove them from 'admins:'",
            )
        return rid

    def _find_role(self, name: str) -> str | None:
        """A role's id: from dcctl's own token when keystone lists the role there (it adds implied roles: ``admin``
        implies ``member``), else one lookup; None if the cloud has no such role."""
        rid = self._roles.get(name)
        if rid is None:
            access = self._token()
            rid = dict(zip(access.role_names or [], access.role_ids or [], strict=True)).get(name)
            if rid is None:
                rid = next((r.id for r in identity(self._admin()).roles(name=name)), None)
            if rid is not None:
                self._roles[name] = rid
        return rid

    def _role(self, name: str) -> str:
        rid = self._find_role(name)
        if rid is None:
            raise PermanentError(f"cloud '{self.cloud}' has no role '{name}'")
        return rid

    def _apply_role_assignment(self, desired: DesiredResource, observed: ObservedResource | None, **kw: Any) -> str:
        spec = desired.spec
        ident = identity(self._admin())
        project = self._project_id(spec["project"])
        role = self._role(spec["role"])
        if spec["actor"] == "group":
            group = self._need("group", spec["group"], lambda: ident.groups(name=spec["group"]))
            ident.assign_project_role_to_group(project, group, role)
            return f"{project}/{group}"
        me = self._admin().current_user_id or ""
        ident.assign_project_role_to_user(project, me, role)
        return f"{project}/{me}"

    def _apply_quota(self, desired: DesiredResource, observed: ObservedResource | None, **kw: Any) -> str:
        spec = desired.spec
        conn = self._admin()
        project = self._project_id(spec["project"])
        conn.compute.update_quota_set(project, **spec["compute"])
        failpoints.reach("openstack.quota-compute-set")
        conn.block_storage.update_quota_set(project, **spec["volume"])
        conn.network.update_quota(project, **spec["network"])
        ident = identity(conn)
        current = ident.get_project(project)
        tags = [t for t in (current.tags or []) if not t.startswith(mapping.QUOTA_TAG_PREFIX)]
        ident.update_project(project, tags=tags + mapping.quota_tags(spec))  # recorded last: the quota is set
        return project

    # network ----------------------------------------------------------------------------------------------
    def _apply_security_group(
        self, desired: DesiredResource, observed: ObservedResource | None, *, retry: bool, **kw: Any
    ) -> str:
        spec = desired.spec
        net = self._admin().network
        project = self._project_id(spec["project"])
        if observed is None:
            existing = None
            if retry:
                existing = self._find_one(
                    "security group",
                    desired.name,
                    net.security_groups(project_id=project, name=desired.name),
                    lambda g: mapping.parse_description(g.description),
                )
            if existing is None:
                existing = net.create_security_group(
                    name=desired.name, project_id=project, description=spec["description"]
                )
                failpoints.reach("openstack.security-group-created")
            rid = self._remember("security_group", desired.name, existing.id)
        else:
            rid = observed.provider_id
            if observed.attrs.get("description") != spec["description"]:
                net.update_security_group(rid, description=spec["description"])
        group = net.get_security_group(rid)  # its rules, now (neutron adds default egress rules to a new group)
        have: dict[tuple[str, ...], list[str]] = {}
        for r in group.security_group_rules or []:
            have.setdefault(tuple(mapping.rule_sort_key(mapping.normal_rule(r))), []).append(r["id"])
        want = {tuple(mapping.rule_sort_key(r)): r for r in spec["rules"]}
        for key, rule_ids in have.items():
            for i, rule_id in enumerate(rule_ids):
                if key not in want or i > 0:
                    net.delete_security_group_rule(rule_id, ignore_missing=True)
        for key, rule in want.items():
            if key in have:
                continue
            net.create_security_group_rule(
                security_group_id=rid,
                project_id=project,
                direction=rule["direction"],
                ethertype=rule["ethertype"],
                protocol=rule["protocol"],
                port_range_min=rule["port_min"],
                port_range_max=rule["port_max"],
                remote_ip_prefix=rule["remote"],
            )
        return rid

    def _apply_network(
        self, desired: DesiredResource, observed: ObservedResource | None, *, retry: bool, **kw: Any
    ) -> str:
        spec = desired.spec
        net = self._admin().network
        if observed is not None:
            net.update_network(observed.provider_id, description=spec["description"])
            return observed.provider_id
        project = self._project_id(spec["project"])
        existing = None
        if retry:
            existing = self._find_one(
                "network",
                desired.name,
                net.networks(project_id=project, name=desired.name),
                lambda n: mapping.parse_description(n.description),
            )
        if existing is None:
            existing = net.create_network(name=desired.name, project_id=project, description=spec["description"])
            failpoints.reach("openstack.network-created")
        return self._remember("network", desired.name, existing.id)

    def _apply_subnet(
        self, desired: DesiredResource, observed: ObservedResource | None, *, retry: bool, **kw: Any
    ) -> str:
        spec = desired.spec
        net = self._admin().network
        if observed is not None:
            net.update_subnet(observed.provider_id, description=spec["description"], gateway_ip=spec["gateway"])
            return observed.provider_id
        project = self._project_id(spec["project"])
        network = self._need("network", spec["network"], lambda: net.networks(project_id=project, name=spec["network"]))
        existing = None
        if retry:
            existing = self._find_one(
                "subnet",
                desired.name,
                net.subnets(project_id=project, name=desired.name),
                lambda s: mapping.parse_description(s.description),
            )
        if existing is None:
            existing = net.create_subnet(
                name=desired.name,
                network_id=network,
                project_id=project,
                cidr=spec["cidr"],
                ip_version=spec["ip_version"],
                gateway_ip=spec["gateway"],
                enable_dhcp=True,
                description=spec["description"],
            )
        return self._remember("subnet", desired.name, existing.id)

    def _apply_router(
        self, desired: DesiredResource, observed: ObservedResource | None, *, retry: bool, **kw: Any
    ) -> str:
        spec = desired.spec
        net = self._admin().network
        project = self._project_id(spec["project"])
        if observed is not None:
            rid = observed.provider_id
            have = set(observed.attrs.get("interfaces") or [])
            if observed.attrs.get("description") != spec["description"]:
                net.update_router(rid, description=spec["description"])
        else:
            existing = None
            if retry:
                existing = self._find_one(
                    "router",
                    desired.name,
                    net.routers(project_id=project, name=desired.name),
                    lambda r: mapping.parse_description(r.description),
                )
            if existing is None:
                existing = net.create_router(name=desired.name, project_id=project, description=spec["description"])
                failpoints.reach("openstack.router-created")
            rid = self._remember("router", desired.name, existing.id)
            ports = net.ports(device_id=rid, device_owner="network:router_interface")
            subnet_names = {s.id: s.name for s in net.subnets(project_id=project)}
            have = {subnet_names.get(ip["subnet_id"], "") for p in ports for ip in p.fixed_ips or []}
        want = set(spec["interfaces"])
        for name in sorted(want - have):
            subnet = self._need("subnet", name, functools.partial(net.subnets, project_id=project, name=name))
            net.add_interface_to_router(rid, subnet=subnet)
        for name in sorted(have - want):
            known = self._known("subnet", name)
            if known is not None:
                net.remove_interface_from_router(rid, subnet=known)
        return rid

    # compute and storage ----------------------------------------------------------------------------------
    def _apply_server_group(
        self, desired: DesiredResource, observed: ObservedResource | None, *, retry: bool, **kw: Any
    ) -> str:
        spec = desired.spec
        project = self._project_id(spec["project"])
        compute = self._project_conn(project).compute
        if observed is not None:
            return observed.provider_id
        existing = None
        if retry:
            found = [g for g in compute.server_groups() if g.name == desired.name]
            existing = found[0] if found else None
        if existing is None:
            existing = compute.create_server_group(name=desired.name, policy=spec["policy"])
        return self._remember("server_group", desired.name, existing.id)

    def _apply_flavor(
        self, desired: DesiredResource, observed: ObservedResource | None, *, retry: bool, **kw: Any
    ) -> str:
        spec = desired.spec
        compute = self._admin().compute
        if observed is not None:
            compute.update_flavor(observed.provider_id, description=spec["description"])
            return observed.provider_id
        existing = None
        if retry:
            existing = self._find_one(
                "flavor",
                desired.name,
                compute.flavors(details=True, is_public=None),
                lambda f: mapping.parse_description(f.description),
            )
        if existing is None:
            existing = compute.create_flavor(
                name=desired.name,
                vcpus=spec["vcpus"],
                ram=spec["ram_mb"],
                disk=spec["disk_gb"],
                description=spec["description"],
                is_public=True,
            )
        return self._remember("flavor", desired.name, existing.id)

    def _apply_image(
        self, desired: DesiredResource, observed: ObservedResource | None, *, retry: bool, on_progress: Any, **kw: Any
    ) -> str:
        spec = desired.spec
        image_api = cast(ImageProxy, self._admin().image)
        if observed is not None:  # nothing about an image is updated in place (plan replaces it)
            return observed.provider_id
        if retry:
            existing = self._find_one(
                "image",
                desired.name,
                image_api.images(name=desired.name),
                lambda i: mapping.parse_metadata(i.properties),
            )
            if existing is not None:
                if existing.status == "active":
                    return self._remember("image", desired.name, existing.id)
                image_api.delete_image(existing, ignore_missing=True)  # a half-made upload: start again
        with _local_copy(spec["source"], desired.name) as path:
            on_progress(f"verifying {path}")
            sha256 = _verify(path, spec.get("checksum"), desired.name)
            on_progress("uploading")
            props = {
                **self._marks(desired),
                "dcctl_sha256": sha256,
                "dcctl_source": spec.get("source_as_written") or "",
            }
            image = image_api.create_image(
                name=desired.name,
                disk_format=spec["disk_format"],
                container_format="bare",
                visibility="public",
                min_disk=spec["min_disk_gb"],
                tags=["dcctl"],
                allow_duplicates=True,
                disable_vendor_agent=False,
                sha256=sha256,
                meta=props,
            )
            failpoints.reach("openstack.image-created")
            with Path(path).open("rb") as data:
                image.data = data
                response = image.upload(image_api)
                os_exc.raise_from_response(response)
        self._wait(
            f"image {desired.name} to become active",
            lambda: self._image_ready(image.id),
            kw["deadline"],
            on_progress,
        )
        return self._remember("image", desired.name, image.id)

    def _image_ready(self, image_id: str) -> bool:
        image = self._admin().image.get_image(image_id)
        if image.status in ("killed", "deleted", "deactivated"):
            raise PermanentError(f"image {image.name} is {image.status} on cloud '{self.cloud}'")
        return bool(image.status == "active")

    def _apply_volume(
        self,
        desired: DesiredResource,
        observed: ObservedResource | None,
        *,
        retry: bool,
        deadline: float,
        on_progress: ProgressCallback,
    ) -> str:
        spec = desired.spec
        project = self._project_id(spec["project"])
        storage = self._project_conn(project).block_storage
        if observed is not None:
            rid = observed.provider_id
            if spec["size_gb"] > (observed.attrs.get("size_gb") or 0):
                on_progress(f"extending to {spec['size_gb']} GiB")
                storage.extend_volume(rid, spec["size_gb"])
        else:
            existing = None
            if retry:
                existing = self._find_one(
                    "volume",
                    desired.name,
                    storage.volumes(name=desired.name),
                    lambda v: mapping.parse_metadata(v.metadata),
                )
            if existing is None:
                existing = storage.create_volume(name=desired.name, size=spec["size_gb"], metadata=self._marks(desired))
                failpoints.reach("openstack.volume-created")
            rid = self._remember("volume", desired.name, existing.id)
        self._wait(
            f"volume {desired.name} to become available",
            lambda: self._volume_ready(storage, rid, ("available", "in-use")),
            deadline,
            on_progress,
        )
        return rid

    def _volume_ready(self, storage: Any, volume_id: str, ready: tuple[str, ...]) -> bool:
        volume = storage.get_volume(volume_id)
        if volume.status in _VOLUME_FAILED:
            raise PermanentError(f"volume {volume.name} went to {volume.status} on cloud '{self.cloud}'")
        return bool(volume.status in ready)

    def _apply_server(
        self,
        desired: DesiredResource,
        observed: ObservedResource | None,
        *,
        retry: bool,
        deadline: float,
        on_progress: ProgressCallback,
    ) -> str:
        spec = desired.spec
        project = self._project_id(spec["project"])
        compute = self._project_conn(project).compute
        if observed is not None:
            rid = observed.provider_id
            attrs = observed.attrs
            flavor_differs = any(attrs.get(f) != spec[f] for f in ("vcpus", "ram_mb", "disk_gb"))
            if attrs.get("status") == "SHUTOFF":
                on_progress("starting")
                compute.start_server(rid)
            if flavor_differs and attrs.get("status") == "ACTIVE":
                self._resize(compute, desired, rid, deadline, on_progress)
            groups_want, groups_have = set(spec["security_groups"]), set(attrs.get("security_groups") or [])
            for name in sorted(groups_want - groups_have):
                compute.add_security_group_to_server(rid, name)
            for name in sorted(groups_have - groups_want):
                compute.remove_security_group_from_server(rid, name)
        else:
            existing = None
            if retry:
                existing = self._find_one(
                    "server",
                    desired.name,
                    compute.servers(name=f"^{desired.name}$"),
                    lambda s: mapping.parse_metadata(s.metadata),
                )
            if existing is None:
                conn = self._admin()
                flavor = self._need(
                    "flavor", spec["flavor"], lambda: conn.compute.flavors(details=True, is_public=None)
                )
                image = self._need("image", spec["image"], lambda: conn.image.images(name=spec["image"]))
                networks = [
                    {
                        "uuid": self._need(
                            "network", n, functools.partial(conn.network.networks, project_id=project, name=n)
                        )
                    }
                    for n in spec["networks"]
                ]
                extra: dict[str, Any] = {}
                if spec.get("server_group"):
                    group = self._need("server_group", spec["server_group"], compute.server_groups)
                    extra["scheduler_hints"] = {"group": group}
                existing = compute.create_server(
                    name=desired.name,
                    flavor_id=flavor,
                    image_id=image,
                    networks=networks,
                    security_groups=[{"name": g} for g in spec["security_groups"]],
                    metadata=self._marks(desired),
                    tags=["dcctl"],
                    **extra,
                )
                failpoints.reach("openstack.server-created")
                self._server_watch().building(existing.id)
            rid = self._remember("server", desired.name, existing.id)
        on_progress("waiting for ACTIVE")
        self._wait(
            f"server {desired.name} to become ACTIVE",
            lambda: self._server_ready(rid, desired.name),
            deadline,
            on_progress,
        )
        failpoints.reach("openstack.server-active")
        return rid

    def _resize(
        self, compute: Any, desired: DesiredResource, rid: str, deadline: float, on_progress: ProgressCallback
    ) -> None:
        conn = self._admin()
        flavor = self._need(
            "flavor", desired.spec["flavor"], lambda: conn.compute.flavors(details=True, is_public=None)
        )
        on_progress("resizing")
        compute.resize_server(rid, flavor)
        self._wait(
            f"server {desired.name} to resize",
            lambda: self._server_ready(rid, desired.name, ("VERIFY_RESIZE", "ACTIVE")),
            deadline,
            on_progress,
        )
        if compute.get_server(rid).status == "VERIFY_RESIZE":
            compute.confirm_server_resize(rid)

    def _server_watch(self, *, deleted: bool = False) -> _ServerWatch:
        """The shared status poll of dcctl's servers: the live ones (waits for ACTIVE), or with the deleted ones too
        (waits for a delete). Nova lists deleted servers with ``changes-since`` unless told not to, and a cloud where
        dcctl's servers come and go would send every wait for ACTIVE all those deleted meanwhile."""
        with self._lock:
            watch = self._watches.get(deleted)
            if watch is None:
                conn = self._admin()
                query: JSON = {
                    "all_projects": True,
                    "name": f"^{NAME_PREFIX}",
                    **({} if deleted else {"deleted": False}),
                }
                # the cloud's clock: when keystone issued dcctl's token (less a minute: keystone's clock may be a
                # little behind nova's), else this machine's with room for its skew
                issued = self._token().issued
                since = (
                    issued.astimezone(UTC) - timedelta(minutes=1)
                    if issued
                    else datetime.now(UTC) - timedelta(minutes=5)
                )
                watch = self._watches[deleted] = _ServerWatch(
                    lambda after: list(conn.compute.servers(details=True, changes_since=after, **query)), since
                )
            return watch

    def _server_ready(self, server_id: str, name: str, ready: tuple[str, ...] = ("ACTIVE",)) -> bool:
        watch = self._server_watch()
        info = watch.status(server_id)
        if info is None or time.monotonic() - info["at"] > _STALE:
            # not seen changing since the watch began (an old server), or not for a while: ask for it directly
            server = self._admin().compute.get_server(server_id)
            info = {"status": server.status, "fault": server.fault}
            watch.learn(server_id, info)
        status = info["status"]
        if status in _SERVER_FAILED and not info.get("fault"):  # a list may leave the fault out: read the server
            server = self._admin().compute.get_server(server_id)
            info = {"status": server.status, "fault": server.fault}
        if status in _SERVER_FAILED:
            fault = (info.get("fault") or {}).get("message") or "nova gave no fault message"
            details = (info.get("fault") or {}).get("details") or ""
            raise PermanentError(
                f"server {name} went to {status} on cloud '{self.cloud}': {fault}"
                + (f" ({scrub(details.splitlines()[-1], self._secrets)[:200]})" if details.strip() else ""),
                hint="the plan replaces a server in ERROR; a 'No valid host' means no hypervisor can hold its flavor",
            )
        return bool(status in ready)

    def _apply_attachment(
        self,
        desired: DesiredResource,
        observed: ObservedResource | None,
        *,
        retry: bool,
        deadline: float,
        on_progress: ProgressCallback,
    ) -> str:
        spec = desired.spec
        project = self._project_id(spec["project"])
        scoped = self._project_conn(project)
        server = self._need("server", spec["server"], lambda: scoped.compute.servers(name=f"^{spec['server']}$"))
        volume = self._need("volume", spec["volume"], lambda: scoped.block_storage.volumes(name=spec["volume"]))
        # a resumed attach may find the volume still on its way (reserved, attaching): let it settle first
        self._wait(
            f"volume {spec['volume']} to settle",
            lambda: self._volume_ready(scoped.block_storage, volume, ("available", "in-use")),
            deadline,
            on_progress,
        )
        current = scoped.block_storage.get_volume(volume)
        attached = [a.get("server_id") for a in current.attachments or []]
        if server not in attached:
            if attached:  # attached elsewhere (a replaced server): free it first
                for other in attached:
                    scoped.compute.delete_volume_attachment(_Server(id=other), volume, ignore_missing=True)
                self._wait(
                    f"volume {spec['volume']} to detach",
                    lambda: self._volume_ready(scoped.block_storage, volume, ("available",)),
                    deadline,
                    on_progress,
                )
            scoped.compute.create_volume_attachment(_Server(id=server), volume)
            failpoints.reach("openstack.attachment-created")
        self._wait(
            f"volume {spec['volume']} to attach to {spec['server']}",
            lambda: self._volume_ready(scoped.block_storage, volume, ("in-use",)),
            deadline,
            on_progress,
        )
        return f"{server}/{volume}"

    # ------------------------------------------------------------------------------------------------- wait
    def _wait(self, what: str, ready: Callable[[], bool], deadline: float, on_progress: ProgressCallback) -> None:
        wait_until(
            ready, deadline=deadline, what=what, where=f"'{self.cloud}'", on_progress=on_progress, first_delay=0.25
        )

    # ----------------------------------------------------------------------------------------------- delete
    def verify_owned(self, observed: ObservedResource) -> None:
        if not observed.managed:
            raise Conflict(
                f"{observed.kind} '{observed.name}' on cloud '{self.cloud}' was not created by dcctl "
                f"(no dcctl marks for this inventory: {observed.provider_id})",
                hint="dcctl never touches it: rename or remove it by hand, or rename the dcctl object in the inventory",
            )

    def delete(self, observed: ObservedResource, *, deadline: float) -> None:
        self.verify_owned(observed)
        try:
            self._delete(observed, deadline)
        except SDK_ERRORS as exc:
            err = self._translate(exc, f"deleting {observed.kind} {observed.name}")
            if not isinstance(err, NotFound):
                raise err from None
        self._forget(
            observed.kind if observed.kind != "project" or not observed.attrs.get("is_domain") else "domain",
            observed.name,
        )

    def _delete(self, observed: ObservedResource, deadline: float) -> None:
        conn = self._admin()
        ident = identity(conn)
        rid, attrs, kind = observed.provider_id, observed.attrs, observed.kind
        quiet = lambda msg: None  # noqa: E731 - deletes report no progress
        if kind == "volume_attachment":
            server_id, volume_id = attrs["server_id"], attrs["volume_id"]
            conn.compute.delete_volume_attachment(_Server(id=server_id), volume_id, ignore_missing=True)
            self._wait(
                f"volume {observed.name} to detach",
                lambda: self._volume_gone_or(conn.block_storage, volume_id, ("available",)),
                deadline,
                quiet,
            )
        elif kind == "server":
            conn.compute.delete_server(rid, ignore_missing=True)
            failpoints.reach("openstack.server-deleted")
            self._wait(f"server {observed.name} to go", lambda: self._server_gone(rid), deadline, quiet)
        elif kind == "volume":
            conn.block_storage.delete_volume(rid, ignore_missing=True)
            self._wait(
                f"volume {observed.name} to go",
                lambda: self._volume_gone_or(conn.block_storage, rid, ()),
                deadline,
                quiet,
            )
        elif kind == "router":
            for port in conn.network.ports(device_id=rid, device_owner="network:router_interface"):
                for ip in port.fixed_ips or []:
                    conn.network.remove_interface_from_router(rid, subnet=ip["subnet_id"])
            conn.network.delete_router(rid, ignore_missing=True)
        elif kind == "subnet":
            conn.network.delete_subnet(rid, ignore_missing=True)
        elif kind == "network":
            conn.network.delete_network(rid, ignore_missing=True)
        elif kind == "server_group":
            conn.compute.delete_server_group(rid, ignore_missing=True)
        elif kind == "security_group":
            conn.network.delete_security_group(rid, ignore_missing=True)
        elif kind == "quota":
            conn.compute.revert_quota_set(rid)
            conn.block_storage.revert_quota_set(rid)
            conn.network.delete_quota(rid, ignore_missing=True)
        elif kind == "role_assignment":
            project, actor = attrs["project_id"], attrs["actor_id"]
            role = attrs.get("role_id") or self._role(mapping.MEMBER_ROLE)
            if observed.key.endswith(":admins"):
                ident.unassign_project_role_from_group(project, actor, role)
            else:
                ident.unassign_project_role_from_user(project, actor, role)
        elif kind == "group":
            ident.delete_group(rid, ignore_missing=True)
        elif kind == "project" and attrs.get("is_domain"):
            self._delete_domain(observed)
        elif kind == "project":
            # neutron made the project's 'default' security group on first use: it goes with the project
            for group in conn.network.security_groups(project_id=rid, name="default"):
                conn.network.delete_security_group(group, ignore_missing=True)
            ident.delete_project(rid, ignore_missing=True)
        elif kind == "flavor":
            conn.compute.delete_flavor(rid, ignore_missing=True)
        elif kind == "image":
            conn.image.delete_image(rid, ignore_missing=True)

    def _delete_domain(self, observed: ObservedResource) -> None:
        ident = identity(self._admin())
        rid = observed.provider_id
        left = list(ident.projects(domain_id=rid))
        if left:
            mine = [p.name for p in left if self._ours(mapping.parse_description(p.description))]
            if len(mine) < len(left):
                foreign = sorted(p.name for p in left if p.name not in mine)
                raise PermanentError(
                    f"domain {observed.name} still holds projects dcctl did not create: {', '.join(foreign)}",
                    hint="dcctl deletes a domain only once it is empty; move or delete those projects by hand",
                )
            raise TransientError(
                f"domain {observed.name} still holds {len(mine)} dcctl projects being deleted", retry_after=1.0
            )
        ident.update_domain(rid, enabled=False)
        ident.delete_domain(rid, ignore_missing=True)

    def _server_gone(self, server_id: str) -> bool:
        info = self._server_watch(deleted=True).status(server_id)
        if info is not None and info["status"] not in ("DELETED", "SOFT_DELETED"):
            return False
        try:
            server = self._admin().compute.get_server(server_id)
        except SDK_ERRORS as exc:
            if isinstance(self._translate(exc, "server"), NotFound):
                return True
            raise
        return bool(server.status == "DELETED")

    def _volume_gone_or(self, storage: Any, volume_id: str, ready: tuple[str, ...]) -> bool:
        try:
            volume = storage.get_volume(volume_id)
        except SDK_ERRORS as exc:
            if isinstance(self._translate(exc, "volume"), NotFound):
                return True
            raise
        if volume.status in ("error_deleting",):
            raise PermanentError(f"volume {volume.name} is {volume.status} on cloud '{self.cloud}'")
        return bool(volume.status in ready)

    def close(self) -> None:
        with self._lock:
            for conn in [*self._scoped.values(), *([self._conn] if self._conn else [])]:
                with contextlib.suppress(Exception):
                    conn.close()
            self._scoped.clear()
            self._conn = None
            self._watches.clear()


def _dedupe(observed: list[ObservedResource], live: set[str]) -> list[ObservedResource]:
    """One object per (kind, name), as the plan matches them (neutron, nova and cinder allow duplicate names).

    dcctl's own wins over a same-named foreign one, which is kept only when dcctl has none of that name. Of several
    of dcctl's own, the one in a live dcctl project (the first listed, then) stays; the others — a duplicate, or one
    left in a project that is gone — come back under a name and key of their own, so the plan deletes them.
    """
    groups: dict[tuple[str, str], list[ObservedResource]] = {}
    for r in observed:
        groups.setdefault((r.kind, r.name), []).append(r)
    out: list[ObservedResource] = []
    for same in groups.values():
        mine = [r for r in same if r.managed]
        if not mine:
            out.append(same[0])
            continue
        mine.sort(key=lambda r: r.attrs.get("project_id", "") not in live if "project_id" in r.attrs else False)
        out.append(mine[0])
        for extra in mine[1:]:
            tag = f"~{extra.provider_id[:8]}"
            out.append(
                ObservedResource(
                    extra.kind, extra.key + tag, extra.backend, extra.name + tag, extra.provider_id, extra.attrs
                )
            )
    return out


@contextlib.contextmanager
def _local_copy(source: str | None, name: str) -> Iterator[str]:
    """The image file as a local path: a local file as it is, an http(s) URL downloaded to a temporary file."""
    if not source:
        raise PermanentError(f"image {name} has no disk image 'source' to upload")
    if not source.startswith(("http://", "https://")):
        if not Path(source).is_file():
            raise PermanentError(
                f"image {name}: source file {source} does not exist",
                hint="paths in 'source' are relative to the inventory directory",
            )
        yield source
        return
    with tempfile.TemporaryDirectory(prefix="dcctl-image-") as tmp:
        target = Path(tmp) / "image"
        try:
            with urllib.request.urlopen(source, timeout=60) as response, target.open("wb") as out:
                shutil.copyfileobj(response, out, 1 << 20)
        except OSError as exc:
            raise TransientError(f"image {name}: cannot download {source}: {exc}") from None
        yield str(target)


def _verify(path: str, checksum: str | None, name: str) -> str:
    """The file's sha256; a mismatch with the inventory's checksum stops the upload before anything is made."""
    digest = hashlib.sha256()
    with Path(path).open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    got = digest.hexdigest()
    if checksum and checksum.removeprefix("sha256:") != got:
        raise PermanentError(
            f"image {name}: {path} has sha256 {got}, not the {checksum.removeprefix('sha256:')} the inventory names",
            hint="the file changed or is not the one the inventory means: fix the file or the checksum",
        )
    return got
