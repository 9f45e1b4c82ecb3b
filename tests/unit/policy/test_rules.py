"""Every policy rule, both ways: a violating overlay yields exactly its rule id at the right file:line, the fixed
overlay yields nothing (data-driven from tests/cases/policy/<rule-id>/{bad,good}/ over _base/)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from dcctl import api
from dcctl.policy import RULES
from tests.conftest import CASES

POLICY = CASES / "policy"
CASE_DIRS = sorted(p for p in POLICY.iterdir() if p.is_dir() and not p.name.startswith("_"))


def _run(case: Path, variant: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> set[str]:
    inv = tmp_path / "inv"
    shutil.copytree(POLICY / "_base", inv)
    for f in (case / variant).iterdir():
        shutil.copy(f, inv / f.name)
    monkeypatch.chdir(inv)
    result = api.validate(".")
    return {
        f"{d.source.path}:{d.source.line}:{d.source.column}: {d.severity.value}[{d.code}]"
        for d in result.diagnostics
        if d.source
    } | {f"(no source): {d.severity.value}[{d.code}]" for d in result.diagnostics if not d.source}


def _expected(path: Path) -> set[str]:
    if not path.exists():
        return set()
    return {line.strip() for line in path.read_text().splitlines() if line.strip()}


def test_base_inventory_is_clean(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(POLICY / "_base")
    result = api.validate(".")
    assert list(result.diagnostics) == []


def test_every_rule_has_a_case() -> None:
    assert {p.name for p in CASE_DIRS} == set(RULES)


def _variants(prefix: str) -> list[tuple[Path, str]]:
    """(case, variant) for every ``bad``/``bad-<name>`` (or ``good``…) overlay directory."""
    return [
        (case, v.name)
        for case in CASE_DIRS
        for v in sorted(case.iterdir())
        if v.is_dir() and v.name.split("-")[0] == prefix
    ]


def _expected_for(case: Path, variant: str) -> set[str]:
    """bad → expected.txt, bad-x → expected-x.txt, good → expected-good.txt (absent: nothing expected)."""
    name = "expected.txt" if variant == "bad" else f"expected-{variant.removeprefix('bad-')}.txt"
    return _expected(case / name)


@pytest.mark.parametrize(("case", "variant"), _variants("bad"), ids=lambda x: x.name if isinstance(x, Path) else x)
def test_rule_violated(case: Path, variant: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    found = _run(case, variant, tmp_path, monkeypatch)
    assert found == _expected_for(case, variant)
    assert any(f"[{case.name}]" in line for line in found)


@pytest.mark.parametrize(("case", "variant"), _variants("good"), ids=lambda x: x.name if isinstance(x, Path) else x)
def test_rule_respected(case: Path, variant: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    found = _run(case, variant, tmp_path, monkeypatch)
    assert found == _expected_for(case, variant)


@pytest.mark.parametrize("rule_id", sorted(RULES))
def test_rule_is_documented(rule_id: str) -> None:
    rule = RULES[rule_id]
    assert len(rule.rationale) > 120, "the rationale is a paragraph that says why"
    assert rule.cites
