"""In-place YAML edits (dcctl.inventory.edit): one value replaced by its source position, every other byte kept."""

from __future__ import annotations

from pathlib import Path

import pytest

from dcctl.api import validate
from dcctl.diagnostics import SourceRange
from dcctl.inventory.edit import EditError, ScalarEdit, apply_edits, edit_text
from tests.conftest import ROOT

BLOCK = """\
# Faku still runs its own data center.
tenancies:
  - id: faku-ext   # the county
    name: 法库县人民政府（外网）
    hosted_in: faku-legacy-dc    # until consolidated
    zone: extranet
"""


def at(line: int, column: int, old: str = "faku-legacy-dc", new: str = "shenyang-dc") -> ScalarEdit:
    return ScalarEdit(SourceRange("t.yaml", line, column), "hosted_in", old, new)


def test_block_value_replaced_comments_and_layout_kept() -> None:
    out = edit_text(BLOCK.encode(), [at(5, 5)]).decode()
    assert out == BLOCK.replace("hosted_in: faku-legacy-dc    #", "hosted_in: shenyang-dc    #")


def test_flow_mapping_quoting_crlf_and_bom_kept() -> None:
    text = '\ufefftenancies:\r\n  - {id: a, hosted_in: "faku-legacy-dc", zone: x}  # c\r\n'
    out = edit_text(text.encode(), [at(2, 13)]).decode()
    assert out == text.replace('"faku-legacy-dc"', '"shenyang-dc"')
    single = "t: {hosted_in: 'faku-legacy-dc'}\n"
    assert edit_text(single.encode(), [at(1, 5)]).decode() == "t: {hosted_in: 'shenyang-dc'}\n"


def test_positions_count_unicode_characters() -> None:
    text = "t: {name: 法库县人民政府, hosted_in: faku-legacy-dc}\n"
    column = text.index("hosted_in") + 1
    assert "hosted_in: shenyang-dc}" in edit_text(text.encode(), [at(1, column)]).decode()


@pytest.mark.parametrize(
    ("text", "where", "message"),
    [
        (BLOCK, (5, 5, "other-dc"), "the file changed since the inventory was read"),
        (BLOCK, (4, 5, "faku-legacy-dc"), "expected the key 'hosted_in' here but found 'name'"),
        (BLOCK, (3, 5, "faku-legacy-dc"), "expected the key 'hosted_in'"),
        ("d: &dc faku-legacy-dc\nt:\n  hosted_in: *dc\n", (3, 3, "faku-legacy-dc"), "is an alias (*dc)"),
        ("t:\n  hosted_in: &dc faku-legacy-dc\nu: *dc\n", (2, 3, "faku-legacy-dc"), "carries an anchor (&dc)"),
        ("t:\n  hosted_in: |\n    faku-legacy-dc\n", (2, 3, "faku-legacy-dc\n"), "block scalar"),
        ("b: &b {hosted_in: faku-legacy-dc}\nt:\n  <<: *b\n", (3, 3, "faku-legacy-dc"), "found '<<'"),
        (BLOCK, (9, 1, "faku-legacy-dc"), "no key 'hosted_in' is written at this place"),
    ],
)
def test_unsafe_edits_are_refused(text: str, where: tuple[int, int, str], message: str) -> None:
    line, column, old = where
    with pytest.raises(EditError, match=message.replace("(", r"\(").replace(")", r"\)").replace("*", r"\*")):
        edit_text(text.encode(), [at(line, column, old)])


def test_a_value_that_would_read_back_differently_is_refused() -> None:
    with pytest.raises(EditError, match="cannot be written as a plain value"):
        edit_text(BLOCK.encode(), [at(5, 5, new="yes")])  # YAML would read a boolean


def test_files_are_replaced_atomically_with_their_mode(tmp_path: Path) -> None:
    f = tmp_path / "t.yaml"
    f.write_text(BLOCK)
    f.chmod(0o640)
    edit = ScalarEdit(SourceRange(str(f), 5, 5), "hosted_in", "faku-legacy-dc", "shenyang-dc")
    [dry] = apply_edits([edit], dry_run=True)
    assert f.read_text() == BLOCK and dry.sha256_before != dry.sha256_after
    [done] = apply_edits([edit])
    assert "hosted_in: shenyang-dc" in f.read_text() and (f.stat().st_mode & 0o777) == 0o640
    assert done.sha256_before == dry.sha256_before and done.sha256_after == dry.sha256_after
    assert sorted(p.name for p in tmp_path.iterdir()) == ["t.yaml"]  # no temporary file left
    with pytest.raises(EditError, match="changed since"):
        apply_edits([edit])  # the same edit again: the file no longer says faku-legacy-dc


def test_the_lab_inventory_edit_is_exactly_one_line(tmp_path: Path) -> None:
    src = ROOT / "inventories" / "lab" / "shenyang.yaml"
    copy = tmp_path / "shenyang.yaml"
    copy.write_bytes(src.read_bytes())
    for other in ("province.yaml", "provincial.yaml"):
        (tmp_path / other).write_bytes((src.parent / other).read_bytes())
    tenancy = validate(tmp_path).inventory.tenancies["faku-ext"]
    where = tenancy.where("hosted_in")
    assert where is not None
    apply_edits([ScalarEdit(where, "hosted_in", "faku-legacy-dc", "shenyang-dc")])
    before, after = src.read_text().splitlines(), copy.read_text().splitlines()
    assert [(a, b) for a, b in zip(before, after, strict=True) if a != b] == [
        ("    hosted_in: faku-legacy-dc", "    hosted_in: shenyang-dc")
    ]
    assert validate(tmp_path).inventory.tenancies["faku-ext"].hosted_in == "shenyang-dc"
