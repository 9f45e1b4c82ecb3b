"""Benchmark: dcctl's OpenStack provider against its peers, side by side on the same cloud in one run.

1. **No-op plan** of T tenancies × S servers (default 20 × 10, one volume-less server group each): dcctl's plan (one
   list call per kind) against a per-resource refresh loop — a GET per resource, as Terraform refreshes its state
   (also shown with Terraform's default parallelism of 10). Figures: HTTP requests and wall time. Goal: ≥ 10× fewer
   requests and ≥ 5× faster than the loop.
2. **Apply of T × S servers**: dcctl's apply (bounded concurrency, one shared status poll) against a sequential
   create-and-wait loop — openstacksdk's ``create_server(wait=True)``, which is what an ``openstack.cloud.server``
   task in an Ansible loop does. Goal: ≥ 3× faster and zero failed requests. Also shown: requests per created server
   by kind, the lab services' CPU seconds per server (anybody's use of the lab meanwhile included) and how busy the
   machine was — the loop mostly waits, dcctl keeps the cloud busy, so other load slows dcctl more than the loop.

Requests are counted at the HTTP adapter (every request of the process: tokens, version discovery, pagination).
Needs the lab (``scripts/openstack-lab up``) and ``OS_CLIENT_CONFIG_FILE``; makes its own tenancies
(``bench-t01``…, domain ``dcctl-bench-dc``) and removes everything it made at the end, also on failure.

    OS_CLIENT_CONFIG_FILE=$(scripts/openstack-lab clouds) .venv/bin/python bench/openstack_scale.py
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
import tempfile
import threading
import time
import urllib.parse
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import openstack
import requests.adapters
import yaml

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
from bench.gen_inventory import openstack_inventory  # noqa: E402
from dcctl.engine.apply import PARALLELISM  # noqa: E402
from dcctl.engine.session import Session  # noqa: E402
from dcctl.plan.model import Action, Mode  # noqa: E402
from dcctl.resources import ObservedResource  # noqa: E402

CLOUD = os.environ.get("DCCTL_BENCH_CLOUD", "dcctl-lab-admin")


# ------------------------------------------------------------------------------------------- counting requests
@dataclass
class Counter:
    requests: int = 0
    failed: int = 0
    probes: int = 0  # unauthenticated version-discovery probes answered 401 (see _counting_send)
    failures: list[str] = field(default_factory=list)
    by_kind: dict[str, int] = field(default_factory=dict)  # "GET /v2.1/servers/{id}": n (see request_kind)


_lock = threading.Lock()
_counters: list[Counter] = []
_send = requests.adapters.HTTPAdapter.send
_ID = re.compile(r"/[0-9a-f]{8}-?[0-9a-f]{4}-?[0-9a-f]{4}-?[0-9a-f]{4}-?[0-9a-f]{12}(?=/|$)")


def request_kind(method: str, url: str) -> str:
    """``GET /v2.1/servers/detail?all_tenants,changes-since``: the method, the path with ids as ``{id}``, the query's
    parameter names."""
    parts = urllib.parse.urlsplit(url)
    query = sorted({k for k, _ in urllib.parse.parse_qsl(parts.query, keep_blank_values=True)})
    return f"{method} {_ID.sub('/{id}', parts.path)}" + (f"?{','.join(query)}" if query else "")


def _counting_send(self: requests.adapters.HTTPAdapter, request: Any, *args: Any, **kwargs: Any) -> Any:
    try:
        response = _send(self, request, *args, **kwargs)
    except Exception as exc:
        with _lock:
            for c in _counters:
                c.requests += 1
                c.failed += 1
                c.failures.append(f"{request.method} {request.url}: {type(exc).__name__}")
        raise
    # keystoneauth probes a versioned endpoint without a token first; a catalog URL without a project id (the lab's
    # cinder) answers that probe 401 and keystoneauth asks again with a token: discovery, not a failed operation
    probe = response.status_code == 401 and "X-Auth-Token" not in request.headers
    kind = request_kind(request.method, request.url)
    with _lock:
        for c in _counters:
            c.requests += 1
            c.probes += probe
            c.by_kind[kind] = c.by_kind.get(kind, 0) + 1
            if response.status_code >= 400 and not probe:
                c.failed += 1
                c.failures.append(f"{request.method} {request.url}: HTTP {response.status_code}")
    return response


requests.adapters.HTTPAdapter.send = _counting_send  # type: ignore[method-assign]


@contextmanager
def counting() -> Iterator[Counter]:
    c = Counter()
    with _lock:
        _counters.append(c)
    try:
        yield c
    finally:
        with _lock:
            _counters.remove(c)


@dataclass
class Measure:
    seconds: float = 0.0
    requests: int = 0
    failed: int = 0
    probes: int = 0
    failures: list[str] = field(default_factory=list)
    by_kind: dict[str, int] = field(default_factory=dict)
    cloud_cpu: float = 0.0  # CPU seconds of the lab's OpenStack services, for anyone (see cloud_cpu_seconds)
    busy: float = 0.0  # CPU seconds of the whole machine: cloud, client and anything else running

    def add(self, part: Measure) -> None:
        self.seconds += part.seconds
        self.requests += part.requests
        self.failed += part.failed
        self.probes += part.probes
        self.failures += part.failures[:3]
        for kind, n in part.by_kind.items():
            self.by_kind[kind] = self.by_kind.get(kind, 0) + n
        self.cloud_cpu += part.cloud_cpu
        self.busy += part.busy

    def load(self, servers: int) -> str:
        """What the cloud worked per server, and how busy the machine was."""
        cores = self.busy / self.seconds if self.seconds else 0.0
        return f"cloud CPU {self.cloud_cpu / servers:.2f} s/server, machine {cores:.2f} of {os.cpu_count()} cores busy"

    def per_server(self, servers: int, least: float = 0.05) -> str:
        """Requests per created server by kind, the most frequent first (kinds under ``least`` per server left out)."""
        kinds = sorted(self.by_kind.items(), key=lambda kv: (-kv[1], kv[0]))
        return "; ".join(f"{n / servers:.2f} {kind}" for kind, n in kinds if n / servers >= least)


def cloud_cpu_seconds() -> float:
    """CPU seconds the lab's OpenStack services (``scripts/openstack-lab``'s pidfiles) and their children have used;
    0 without the lab's pidfiles."""
    tick = os.sysconf("SC_CLK_TCK")
    parent: dict[int, int] = {}
    used: dict[int, float] = {}
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            stat = (proc / "stat").read_text()
        except OSError:  # gone meanwhile
            continue
        fields = stat[stat.rfind(")") + 2 :].split()  # after "pid (comm) ": state, ppid, …, utime, stime
        parent[int(proc.name)] = int(fields[1])
        used[int(proc.name)] = (int(fields[11]) + int(fields[12])) / tick
    roots = {int(f.read_text().split()[0]) for f in Path("/run/dcctl-oslab").glob("*.pid")}
    members = set(roots)
    while grown := {pid for pid, ppid in parent.items() if ppid in members} - members:
        members |= grown
    return sum(used.get(pid, 0.0) for pid in members)


