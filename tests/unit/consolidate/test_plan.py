"""The consolidation plan (pure): capacity refused with the numbers, the order rule, the method, the downtime model."""

from __future__ import annotations

from pathlib import Path

import pytest

from dcctl.consolidate.plan import (
    Assumptions,
    Facts,
    Method,
    ServerMove,
    ServerState,
    State,
    estimate,
    order_workloads,
    plan_consolidation,
    switch_tenancies,
)
from dcctl.consolidate.plan import Resources as R
from dcctl.errors import UsageError
from tests.unit.consolidate.conftest import backend, load, workload, write_province

LEGACY = "faku-legacy-dc"


def running(*keys: str, backend: str = "faku-kvm", held: int = 64 * 2**20) -> Facts:
    return Facts(
        tuple(ServerState(k, "dcctl-" + k.split(":")[1].replace("/", "-"), backend, True, (), held) for k in keys),
        observed=True,
    )


def test_a_workload_that_fits_is_placed_at_the_target(tmp_path: Path) -> None:
    inv = load(write_province(tmp_path))
    plan = plan_consolidation(inv, LEGACY)
    assert not plan.refused
    [move] = plan.moves
    assert (move.workload, move.tenancy, move.step, move.switches_tenancy) == ("faku-portal", "faku-ext", 1, True)
    assert move.target_backends == ["sy-kvm"] and move.needs == R(1, 1024, 10)
    [room] = plan.rooms
    assert room.capacity == R(8, 16384, 100) and room.taken == R(1, 1024, 10) and room.free_after == R(7, 15360, 90)


def test_a_capacity_shortfall_is_refused_naming_backend_needed_and_free(tmp_path: Path) -> None:
    """Servers that do not fit where placement leaves room: the target backend, what is needed and what is free."""
    small = backend("sy-kvm", vcpus=2, ram_gb=4, storage_gb=100)
    heavy = [workload("faku-portal", ["app"], count=3)]
    inv = load(write_province(tmp_path, target=small, legacy_workloads=heavy, staying=1))
    plan = plan_consolidation(inv, LEGACY)
    assert plan.refused
    [error] = [d for d in plan.diagnostics.errors if "workload" in d.message]  # (its quotas do not fit either)
    assert error.code == "consolidate-no-capacity"
    assert "'faku-portal' does not fit in 'shenyang-dc'" in error.message
    assert "needs 3 vCPU, 3072 MiB RAM, 30 GB storage" in error.message
    assert "sy-kvm has 1 vCPU, 3072 MiB RAM, 90 GB storage free" in error.message  # 2 − 1 staying, 4096 − 1024
    assert error.source is not None and error.source.path.endswith("province.yaml")


def test_quotas_that_would_not_fit_after_the_switch_are_refused_with_the_numbers(tmp_path: Path) -> None:
    """The lab's own case: servers fit, but the tenancy's quotas would overcommit the target (capacity-quota)."""
    inv = load(
        write_province(
            tmp_path,
            target=backend("sy-kvm", vcpus=8, ram_gb=4, storage_gb=100),
            quotas={"vcpus": 2, "ram_gb": 2, "storage_gb": 20, "instances": 2},
            staying=3,
        )
    )
    plan = plan_consolidation(inv, LEGACY)
    [error] = plan.diagnostics.errors
    assert error.code == "consolidate-no-capacity"
    assert "quotas of faku-ext do not fit in 'shenyang-dc' (extranet)" in error.message
    assert "need 2 vCPU, 2 GB RAM, 20 GB storage" in error.message
    assert "sy-kvm has 8 vCPU, 4 GB RAM" in error.message and "already grant 3 vCPU, 3 GB RAM" in error.message
    assert "short RAM GB 2 > 1 free" in error.message


def test_no_backend_of_the_target_may_run_it(tmp_path: Path) -> None:
    inv = load(write_province(tmp_path, target=backend("sy-kvm", level=1)))  # faku-portal is MLPS level 2
    [error] = plan_consolidation(inv, LEGACY).diagnostics.errors
    assert error.code == "consolidate-no-eligible-backend" and "sy-kvm (extranet, level 1)" in error.message


def test_order_dependencies_first_then_by_id(tmp_path: Path) -> None:
    """web (app) and db (db) both share a network with api (app, db): api is the hub others use, so it goes first."""
    three = [workload("web", ["app"]), workload("db", ["db"]), workload("api", ["app", "db"])]
    inv = load(write_province(tmp_path, legacy_workloads=three))
    assert [w.id for _, w in order_workloads([inv.tenancies["faku-ext"]])] == ["api", "db", "web"]
    plan = plan_consolidation(inv, LEGACY)
    assert [(m.step, m.workload, m.switches_tenancy) for m in plan.moves] == [
        (1, "api", False),
        (2, "db", False),
        (3, "web", True),  # the tenancy's hosted_in switches with its last workload
    ]
    assert plan.moves[1].after == ("api",) and plan.moves[2].after == ("api",)


def test_a_subset_does_not_switch_the_tenancy_while_others_remain(tmp_path: Path) -> None:
    two = [workload("web", ["app"]), workload("db", ["db"])]
    inv = load(write_province(tmp_path, legacy_workloads=two))
    plan = plan_consolidation(inv, LEGACY, only=["web"])
    assert [(m.workload, m.switches_tenancy) for m in plan.moves] == [("web", False)]
    with pytest.raises(UsageError, match="not hosted in legacy data center"):
        plan_consolidation(inv, LEGACY, only=["nope"])


