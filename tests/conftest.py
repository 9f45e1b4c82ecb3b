"""Shared fixtures: paths to the project's inventories and test cases, and the state backend every test runs on
(``DCCTL_TEST_STATE``: ``sqlite``, the default, or ``postgresql``; see ``tests/states.py``)."""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from pathlib import Path

import pytest

from tests import states

ROOT = Path(__file__).resolve().parent.parent
CASES = ROOT / "tests" / "cases"


def pytest_configure(config: pytest.Config) -> None:
    if states.BACKEND not in states.BACKENDS:
        raise pytest.UsageError(
            f"DCCTL_TEST_STATE={os.environ.get('DCCTL_TEST_STATE')!r}: the state backend is one of "
            + ", ".join(states.BACKENDS)
        )
    config.addinivalue_line(
        "markers",
        "own_state(reason): the test chooses its state backends itself (SQLite on purpose, or each backend in turn), "
        "so DCCTL_TEST_STATE does not apply to it",
    )
    config.addinivalue_line(
        "markers", "state_free: the test never touches a state (set for the modules of STATE_FREE, and held to it)"
    )


def pytest_report_header(config: pytest.Config) -> str:
    where = f" ({states.postgres_url()})" if states.POSTGRES else ""
    return f"dcctl state backend: {states.BACKEND}{where} (DCCTL_TEST_STATE)"


@pytest.fixture
def root() -> Path:
    return ROOT


def require_service(name: str, available: bool, start_with: str) -> None:
    """Skip a test whose service is missing, saying how to start it; in CI (DCCTL_REQUIRE_SERVICES=1) fail instead."""
    if available:
        return
    message = f"{name} is not running: start it with `{start_with}`"
    if os.environ.get("DCCTL_REQUIRE_SERVICES"):
        pytest.fail(message + " (CI must start every service its tests need)")
    pytest.skip(message)


# --------------------------------------------------------------------------------------------------- the state
#: modules that never touch a state (no Store, no state-opening command, in-process or in a child): the PostgreSQL
#: pass of ``scripts/test`` (``--state-dependent``) leaves them out. Every pass holds them to it: a state opened by
#: one of their tests fails it, and a dcctl they start finds no state at ``DCCTL_STATE``.
STATE_FREE = (
    "tests/integration/test_lab_ssh.py",
    "tests/unit/consolidate/test_digest.py",
    "tests/unit/consolidate/test_edit.py",
    "tests/unit/consolidate/test_migrate.py",
    "tests/unit/consolidate/test_plan.py",
    "tests/unit/inventory/",
    "tests/unit/policy/",
    "tests/unit/providers/",
    "tests/unit/test_inventories.py",
)
#: ``DCCTL_STATE`` in a state-free test: any dcctl that opens a state there fails at once, naming this
NO_STATE = "no-state-in-a-STATE_FREE-test://tests/conftest.py"


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--state-dependent",
        action="store_true",
        help="run only the tests the state backend (DCCTL_TEST_STATE) can change: leave out the modules of "
        "STATE_FREE (tests/conftest.py) and the tests marked own_state (they choose their backends themselves)",
    )


def pytest_itemcollected(item: pytest.Item) -> None:
    if item.nodeid.startswith(STATE_FREE):
        item.add_marker(pytest.mark.state_free)


_LEFT_OUT = pytest.StashKey[int]()


@pytest.hookimpl(trylast=True)  # after -k and -m: what this leaves out was selected, and ran in the SQLite pass
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if not config.getoption("--state-dependent"):
        return
    keep: list[pytest.Item] = []
    drop: list[pytest.Item] = []
    for item in items:
        independent = item.get_closest_marker("state_free") or item.get_closest_marker("own_state")
        (drop if independent else keep).append(item)
    if drop:
        config.hook.pytest_deselected(items=drop)
        items[:] = keep
    config.stash[_LEFT_OUT] = len(drop)


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """With ``--state-dependent``, selected tests that are all independent of the state are no "no tests collected"
    (exit 5): they ran in the SQLite pass. A selection of nothing at all stays exit 5."""
    left_out = session.config.stash.get(_LEFT_OUT, 0)
    if exitstatus == pytest.ExitCode.NO_TESTS_COLLECTED and left_out:
        session.exitstatus = pytest.ExitCode.OK
        reporter = session.config.pluginmanager.get_plugin("terminalreporter")
        if reporter is not None:
            reporter.write_line(
                f"--state-dependent: the {left_out} selected tests are all independent of the state backend "
                "(they ran in the SQLite pass): none to run again"
            )


#: the SQLite states a test may leave in the repository's own inventories (a dcctl run on them without --state)
_REPO_STATES = [ROOT / "inventories" / name / ".dcctl" / "state.db" for name in ("lab", "liaoning")]


