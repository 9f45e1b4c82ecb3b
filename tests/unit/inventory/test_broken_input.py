"""Every kind of broken input yields exit 1 and a diagnostic at the right file:line, never a traceback."""

from __future__ import annotations

import resource
import time
from pathlib import Path

import pytest

from dcctl.cli.app import main
from dcctl.inventory import load_inventory

VALID_HEAD = """\
province:
  id: testprov
  name: 测试省
  dr_site: prov-dr
  cities: [{id: shenyang, name: 沈阳市}]
"""

ALIAS_BOMB = """\
a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]
b: &b [*a,*a,*a,*a,*a,*a,*a,*a,*a]
c: &c [*b,*b,*b,*b,*b,*b,*b,*b,*b]
d: &d [*c,*c,*c,*c,*c,*c,*c,*c,*c]
e: &e [*d,*d,*d,*d,*d,*d,*d,*d,*d]
f: &f [*e,*e,*e,*e,*e,*e,*e,*e,*e]
g: &g [*f,*f,*f,*f,*f,*f,*f,*f,*f]
h: &h [*g,*g,*g,*g,*g,*g,*g,*g,*g]
i: &i [*h,*h,*h,*h,*h,*h,*h,*h,*h]
tenancies: *i
"""

# (name, file content, expected code, expected line)
CASES: list[tuple[str, bytes, str, int]] = [
    ("empty", b"", "yaml-empty-file", 1),
    ("only-comments", b"# nothing here\n", "yaml-empty-file", 1),
    ("binary-junk", b"\x7fELF\x02\x01\x01\x00\x00\x00" + bytes(range(256)), "yaml-not-utf8", 2),
    ("nul-byte", b"province:\n  id: x\x00\n", "yaml-not-text", 2),
    ("latin1", "province:\n  name: caf\xe9\n".encode("latin-1"), "yaml-not-utf8", 2),
    ("alias-bomb", ALIAS_BOMB.encode(), "yaml-alias-bomb", 0),
    ("recursive-alias", b"tenancies: &t [*t]\n", "yaml-recursive-alias", 1),
    ("duplicate-key", (VALID_HEAD + "  name: 又一个省\n").encode(), "yaml-duplicate-key", 6),
    ("syntax-error", b"province:\n  id: [unclosed\n  name: x\n", "yaml-syntax", 3),
    ("tab-indent", b"province:\n\tid: x\n", "yaml-syntax", 2),
    ("two-documents", (VALID_HEAD + "---\ntenancies: []\n").encode(), "yaml-syntax", 6),
    ("top-level-list", b"- province\n", "schema-type", 1),
    ("unknown-section", (VALID_HEAD + "tenancys: []\n").encode(), "schema-unknown-key", 6),
    ("unknown-key", (VALID_HEAD + "  capitol: 沈阳\n").encode(), "schema-unknown-key", 6),
    ("wrong-type", VALID_HEAD.replace("cities: [", "cities: 7 #[").encode(), "schema-type", 5),
    ("bad-id", VALID_HEAD.replace("id: testprov", "id: Test_Prov").encode(), "schema-value", 2),
    ("missing-key", VALID_HEAD.replace("  name: 测试省\n", "").encode(), "schema-missing-key", 1),
    ("section-not-list", (VALID_HEAD + "tenancies: {id: x}\n").encode(), "schema-type", 6),
    ("dangling-ref", VALID_HEAD.encode(), "ref-unknown", 4),
    ("python-tag", b"province: !!python/object:os.system {}\n", "yaml-bad-value", 1),
    ("deep-nesting", b"tenancies: " + b"[" * 300 + b"]" * 300 + b"\n", "yaml-too-deep", 1),
    ("parser-nesting-limit", b"tenancies: " + b"[" * 5000 + b"]" * 5000 + b"\n", "yaml-syntax", 1),
]


def _write(tmp_path: Path, content: bytes) -> Path:
    inv = tmp_path / "inv"
    inv.mkdir()
    (inv / "broken.yaml").write_bytes(content)
    return inv


@pytest.mark.parametrize(("name", "content", "code", "line"), CASES, ids=[c[0] for c in CASES])
def test_broken_input_is_diagnosed(
    name: str, content: bytes, code: str, line: int, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    inv = _write(tmp_path, content)
    _, diags = load_inventory(inv)
    codes = {(d.code, d.source.line if d.source else None) for d in diags}
    if line:
        assert (code, line) in codes, codes
    else:
        assert code in {c for c, _ in codes}, codes
    assert main(["validate", str(inv)]) == 1
    out = capsys.readouterr()
    assert "Traceback" not in out.out + out.err
    assert f"error[{code}]" in out.out
    assert str(inv / "broken.yaml") in out.out or "broken.yaml" in out.out


def test_alias_bomb_fails_fast_in_bounded_memory(tmp_path: Path) -> None:
    inv = _write(tmp_path, ALIAS_BOMB.encode())
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    started = time.monotonic()
    _, diags = load_inventory(inv)
    assert time.monotonic() - started < 2.0
    grown_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before
    assert grown_kib < 50 * 1024, f"peak memory grew by {grown_kib} KiB"
    assert [d.code for d in diags] == ["yaml-alias-bomb"]


def test_missing_inventory_path(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    assert main(["validate", str(tmp_path / "nowhere")]) == 1
    assert "error[inventory-not-found]" in capsys.readouterr().out


def test_directory_without_yaml(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    (tmp_path / "README.txt").write_text("not an inventory")
    assert main(["validate", str(tmp_path)]) == 1
    assert "error[inventory-empty]" in capsys.readouterr().out


def test_unreadable_file(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    (tmp_path / "province.yaml").write_text(VALID_HEAD)
    (tmp_path / "city.yaml").symlink_to(tmp_path / "gone.yaml")  # listed, but cannot be read
    _, diags = load_inventory(tmp_path)
    assert "inventory-unreadable" in {d.code for d in diags}
    assert main(["validate", str(tmp_path)]) == 1
    assert "city.yaml: error[inventory-unreadable]" in capsys.readouterr().out