def ssh(bid: str, host: str, **kw: object) -> dict[str, object]:
    return {**backend(bid, **kw), "uri": f"qemu+ssh://root@{host}/system", "console_path": "/srv/console"}  # type: ignore[arg-type]


def test_method_live_where_both_ends_allow_it(tmp_path: Path) -> None:
    inv = load(write_province(tmp_path, target=ssh("sy-kvm", "sy1"), legacy=ssh("faku-kvm", "faku1", level=2)))
    key = "server:faku-portal/app/1"
    assert plan_consolidation(inv, LEGACY, running(key)).moves[0].method is Method.LIVE
    unsupported = Facts(running(key).servers, live_unsupported="the provider cannot adopt it", observed=True)
    move = plan_consolidation(inv, LEGACY, unsupported).moves[0]
    assert (move.method, move.live_blocked) == (Method.WARM, "the provider cannot adopt it")
    stopped = Facts((ServerState(key, "dcctl-faku-portal-app-1", "faku-kvm", False),), observed=True)
    assert plan_consolidation(inv, LEGACY, stopped).moves[0].method is Method.COLD


def test_live_is_refused_between_different_accelerators(tmp_path: Path) -> None:
    target = {**ssh("sy-kvm", "sy1"), "virt_type": "qemu"}
    inv = load(write_province(tmp_path, target=target, legacy=ssh("faku-kvm", "faku1", level=2)))
    plan = plan_consolidation(inv, LEGACY, running("server:faku-portal/app/1"), method=Method.LIVE)
    [error] = plan.diagnostics.errors
    assert error.code == "consolidate-live-unavailable" and "cannot change accelerator" in error.message


def test_warm_needs_a_running_guest_and_unobserved_sources_are_refused(tmp_path: Path) -> None:
    inv = load(write_province(tmp_path))
    key = "server:faku-portal/app/1"
    stopped = Facts((ServerState(key, "dcctl-faku-portal-app-1", "faku-kvm", False),), observed=True)
    codes = {d.code for d in plan_consolidation(inv, LEGACY, stopped, method=Method.WARM).diagnostics.errors}
    assert codes == {"consolidate-warm-needs-running"}
    blind = Facts(unobserved={"faku-kvm": "connection refused"}, observed=True)
    codes = {d.code for d in plan_consolidation(inv, LEGACY, blind).diagnostics.errors}
    assert codes == {"consolidate-source-unobserved"}


def test_a_workload_already_at_the_target_is_moved_and_one_at_both_ends_interrupted(tmp_path: Path) -> None:
    inv = load(write_province(tmp_path))
    key = "server:faku-portal/app/1"
    moved = plan_consolidation(inv, LEGACY, running(key, backend="sy-kvm")).moves[0]
    assert (moved.state, moved.method, moved.switches_tenancy) == (State.MOVED, Method.NONE, True)
    both = Facts(running(key).servers + running(key, backend="sy-kvm").servers, observed=True)
    assert plan_consolidation(inv, LEGACY, both).moves[0].state is State.INTERRUPTED
    nothing = Facts(observed=True)  # observed, and never applied: only the inventory switches
    assert plan_consolidation(inv, LEGACY, nothing).moves[0].method is Method.NONE


def test_not_legacy_or_unknown(tmp_path: Path) -> None:
    inv = load(write_province(tmp_path))
    assert {d.code for d in plan_consolidation(inv, "shenyang-dc").diagnostics.errors} == {"consolidate-not-legacy"}
    with pytest.raises(UsageError, match="no data center 'faku-legacy'") as refused:
        plan_consolidation(inv, "faku-legacy")
    assert refused.value.hint == "did you mean faku-legacy-dc?"


def test_switching_is_a_copy(tmp_path: Path) -> None:
    inv = load(write_province(tmp_path))
    after = switch_tenancies(inv, ["faku-ext"], "shenyang-dc")
    assert after.tenancies["faku-ext"].hosted_in == "shenyang-dc"
    assert after.workloads["faku-portal"][0].hosted_in == "shenyang-dc"
    assert inv.tenancies["faku-ext"].hosted_in == LEGACY
    assert after.tenancies["faku-ext"].where("hosted_in") == inv.tenancies["faku-ext"].where("hosted_in")


def _server(copy_gib: float) -> ServerMove:
    return ServerMove("k", "n", "a", "b", True, R(1, 1024, 10), int(copy_gib * 2**30), "measured", 2**30)


def test_downtime_model() -> None:
    a = Assumptions()
    big = [_server(20)]
    live, warm, cold = (estimate(m, big, a) for m in (Method.LIVE, Method.WARM, Method.COLD))
    assert live.downtime_seconds == a.live_pause_seconds
    assert live.duration_seconds == pytest.approx(21 * 1024 / 100 + a.overhead_seconds)
    assert cold.downtime_seconds > warm.downtime_seconds > live.downtime_seconds
    assert cold.parts["copy"] == pytest.approx(20 * 1024 * (1 / 200 + 1 / 100 + 2 / 300) + 3)
    assert warm.parts["boot"] == cold.parts["boot"] == a.boot_seconds
    assert warm.duration_seconds > cold.duration_seconds  # warm works longer, to stop for less
    assert estimate(Method.NONE, big, a).downtime_seconds == 0