def _stamps() -> list[tuple[Path, float | None]]:
    out: list[tuple[Path, float | None]] = []
    for db in _REPO_STATES:
        for path in (db, db.with_name("state.db-wal")):
            try:
                out.append((path, path.stat().st_mtime))
            except OSError:
                out.append((path, None))
    return out


def _sqlite_files(directory: Path, since: float) -> list[Path]:
    """SQLite databases written under ``directory`` since then, but for consolidation's scratch journals (SQLite by
    design)."""
    found = []
    for path in directory.rglob("*.db"):
        if path.parent.name == "consolidate" or not path.is_file() or path.stat().st_mtime < since:
            continue
        with path.open("rb") as f:
            if f.read(16) == b"SQLite format 3\x00":
                found.append(path)
    return found


@pytest.fixture(scope="session", autouse=True)
def _session_state() -> Iterator[str | None]:
    """What ``DCCTL_STATE`` is outside the tests themselves (in module and session fixtures): none (SQLite), or a
    schema of the session's own."""
    with pytest.MonkeyPatch.context() as mp:
        if not states.POSTGRES:
            mp.delenv("DCCTL_STATE", raising=False)
            yield None
            return
        with states.fresh_schema(states.require_postgres()) as url:
            mp.setenv("DCCTL_STATE", url)
            yield url


@pytest.fixture(autouse=True)
def _test_state(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> Iterator[str | None]:
    """The state every test and every dcctl it starts uses by default (``DCCTL_STATE``).

    SQLite: none set (dcctl's default, ``<inventory>/.dcctl/state.db``; a ``DCCTL_STATE`` of the caller's own is
    never used by the tests). PostgreSQL: a fresh schema, dropped after the test; and the test must not have made a
    SQLite state after all (a path of its own choosing, or one of the repository's inventories), unless it says why
    with ``own_state``."""
    if request.node.get_closest_marker("state_free"):
        yield from _no_state(monkeypatch)
        return
    if not states.POSTGRES:
        monkeypatch.delenv("DCCTL_STATE", raising=False)
        yield None
        return
    # the test's tmp_path, if it has one, now: so that it is still there when this fixture checks it afterwards
    tmp: Path | None = request.getfixturevalue("tmp_path") if "tmp_path" in request.fixturenames else None
    with states.fresh_schema(states.require_postgres()) as url:
        monkeypatch.setenv("DCCTL_STATE", url)
        before, started = _stamps(), time.time() - 1
        yield url
        if request.node.get_closest_marker("own_state"):
            return
        touched = [str(path) for (path, was), (_, now) in zip(before, _stamps(), strict=True) if now != was]
        touched += [str(p) for p in _sqlite_files(tmp, started)] if tmp is not None else []
        if touched:
            pytest.fail(
                "DCCTL_TEST_STATE=postgresql, but this test wrote a SQLite state: "
                + ", ".join(touched)
                + " — use the state_url fixture (or fresh_state) instead of a path, or mark it own_state(reason)",
                pytrace=False,
            )


def _no_state(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """A state-free test: no state may be opened, here or in a dcctl it starts (``DCCTL_STATE`` leads nowhere)."""
    from dcctl.state.store import Store

    opened: list[str] = []
    real = Store.__init__

    def refuse(self: Store, location: str | Path) -> None:
        opened.append(str(location))
        raise AssertionError(f"a state-free test opened the state {location} (STATE_FREE in tests/conftest.py)")

    monkeypatch.setattr(Store, "__init__", refuse)
    monkeypatch.setenv("DCCTL_STATE", NO_STATE)
    yield None
    monkeypatch.setattr(Store, "__init__", real)
    if opened:
        pytest.fail(
            f"this test opened a state ({', '.join(opened)}) but its module is listed in STATE_FREE "
            "(tests/conftest.py): take it out of that list",
            pytrace=False,
        )


@pytest.fixture
def state_url(_test_state: str | None, tmp_path: Path) -> str:
    """A fresh state for this test on the backend under test, for ``--state`` or ``Store(…)``: a SQLite file in
    ``tmp_path``, or the PostgreSQL schema that ``DCCTL_STATE`` names too."""
    return _test_state or str(tmp_path / "state.db")


@pytest.fixture
def new_state(tmp_path: Path) -> Iterator[Callable[[], str]]:
    """Makes more fresh states for this test (another SQLite file, another schema); all go with the test."""
    with ExitStack() as stack:
        made = iter(range(1, 1_000))

        def make() -> str:
            return stack.enter_context(states.fresh_state(tmp_path / f"state-{next(made)}"))

        yield make
