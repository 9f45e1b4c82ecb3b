"""Evidence reports on the real lab: apply, replicate and drill, then report in every format and check it as a person
would — the PDF's text (pdftotext) holds the Chinese titles and the measured figures, the HTML loads in real headless
Chromium without a console error and is screenshotted, and no credential appears in any report, log or state file.
A report of the whole province (no live backends here) renders, marking what was not observed.

The lab inventory is used without its OpenStack city (dalian.yaml), so these tests depend on the libvirt lab only;
the credential test then reports on the full lab inventory, OpenStack cloud included, whatever it answers.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

from dcctl.report.render import duration
from tests.conftest import ROOT, require_service
from tests.integration.conftest import Lab, dcctl
from tests.states import dump, fresh_state, state_of

pytestmark = pytest.mark.integration

SCHEMA = json.loads((ROOT / "docs" / "report-schema.json").read_text(encoding="utf-8"))
LAB_KEY = Path("/var/lib/dcctl-lab/ssh/id_ed25519")
OSLAB = Path("/var/lib/dcctl-oslab")
SECTION_TITLES = ("资源总览", "租户托管情况", "网络区域与隔离", "信息系统等级保护与灾备", "变更记录与审计日志")
CHROMIUM_FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--hide-scrollbars",
    "--enable-logging=stderr",
    "--v=0",
)
WEB = ("dcctl-kangping-portal-web-1", "dcctl-kangping-portal-web-2")


@pytest.fixture(scope="module")
def work(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    work = tmp_path_factory.mktemp("reports")
    shutil.copytree(ROOT / "inventories" / "lab", work / "inv", ignore=shutil.ignore_patterns(".dcctl", "dalian.yaml"))
    with fresh_state(work):  # state_of(work): the module's one state, on the backend under test
        yield work


LOGS: list[str] = []  # every command's stdout and stderr, scanned for credentials


def run(work: Path, *args: str, check: bool = True, **kw: Any) -> subprocess.CompletedProcess[str]:
    result = dcctl(*args, "--state", state_of(work), check=check, **kw)
    LOGS.append(result.stdout + result.stderr)
    return result


@pytest.fixture(scope="module")
def reported(lab: Lab, work: Path) -> Iterator[Path]:
    """Apply the lab, replicate and drill the protected workload, then write the report in every format."""
    inv = str(work / "inv")
    run(work, "destroy", inv, "--yes")  # a clean slate, whatever an earlier run left
    run(work, "apply", inv, "--yes")
    for name in WEB:
        lab.wait_for_marker(lab.hosts["city"]["uri"], name)
    run(work, "dr", "replicate", inv)
    run(work, "dr", "drill", "kangping-portal", "-i", inv)
    out = work / "out"
    run(
        work,
        "report",
        inv,
        "--format",
        "html",
        "--format",
        "pdf",
        "--format",
        "md",
        "--format",
        "json",
        "--out",
        str(out),
    )
    run(work, "report", inv, "--lang", "en", "--format", "html", "--format", "pdf", "--out", str(out))
    yield out
    run(work, "destroy", inv, "--yes", check=False)
    shutil.rmtree(Path(lab.hosts["dr"]["srv_root_view"]) / "dr" / "kangping-portal", ignore_errors=True)


def report_json(out: Path) -> dict[str, Any]:
    doc: dict[str, Any] = json.loads((out / "report.json").read_text(encoding="utf-8"))
    return doc


def portal(doc: dict[str, Any]) -> dict[str, Any]:
    return next(w for w in doc["workloads"] if w["id"] == "kangping-portal")


def pdf_text(path: Path) -> str:
    require_service("pdftotext (poppler-utils)", shutil.which("pdftotext") is not None, "scripts/bootstrap")
    return subprocess.run(
        ["pdftotext", "-enc", "UTF-8", str(path), "-"], capture_output=True, text=True, check=True
    ).stdout


def test_report_shows_what_was_measured_on_the_lab(reported: Path) -> None:
    doc = report_json(reported)
    jsonschema.validate(doc, SCHEMA)
    assert doc["observation"]["counts"]["observed"] == doc["observation"]["backends"] == 4
    w = portal(doc)
    dr = w["dr"]
    assert dr["last_good_point"] is not None and dr["points"]["good"] >= 1
    assert dr["rpo_measured_seconds"] is not None and dr["rpo_measured_seconds"] < 900
    assert dr["rpo_status"] == "met"
    assert [d["kind"] for d in dr["drills"]] == ["drill"] and dr["drills"][0]["ok"]
    assert dr["drills"][0]["rto_seconds"] > 0
    assert dr["rto_measured_seconds"] == pytest.approx(dr["drills"][0]["rto_seconds"], abs=0.1)
    assert dr["gbt20988"]["level_achieved"] >= 5  # RPO within 30 min and a drilled RTO within 2 days
    assert set(w["running_on"]) == {"sy-kvm"} and w["used"]["running"] == 2
    sy = next(b for dc in doc["estate"]["data_centers"] for b in dc["backends"] if b["id"] == "sy-kvm")
    assert sy["used"]["servers"] == 3
    kangping = next(t for t in doc["tenancies"] if t["id"] == "kangping-ext")
    assert kangping["backups"][0]["backends"] == ["dr-kvm"] and kangping["backups"][0]["locations"]
    assert doc["audit"]["verification"]["ok"]
    actions = {e["action"] for e in doc["audit"]["entries"]}
    assert "apply.create" in actions
    assert {"dr.replicate", "dr.drill"} <= actions, actions
    assert {c["id"]: c["status"] for c in w["controls"]}["offsite-realtime-backup"] == "met"
    assert doc["drift"]["status"] == "observed"


def test_pdf_text_holds_the_chinese_titles_and_the_figures(reported: Path) -> None:
    doc = report_json(reported)
    text = pdf_text(reported / "report.zh.pdf")
    flat = "".join(text.split())
    for title in SECTION_TITLES:
        assert title in text, title
    assert "康平县政府门户网站" in flat
    dr = portal(doc)["dr"]
    assert duration(dr["rpo_measured_seconds"], "zh") in flat
    assert duration(dr["rto_measured_seconds"], "zh") in flat
    assert f"第{dr['gbt20988']['level_achieved']}级" in flat
    assert "GB/T20988-2025" in flat
    assert "□" not in text  # no tofu
    # (the English report was made a little later: its measured RPO, the age of the newest point, is larger)
    english = "".join(pdf_text(reported / "report.en.pdf").split())
    assert "Estateoverview" in english and "DRcapabilitylevel" in english
    assert duration(dr["rto_measured_seconds"], "en").replace(" ", "") in english


def chromium(html: Path, screenshot: Path) -> str:
    """Open a page in real headless Chromium, screenshot it, return what it logged (console messages included)."""
    binary = shutil.which("chromium")
    require_service("chromium", binary is not None, "scripts/bootstrap")
    assert binary is not None
    with tempfile.TemporaryDirectory() as profile:
        proc = subprocess.run(
            [
                binary,
                *CHROMIUM_FLAGS,
                f"--user-data-dir={profile}",
                "--window-size=1280,2400",
                f"--screenshot={screenshot}",
                html.as_uri(),
            ],
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
    assert proc.returncode == 0, proc.stderr[-2000:]
    return proc.stderr


def console_errors(log: str) -> list[str]:
    return [line for line in log.splitlines() if ":CONSOLE" in line or "Uncaught" in line]


def test_html_loads_in_headless_chromium_without_console_errors(reported: Path, work: Path) -> None:
    html = reported / "report.zh.html"
    shot = reported / "report.zh.png"
    log = chromium(html, shot)
    assert console_errors(log) == []
    png = shot.read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    width, height = int.from_bytes(png[16:20], "big"), int.from_bytes(png[20:24], "big")
    assert (width, height) == (1280, 2400)
    assert len(png) > 100_000  # a rendered page, not a blank one
    # nothing is fetched from anywhere: the page is self-contained evidence
    page = html.read_text(encoding="utf-8")
    assert not re.search(r"""(src|href)\s*=\s*["'](?!#)""", page)
    # and the check really sees an error when there is one
    broken = work / "broken.html"
    broken.write_text(page.replace("</body>", "<script>noSuchFunction();</script></body>"), encoding="utf-8")
    assert any("noSuchFunction" in line for line in console_errors(chromium(broken, work / "broken.png")))


