"""The engine on libvirt's test driver with its state in PostgreSQL.

The session tests of ``tests/unit/engine/test_engine_testdriver.py`` (apply, re-plan, destroy, drift, foreign objects,
locks, takeover of a dead holder, stale plans, retries) run again here, unchanged, with this module's ``session``
fixture, whose state is a fresh PostgreSQL schema; SQLite runs them there. Tests that keep one state across sessions
run here on both backends.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from dcctl.engine.session import Session
from dcctl.plan.model import Action
from dcctl.state.store import Holder, StateLockedError
from tests.unit.engine import test_engine_testdriver as engine

pytestmark = pytest.mark.own_state("the engine's tests, again with a PostgreSQL state of their own")


@pytest.fixture
def session(tmp_path: Path, pg_state: str) -> Iterator[Session]:
    with Session(engine.write_inventory(tmp_path), state_path=pg_state) as s:
        assert s.store.dialect == "postgres"
        yield s


test_apply_creates_everything_then_replan_is_empty = engine.test_apply_creates_everything_then_replan_is_empty
test_domains_carry_their_inventory_key = engine.test_domains_carry_their_inventory_key
test_destroy_leaves_no_dcctl_resource = engine.test_destroy_leaves_no_dcctl_resource
test_foreign_domain_with_a_dcctl_name_is_left_alone = engine.test_foreign_domain_with_a_dcctl_name_is_left_alone
test_domain_deleted_by_hand_is_drift_and_comes_back = engine.test_domain_deleted_by_hand_is_drift_and_comes_back
test_stopped_domain_is_drift_and_is_started = engine.test_stopped_domain_is_drift_and_is_started
test_a_locked_backend_is_refused_naming_the_holder = engine.test_a_locked_backend_is_refused_naming_the_holder
test_a_dead_holders_lock_is_taken_over = engine.test_a_dead_holders_lock_is_taken_over
test_saved_plan_refuses_to_apply_once_the_world_moved = engine.test_saved_plan_refuses_to_apply_once_the_world_moved
test_transient_errors_are_retried = engine.test_transient_errors_are_retried


def test_sessions_sharing_a_state_see_each_others_work(tmp_path: Path, state: str) -> None:
    inv = engine.write_inventory(tmp_path, count=2)
    with Session(inv, state_path=state) as first:
        result = first.apply(first.plan())
        assert result.ok
        providers = first.providers()
        engine.write_inventory(tmp_path, count=3)
        with Session(inv, state_path=state) as second:  # another connection to the same state
            second._providers = providers  # the same (in-process) hosts
            assert second.store.journal_of(result.run_id)[-1][2] == "done"
            assert len(second.store.applied()) == 8
            plan = second.plan()
            assert {(c.kind, c.action) for c in plan.pending} == {("server", Action.CREATE), ("volume", Action.CREATE)}
            again = second.apply(plan)
            assert again.ok and again.run_id == result.run_id + 1
            assert not second.plan().has_changes
            last = second.store.last_run()
            assert last is not None and (last["id"], last["status"]) == (again.run_id, "succeeded")
            second._providers = None  # do not close the shared providers


def test_a_remote_holder_is_refused_and_not_taken_over(tmp_path: Path, state: str) -> None:
    with Session(engine.write_inventory(tmp_path), state_path=state) as s:
        remote = Holder("alice", "ci-runner-7", 4242, "apply", "2026-11-26T10:00:00+00:00")
        s.store.lock(["sy-kvm1"], remote, None)
        with pytest.raises(StateLockedError, match=r"alice@ci-runner-7 pid 4242 .*on another machine"):
            s.apply(s.plan())
        held = s.store.locks()["sy-kvm1"]  # still there: only 'dcctl lock break' clears it
        assert (held.user, held.host, held.pid) == (remote.user, remote.host, remote.pid)