def busy_seconds() -> float:
    """CPU seconds the whole machine has been busy (all cores, not idle nor waiting for I/O)."""
    jiffies = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    return (sum(jiffies) - jiffies[3] - jiffies[4]) / os.sysconf("SC_CLK_TCK")


def measure(fn: Callable[[], Any]) -> tuple[Measure, Any]:
    cloud, busy = cloud_cpu_seconds(), busy_seconds()
    with counting() as c:
        started = time.perf_counter()
        result = fn()
        seconds = time.perf_counter() - started
    m = Measure(seconds, c.requests, c.failed, c.probes, c.failures[:10], dict(c.by_kind))
    m.cloud_cpu, m.busy = cloud_cpu_seconds() - cloud, busy_seconds() - busy
    return m, result


# --------------------------------------------------------------------------------------------------- inventory
def write_inventory(root: Path, tenancies: int, servers: int) -> Path:
    return openstack_inventory(
        root / "inv",
        prefix="bench",
        cloud=CLOUD,
        tenancies=tenancies,
        servers=servers,
        storage_gb=10,
        cidr=lambda i: f"10.{100 + i // 200}.{i % 200}.0/24",
    )


def set_count(inv: Path, count: int, tenancies: int | None = None) -> None:
    """``count`` servers in each of the first ``tenancies`` tenancies (all when None), none in the others."""
    path = inv / "bench.yaml"
    doc = yaml.safe_load(path.read_text())
    for i, t in enumerate(doc["tenancies"]):
        for w in t["workloads"]:
            for g in w["servers"]:
                g["count"] = count if tenancies is None or i < tenancies else 0
    path.write_text(yaml.safe_dump(doc, allow_unicode=True, sort_keys=False))


