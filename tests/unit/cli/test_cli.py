"""The command line: exit codes CI can branch on, one JSON document with --json, help that teaches."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import jsonschema
import pytest
import yaml

from dcctl.cli import exitcodes
from dcctl.cli.app import main
from dcctl.policy import RULES
from tests.conftest import CASES, ROOT

BASE = CASES / "policy" / "_base"


def test_validate_ok_exits_zero(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["validate", str(BASE)]) == exitcodes.OK
    assert "0 errors, 0 warnings" in capsys.readouterr().out


def test_validate_json_is_one_document(capsys: pytest.CaptureFixture[str]) -> None:
    bad = CASES / "policy" / "mlps-dr-required" / "bad" / "tenancies.yaml"
    assert main(["validate", str(bad), "--json"]) == exitcodes.ERROR
    out = capsys.readouterr()
    doc = json.loads(out.out)
    assert doc["format_version"] == 1
    assert doc["valid"] is False
    assert doc["errors"] == len([d for d in doc["diagnostics"] if d["severity"] == "error"])
    assert {"code", "message", "hint", "file", "line", "column", "severity"} <= set(doc["diagnostics"][0])


def test_validate_human_format(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    f = tmp_path / "p.yaml"
    f.write_text("province:\n  id: x\n  nmae: y\n")
    assert main(["validate", str(f)]) == exitcodes.ERROR
    lines = capsys.readouterr().out.splitlines()
    assert f"{f}:3:3: error[schema-unknown-key]: unknown key 'nmae' (province.nmae) — did you mean 'name'?" in lines


def test_usage_error_has_its_own_exit_code(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["validate", "--no-such-flag"]) == exitcodes.USAGE
    assert "No such option" in capsys.readouterr().err


def test_policy_list_and_explain(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["policy", "list", "--json"]) == exitcodes.OK
    ids = [r["id"] for r in json.loads(capsys.readouterr().out)["rules"]]
    assert ids == sorted(RULES)
    assert main(["policy", "explain", "audit-retention-minimum"]) == exitcodes.OK
    out = capsys.readouterr().out
    assert "184" in out
    assert "Cybersecurity Law" in out


def test_policy_explain_unknown_rule_suggests(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["policy", "explain", "net-zone-exclusiv"]) == exitcodes.ERROR
    err = capsys.readouterr().err
    assert "no rule 'net-zone-exclusiv'" in err
    assert "net-zone-exclusive" in err


def test_schema_is_valid_json_schema_and_accepts_inventory_files(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    assert main(["schema"]) == exitcodes.OK
    schema = json.loads(capsys.readouterr().out)
    jsonschema.Draft202012Validator.check_schema(schema)
    validator = jsonschema.Draft202012Validator(schema)
    for path in sorted(BASE.glob("*.yaml")):
        data = json.loads(json.dumps(yaml.safe_load(path.read_text()), default=str))
        assert list(validator.iter_errors(data)) == [], path
    assert list(validator.iter_errors({"tenancies": [{"id": "x"}]})), "missing keys must fail the schema too"


def test_version_and_help_need_no_inventory(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--version"]) == exitcodes.OK
    assert capsys.readouterr().out.startswith("dcctl ")
    assert main([]) == exitcodes.OK
    assert "validate" in capsys.readouterr().out


def test_console_script_runs_as_a_process() -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "dcctl", "validate", str(BASE), "--json"],
        capture_output=True,
        text=True,
        cwd=ROOT,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["valid"] is True
    assert proc.stderr == ""


def test_secrets_never_reach_the_output(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    bad = CASES / "policy" / "secrets-not-in-inventory"
    for overlay in ("bad", "bad-url"):
        for f in (bad / overlay).iterdir():
            (tmp_path / f.name).write_text(f.read_text())
    assert main(["validate", str(tmp_path), "--json"]) == exitcodes.ERROR
    out = capsys.readouterr().out
    assert "secrets-not-in-inventory" in out
    assert "hunter2" not in out
    assert "s3cr3t" not in out


def loaded_after(args: list[str], cwd: Path) -> set[str]:
    """The top-level packages a CLI run in a fresh interpreter has imported by its end."""
    code = (
        "import sys; from dcctl.cli.app import main; main(sys.argv[1:]); print(*{m.split('.')[0] for m in sys.modules})"
    )
    proc = subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, cwd=cwd, check=False)
    assert proc.returncode == 0, proc.stderr
    return set(proc.stdout.splitlines()[-1].split())


def test_commands_import_only_what_they_use(tmp_path: Path, state_url: str) -> None:
    """Start-up is most of a short command's time: help loads no model, and a libvirt plan (a no-op apply's work)
    neither the other backends' SDKs nor the template engine, reports, or a PostgreSQL driver it does not use."""
    from tests.unit.engine.test_engine_testdriver import write_inventory

    heavy = {"openstack", "paramiko", "jinja2", "weasyprint", "psycopg"}
    assert loaded_after(["--help"], tmp_path) & (heavy | {"pydantic", "libvirt", "yaml", "sqlite3"}) == set()
    inv = write_inventory(tmp_path)
    plan = loaded_after(["plan", str(inv), "--state", state_url], tmp_path)
    assert plan & heavy == ({"psycopg"} if state_url.startswith("postgresql") else set())
