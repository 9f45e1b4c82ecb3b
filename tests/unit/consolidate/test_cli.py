"""`dcctl consolidate plan | run` on a generated province (libvirt's test driver: observed in-process)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from dcctl.cli import exitcodes
from dcctl.cli.app import main
from tests.unit.consolidate.conftest import backend, workload, write_province

LEGACY = "faku-legacy-dc"


def short(tmp_path: Path) -> Path:
    """Shenyang has 2 vCPU and 4 GB, a staying county uses 1 vCPU: Faku's three servers cannot fit."""
    small = backend("sy-kvm", vcpus=2, ram_gb=4, storage_gb=100)
    return write_province(
        tmp_path / "inv",
        target=small,
        legacy_workloads=[workload("faku-portal", ["app"], count=3)],
        quotas={"vcpus": 3, "ram_gb": 3, "storage_gb": 30, "instances": 3},
        staying=1,
    )


def test_plan_refuses_a_shortfall_with_the_numbers(
    tmp_path: Path, state_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    inv = short(tmp_path)
    state = state_url
    assert main(["consolidate", "plan", LEGACY, str(inv), "--json", "--state", state]) == exitcodes.ERROR
    doc = json.loads(capsys.readouterr().out)["consolidation"]
    assert doc["refused"] is True
    errors = [d for d in doc["diagnostics"] if d["severity"] == "error"]
    assert {e["code"] for e in errors} == {"consolidate-no-capacity"}
    [error, quotas] = sorted(errors, key=lambda e: "quotas" in e["message"])
    assert "short vCPU 3 > 1 free" in quotas["message"]
    assert "needs 3 vCPU, 3072 MiB RAM, 30 GB storage" in error["message"]
    assert "sy-kvm has 1 vCPU, 3072 MiB RAM, 90 GB storage free" in error["message"]
    assert error["file"].endswith("province.yaml") and error["line"] > 0

    assert main(["consolidate", "plan", LEGACY, str(inv), "--state", state]) == exitcodes.ERROR
    out = capsys.readouterr().out
    assert "error[consolidate-no-capacity]" in out and "Refused: 2 errors." in out
    assert "faku-kvm → sy-kvm,?" in out  # two servers would fit, the third has no place


def test_run_refused_at_plan_time_moves_nothing(
    tmp_path: Path, state_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    inv = short(tmp_path)
    before = (inv / "province.yaml").read_bytes()
    code = main(["consolidate", "run", LEGACY, str(inv), "--yes", "--state", state_url])
    assert code == exitcodes.ERROR
    assert "Refused: nothing was moved." in capsys.readouterr().out
    assert (inv / "province.yaml").read_bytes() == before


def test_a_plan_that_fits(tmp_path: Path, state_url: str, capsys: pytest.CaptureFixture[str]) -> None:
    inv = write_province(tmp_path / "inv")
    assert main(["consolidate", "plan", LEGACY, str(inv), "--state", state_url]) == exitcodes.OK
    out = capsys.readouterr().out
    assert "Plan: ready to run. 1 workloads to move" in out
    assert "faku-portal" in out and "faku-kvm → sy-kvm" in out and "then faku-ext's hosted_in switches" in out
    assert "Order: " in out and "Expected downtime: " in out


def test_command_line_mistakes(tmp_path: Path, state_url: str, capsys: pytest.CaptureFixture[str]) -> None:
    inv = write_province(tmp_path / "inv")
    state = ["--state", state_url]
    assert main(["consolidate", "plan", LEGACY, str(inv), "--method", "teleport", *state]) == exitcodes.USAGE
    assert main(["consolidate", "plan", "faku", str(inv), *state]) == exitcodes.ERROR
    assert "no data center 'faku'" in capsys.readouterr().err
    assert main(["consolidate", "--help"]) == exitcodes.OK
    assert "plan" in capsys.readouterr().out
