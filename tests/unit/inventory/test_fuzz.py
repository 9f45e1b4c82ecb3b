"""Hypothesis mutates valid inventories (their text and their structure): dcctl reports, it never crashes."""

from __future__ import annotations

import contextlib
import io
from pathlib import Path
from typing import Any

import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dcctl.cli.app import main
from dcctl.diagnostics import Diagnostics
from dcctl.inventory.loader import _Loader
from dcctl.inventory.references import check_references
from dcctl.policy import check_policy
from tests.conftest import CASES, ROOT

SOURCES = sorted((CASES / "policy" / "_base").glob("*.yaml")) + sorted((ROOT / "inventories" / "lab").glob("*.yaml"))
TEXTS = [p.read_text(encoding="utf-8") for p in SOURCES]
SETTINGS = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])

scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=True),
    st.text(max_size=20),
    st.sampled_from(["intranet", "extranet", "15m", "4h", "198.18.0.0/33", "shenyang-dc", "test:///default"]),
)
values = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3),
    max_leaves=8,
)


def _check(files: dict[str, bytes]) -> None:
    """Load, resolve references and check policy in-process, as ``dcctl validate`` does, without temporary files."""
    diags = Diagnostics()
    loader = _Loader(Path(), diags)
    for name, raw in files.items():
        loader.load_document(raw, name)
    check_references(loader.inv, diags)
    check_policy(loader.inv)


def _mutate(data: Any, path: list[int], replacement: Any, mode: int) -> Any:
    """Replace, delete or duplicate the node reached by walking ``path`` (indices modulo the container sizes)."""
    if not path or not isinstance(data, dict | list) or not data:
        return replacement
    keys = list(data) if isinstance(data, dict) else list(range(len(data)))
    key = keys[path[0] % len(keys)]
    if len(path) == 1:
        if mode == 0:
            data[key] = replacement
        elif mode == 1:
            del data[key]
        elif isinstance(data, list):
            data.append(data[key])
        else:
            data[f"{key}_"] = data[key]
        return data
    data[key] = _mutate(data[key], path[1:], replacement, mode)
    return data


@SETTINGS
@given(
    index=st.integers(min_value=0, max_value=len(TEXTS) - 1),
    path=st.lists(st.integers(min_value=0, max_value=50), min_size=1, max_size=6),
    replacement=values,
    mode=st.integers(min_value=0, max_value=2),
)
def test_structural_mutations_never_crash(index: int, path: list[int], replacement: Any, mode: int) -> None:
    data = yaml.safe_load(TEXTS[index])
    mutated = _mutate(data, path, replacement, mode)
    text = yaml.safe_dump(mutated, allow_unicode=True)
    files = {p.name: t.encode() for p, t in zip(SOURCES, TEXTS, strict=True)}
    files[SOURCES[index].name] = text.encode()
    _check(files)


@SETTINGS
@given(
    index=st.integers(min_value=0, max_value=len(TEXTS) - 1),
    position=st.integers(min_value=0, max_value=10_000),
    junk=st.binary(max_size=12),
    delete=st.integers(min_value=0, max_value=40),
)
def test_text_mutations_never_crash(index: int, position: int, junk: bytes, delete: int) -> None:
    raw = TEXTS[index].encode()
    at = position % (len(raw) + 1)
    mutated = raw[:at] + junk + raw[at + delete :]
    _check({"mutated.yaml": mutated})


def test_cli_survives_a_mutated_file(tmp_path: Path) -> None:
    (tmp_path / "x.yaml").write_bytes(TEXTS[0].encode()[:57] + b"\x00\xff: [&a *a")
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        assert main(["validate", str(tmp_path)]) == 1
    assert "Traceback" not in out.getvalue() + err.getvalue()