def secrets() -> dict[str, str]:
    """Credentials of the lab (never printed: only where each comes from is named in a failure)."""
    found: dict[str, str] = {}
    if LAB_KEY.exists():
        body = [line for line in LAB_KEY.read_text().splitlines() if line and not line.startswith("-----")]
        for i, line in enumerate(body):
            if len(line) >= 16:
                found[f"{LAB_KEY} line {i + 2}"] = line
    env = OSLAB / "secrets.env"
    if env.exists():
        for line in env.read_text().splitlines():
            key, sep, value = line.partition("=")
            value = value.strip().strip("'\"")
            if sep and len(value) >= 6:
                found[f"{env} {key.strip()}"] = value
    clouds = OSLAB / "clouds.yaml"
    if clouds.exists():

        def walk(node: object, where: str) -> None:
            if isinstance(node, dict):
                for k, v in node.items():
                    if isinstance(v, str) and re.search(r"pass|secret|token|key", str(k), re.I) and len(v) >= 6:
                        found[f"{clouds} {where}.{k}"] = v
                    walk(v, f"{where}.{k}")

        walk(yaml.safe_load(clouds.read_text()), "")
    return found


def test_no_credential_appears_in_any_report_log_or_state_file(reported: Path, work: Path) -> None:
    known = secrets()
    require_service("the lab's credentials", bool(known), "scripts/lab up")
    # the full lab inventory too, OpenStack city included, observed with the OpenStack lab's clouds.yaml if it exists
    full = work / "full"
    shutil.copytree(ROOT / "inventories" / "lab", full, ignore=shutil.ignore_patterns(".dcctl"))
    env = {"OS_CLIENT_CONFIG_FILE": str(OSLAB / "clouds.yaml")} if (OSLAB / "clouds.yaml").exists() else {}
    out = work / "full-out"
    run(work, "report", str(full), "--format", "html", "--format", "json", "--format", "md", "--out", str(out), env=env)
    run(work, "audit", "export", "--inventory", str(work / "inv"), "--out", str(work / "audit.jsonl"))
    texts: dict[str, str] = {f"log {i}": log for i, log in enumerate(LOGS)}
    texts[f"the state {state_of(work)}"] = dump(state_of(work))  # every row, whatever the backend
    for path in [*reported.iterdir(), *out.iterdir(), work / "audit.jsonl", *work.glob("state.db*")]:
        if path.suffix == ".png":
            continue
        texts[str(path)] = path.read_bytes().decode("utf-8", "replace")
        if path.suffix == ".pdf":
            texts[f"{path} (text)"] = pdf_text(path)
    leaks = [
        f"{where} holds the credential from {source}"
        for where, text in texts.items()
        for source, secret in known.items()
        if secret in text
    ]
    assert leaks == []


def test_province_without_live_backends_renders_marking_what_was_not_observed(tmp_path: Path, state_url: str) -> None:
    out = tmp_path / "out"
    result = dcctl(
        "report", str(ROOT / "inventories" / "liaoning"), "--state", state_url,
        "--format", "html", "--format", "json", "--format", "pdf", "--out", str(out), check=True,
    )  # fmt: skip
    assert "0 of 58 backends observed" in result.stdout
    doc = json.loads((out / "report.json").read_text(encoding="utf-8"))
    jsonschema.validate(doc, SCHEMA)
    backends = [b for dc in doc["estate"]["data_centers"] for b in dc["backends"]]
    assert {b["observation"]["status"] for b in backends} <= {"unreachable", "unsupported"}
    assert all(b["observation"]["reason"] and b["used"] is None for b in backends)
    assert doc["drift"]["status"] == "not_observed"
    html = (out / "report.zh.html").read_text(encoding="utf-8")
    assert html.count("未观测") > 58
    assert "未观测" in pdf_text(out / "report.zh.pdf")
    assert (out / "report.zh.pdf").stat().st_size > 50_000