def session(inv: Path, state: Path, concurrency: int = PARALLELISM) -> Session:
    return Session(inv, state_path=state, concurrency=concurrency)


def dcctl_apply(inv: Path, state: Path, concurrency: int, mode: Mode = Mode.NORMAL) -> tuple[int, int]:
    with session(inv, state, concurrency) as s:
        plan = s.plan(mode)
        if not plan.applyable:
            raise SystemExit(f"bench: plan has errors: {[d.message for d in plan.diagnostics.errors]}")
        result = s.apply(plan, command="destroy" if mode is Mode.DESTROY else "apply", timeout=1800)
        failed = [(r.change.key, r.error) for r in result.results if not r.ok]
        if failed:
            print(f"  dcctl: {len(failed)} steps failed, first: {failed[0]}", file=sys.stderr)
        return len(plan.pending), len(failed)


# ------------------------------------------------------------------------------------------------------ peers
def observed(inv: Path, state: Path) -> list[ObservedResource]:
    with session(inv, state) as s:
        return [r for o in s.observe().values() for r in o.resources if r.managed]


def refresh_gets(conn: Any, resources: list[ObservedResource]) -> list[Callable[[], Any]]:
    """One GET per resource, each by its id, as a Terraform refresh reads its state back."""
    ident = conn.identity
    calls: list[Callable[[], Any]] = []
    for r in resources:
        rid, a = r.provider_id, r.attrs
        if r.kind == "project" and a.get("is_domain"):
            calls.append(lambda rid=rid: ident.get_domain(rid))
        elif r.kind == "project":
            calls.append(lambda rid=rid: ident.get_project(rid))
        elif r.kind == "group":
            calls.append(lambda rid=rid: ident.get_group(rid))
        elif r.kind == "role_assignment":
            calls.append(
                lambda a=a: list(ident.role_assignments(scope_project_id=a["project_id"], role_id=a["role_id"]))
            )
        elif r.kind == "quota":  # three resources in Terraform: compute, network and block-storage quotas
            calls.append(lambda rid=rid: conn.compute.get_quota_set(rid))
            calls.append(lambda rid=rid: conn.network.get_quota(rid))
            calls.append(lambda rid=rid: conn.block_storage.get_quota_set(rid))
        elif r.kind == "security_group":
            calls.append(lambda rid=rid: conn.network.get_security_group(rid))
        elif r.kind == "server_group":
            calls.append(lambda rid=rid: conn.compute.get_server_group(rid))
        elif r.kind == "network":
            calls.append(lambda rid=rid: conn.network.get_network(rid))
        elif r.kind == "subnet":
            calls.append(lambda rid=rid: conn.network.get_subnet(rid))
        elif r.kind == "router":
            calls.append(lambda rid=rid: conn.network.get_router(rid))
        elif r.kind == "server":
            calls.append(lambda rid=rid: conn.compute.get_server(rid))
        elif r.kind == "volume":
            calls.append(lambda rid=rid: conn.block_storage.get_volume(rid))
        elif r.kind == "volume_attachment":
            calls.append(lambda a=a: conn.compute.get_volume_attachment(a["server_id"], a["volume_id"]))
        elif r.kind == "flavor":
            calls.append(lambda rid=rid: conn.compute.get_flavor(rid))
        elif r.kind == "image":
            calls.append(lambda rid=rid: conn.image.get_image(rid))
    return calls


def refresh_loop(resources: list[ObservedResource], parallelism: int = 1) -> int:
    conn = openstack.connect(cloud=CLOUD)
    calls = refresh_gets(conn, resources)
    if parallelism == 1:
        for call in calls:
            call()
    else:
        with ThreadPoolExecutor(parallelism) as pool:
            list(pool.map(lambda f: f(), calls))
    conn.close()
    return len(calls)


def peer_catalog() -> tuple[str, str]:
    """The peer's own flavor and image (untimed: separate tasks in a playbook)."""
    admin = openstack.connect(cloud=CLOUD)
    flavor = admin.compute.create_flavor(name="bench-seq-tiny", vcpus=1, ram=64, disk=1, is_public=True)
    image = admin.image.create_image(
        "bench-seq-disk", data=b"\0" * 65536, disk_format="raw", container_format="bare", visibility="public", wait=True
    )
    admin.close()
    return flavor.id, image.id


def drop_peer_catalog() -> None:
    admin = openstack.connect(cloud=CLOUD)
    for f in admin.compute.flavors(is_public=None):
        if f.name == "bench-seq-tiny":
            admin.compute.delete_flavor(f, ignore_missing=True)
    for i in admin.image.images(name="bench-seq-disk"):
        admin.image.delete_image(i, ignore_missing=True)
    admin.close()


def sequential_create_and_wait(
    networks: list[tuple[str, str]], per_project: int, flavor: str, image: str
) -> list[tuple[str, str]]:
    """The Ansible loop: in each tenancy's project, ``create_server(..., wait=True)`` one server after another."""
    admin = openstack.connect(cloud=CLOUD)
    made: list[tuple[str, str]] = []
    for project, network in networks:
        conn = admin.connect_as_project({"id": project})
        for i in range(1, per_project + 1):
            server = conn.create_server(
                f"bench-seq-{project[:8]}-{i}",
                image=image,
                flavor=flavor,
                network=network,
                wait=True,
                timeout=600,
                auto_ip=False,
            )
            made.append((project, server.id))
        conn.close()
    admin.close()
    return made


def delete_servers(made: list[tuple[str, str]] | None = None) -> None:
    """Delete the peer's servers (all of them, whatever is left, when ``made`` is None) and wait until gone."""
    admin = openstack.connect(cloud=CLOUD)
    if made is None:
        made = [(s.project_id, s.id) for s in admin.compute.servers(all_projects=True, name="^bench-seq-")]
    for _, sid in made:
        admin.compute.delete_server(sid, ignore_missing=True)
    deadline = time.monotonic() + 900
    ids = {sid for _, sid in made}
    while ids and time.monotonic() < deadline:
        alive = {s.id for s in admin.compute.servers(all_projects=True, name="^bench-seq-")}
        ids &= alive
        time.sleep(2)
    admin.close()


def leftovers() -> list[str]:
    conn = openstack.connect(cloud=CLOUD)
    found = [f"server {s.name}" for s in conn.compute.servers(all_projects=True) if s.name.startswith("bench-seq-")]
    found += [f"domain {d.name}" for d in conn.identity.domains() if d.name == "dcctl-bench-dc"]
    found += [f"project {p.name}" for p in conn.identity.projects() if p.name.startswith("dcctl-bench-")]
    found += [f"flavor {f.name}" for f in conn.compute.flavors() if f.name in ("dcctl-bench-tiny", "bench-seq-tiny")]
    found += [f"image {i.name}" for i in conn.image.images() if i.name in ("dcctl-bench-disk", "bench-seq-disk")]
    conn.close()
    return found


# ------------------------------------------------------------------------------------------------------- main
def ratio_line(name: str, ours: float, peer: float, goal: float, unit: str, lower_is_better: bool = True) -> str:
    ratio = peer / ours if ours else float("inf")
    met = "MET" if ratio >= goal else "NOT MET"
    head = f"  {name:<28} dcctl {ours:>9.2f} {unit:<9} peer {peer:>9.2f} {unit:<9}"
    return f"{head} ratio {ratio:>6.1f}×  goal ≥ {goal:g}× {met}"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tenancies", type=int, default=20)
    parser.add_argument("--servers", type=int, default=10, help="servers per tenancy")
    parser.add_argument(
        "--concurrency",
        type=int,
        default=PARALLELISM,
        help="dcctl's changes in flight on the cloud; default: what 'dcctl apply' uses (its --parallelism)",
    )
    parser.add_argument("--rounds", type=int, default=4, help="interleaved apply rounds (peer, then dcctl)")
    parser.add_argument("--json", type=Path, default=HERE / "out" / "openstack_scale.json")
    args = parser.parse_args()
    total = args.tenancies * args.servers
    if not os.environ.get("OS_CLIENT_CONFIG_FILE"):
        print("bench: set OS_CLIENT_CONFIG_FILE (e.g. $(scripts/openstack-lab clouds))", file=sys.stderr)
        return 2
    results: dict[str, Any] = {"tenancies": args.tenancies, "servers": total, "concurrency": args.concurrency}
    with tempfile.TemporaryDirectory(prefix="dcctl-bench-") as tmp:
        inv = write_inventory(Path(tmp), args.tenancies, args.servers)
        state = Path(tmp) / "state.db"
        try:
            print(f"== {args.tenancies} tenancies × {args.servers} servers on cloud '{CLOUD}'", flush=True)
            set_count(inv, 0)
            m, (changes, failed) = measure(lambda: dcctl_apply(inv, state, args.concurrency))
            print(f"  tenancies without servers: {changes} changes in {m.seconds:.1f}s ({failed} failed)", flush=True)

            # The two applies run interleaved, a slice of the tenancies at a time (the peer's servers deleted,
            # untimed, after each of its slices), so both see the same load on this shared 2-core machine.
            resources = observed(inv, state)
            networks = sorted(
                (r.attrs["project_id"], r.provider_id, r.key.split("/")[0].removeprefix("tenancy:"))
                for r in resources
                if r.kind == "network"
            )
            order = sorted(networks, key=lambda n: n[2])  # the inventory's order: bench-t01, bench-t02, …
            flavor, image = peer_catalog()
            seq = Measure()
            ours = Measure()
            failed_steps = 0
            per_round = max(1, args.tenancies // args.rounds)
            print(
                f"-- apply of {total} servers in {args.rounds} interleaved rounds: the peer, a sequential "
                f"create-and-wait loop (openstacksdk create_server(wait=True)), then dcctl (concurrency "
                f"{args.concurrency}), {per_round} tenancies × {args.servers} servers each",
                flush=True,
            )
            for r in range(args.rounds):
                first = r * per_round
                last = args.tenancies if r == args.rounds - 1 else first + per_round
                chunk = [(pid, nid) for pid, nid, _ in order[first:last]]
                m_seq, made = measure(
                    lambda chunk=chunk: sequential_create_and_wait(chunk, args.servers, flavor, image)
                )
                delete_servers(made)
                set_count(inv, args.servers, last)
                m_ours, (changes, failed) = measure(lambda: dcctl_apply(inv, state, args.concurrency))
                failed_steps += failed
                print(
                    f"  round {r + 1}: peer {len(made)} servers in {m_seq.seconds:.1f}s ({m_seq.failed} failed "
                    f"requests); dcctl {changes} changes in {m_ours.seconds:.1f}s ({m_ours.requests} requests, "
                    f"{m_ours.failed} failed, {m_ours.probes} discovery probes answered 401 not counted); machine "
                    f"{m_seq.busy / m_seq.seconds:.2f} and {m_ours.busy / m_ours.seconds:.2f} cores busy",
                    flush=True,
                )
                seq.add(m_seq)
                ours.add(m_ours)
            print(
                f"  peer {seq.seconds:.1f}s, {seq.requests} requests, {seq.failed} failed; dcctl {ours.seconds:.1f}s, "
                f"{ours.requests} requests, {ours.failed} failed requests, {failed_steps} failed steps",
                flush=True,
            )
            if ours.failures:
                print("  failed requests: " + "; ".join(ours.failures), flush=True)
            print(f"  dcctl: {ours.load(total)}; requests per server: {ours.per_server(total)}", flush=True)
            print(f"  peer: {seq.load(total)}; requests per server: {seq.per_server(total)}", flush=True)

            print("-- no-op plan", flush=True)
            with session(inv, state) as s:
                assert not s.plan().has_changes, "the plan after apply is not empty"
            plan_m, _ = measure(lambda: _noop_plan(inv, state))
            resources = observed(inv, state)
            loop_m, gets = measure(lambda: refresh_loop(resources))
            par_m, _ = measure(lambda: refresh_loop(resources, parallelism=10))
            print(
                f"  dcctl plan: {plan_m.requests} requests, {plan_m.seconds:.2f}s; refresh loop: {gets} GETs "
                f"({loop_m.requests} requests) in {loop_m.seconds:.2f}s; with parallelism 10: {par_m.seconds:.2f}s",
                flush=True,
            )

            print()
            print(
                f"Results ({args.tenancies} tenancies × {args.servers} servers, {len(resources)} resources, one run):"
            )
            print(ratio_line("no-op plan: requests", plan_m.requests, loop_m.requests, 10, "requests"))
            print(ratio_line("no-op plan: wall time", plan_m.seconds, loop_m.seconds, 5, "s"))
            print(
                f"  {'(refresh, parallelism 10)':<28} dcctl {plan_m.seconds:>9.2f} s         peer "
                f"{par_m.seconds:>9.2f} s         ratio {par_m.seconds / plan_m.seconds:>6.1f}×  (for reference)"
            )
            print(ratio_line(f"apply {total} servers: time", ours.seconds, seq.seconds, 3, "s"))
            print(
                f"  {'apply: failed requests':<28} dcctl {ours.failed:>9d}           peer {seq.failed:>9d}"
                f"                          goal 0 {'MET' if ours.failed == 0 else 'NOT MET'}"
            )
            results.update(
                noop_plan={
                    "dcctl": plan_m.__dict__,
                    "refresh_loop": loop_m.__dict__,
                    "refresh_parallel10": par_m.__dict__,
                },
                apply={"dcctl": ours.__dict__, "sequential": seq.__dict__},
            )
        finally:
            print("-- cleaning up", flush=True)
            delete_servers()  # the peer's, if a round was interrupted: their ports hold the subnets
            for _ in range(3):
                try:
                    dcctl_apply(inv, state, args.concurrency, Mode.DESTROY)
                except Exception as exc:  # the bench must not leave anything behind: say so, and try again
                    print(f"  destroy failed: {exc}", file=sys.stderr)
                    continue
                break
            drop_peer_catalog()
            left = leftovers()
            print("  left behind: " + (", ".join(left) if left else "nothing"), flush=True)
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(results, indent=2, default=str) + "\n")
    return 0


def _noop_plan(inv: Path, state: Path) -> None:
    with session(inv, state) as s:
        plan = s.plan()
    assert not [c for c in plan.changes if c.action is not Action.NOOP]


if __name__ == "__main__":
    raise SystemExit(main())
