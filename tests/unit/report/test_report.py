"""Evidence reports: facts from state and observation (never invented), one document, four formats, two languages."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

from dcctl import api
from dcctl.cli import exitcodes
from dcctl.cli.app import main
from dcctl.dr import catalog
from dcctl.engine.session import Session
from dcctl.errors import DcctlError
from dcctl.report import facts, render
from dcctl.state.store import Store
from tests.conftest import ROOT
from tests.states import fresh_state
from tests.unit.engine.test_engine_testdriver import write_inventory

SCHEMA = json.loads((ROOT / "docs" / "report-schema.json").read_text(encoding="utf-8"))
TEMPLATES = ROOT / "templates" / "reports"
NOW = datetime(2026, 11, 26, 12, 0, tzinfo=UTC)


def valid(doc: dict[str, Any]) -> None:
    jsonschema.validate(doc, SCHEMA, format_checker=jsonschema.FormatChecker())


def seed_dr(store: Store, workload: str, *, taken: datetime, rto: float | None, servers: int = 2) -> None:
    """DR catalog rows as the lead's `dcctl dr replicate` / `drill` write them (through dcctl/dr/catalog.py)."""
    for n in range(1, servers + 1):
        pid = catalog.add_disk_point(
            store,
            point_set="ps-1",
            workload=workload,
            server=f"dcctl-{workload}-web-{n}",
            disk="root",
            kind="full",
            checkpoint="dcctl-ps-1",
            source_backend="sy-kvm1",
            target_backend="dr-kvm",
            target_path=f"/srv/dr/{workload}/web-{n}-root.qcow2",
            taken_at=taken.isoformat(),
            status="pending",
            size_bytes=1 << 30,
            changed_bytes=1 << 30,
            shipped_bytes=200 << 20,
        )
        catalog.mark_point(store, pid, "good", verified_at=taken.isoformat())
    if rto is not None:
        catalog.record_drill(store, workload, "drill", "ps-1", taken.isoformat(), rto, True, {})


# ------------------------------------------------------------------------------------------------ the catalogs
def test_both_languages_have_exactly_the_same_messages() -> None:
    zh, en = render.messages("zh"), render.messages("en")
    assert set(zh) == set(en)
    for key in zh:  # and the same placeholders
        assert set(re.findall(r"\{(\w+)\}", zh[key])) == set(re.findall(r"\{(\w+)\}", en[key])), key


def test_every_literal_message_key_in_the_templates_exists() -> None:
    zh = render.messages("zh")
    used = set()
    for template in TEMPLATES.glob("*.j2"):
        used |= set(re.findall(r"\bt\('([a-z0-9_.\-]+)'\s*[,)]", template.read_text(encoding="utf-8")))
    literal = used
    assert literal, "no keys found: the scan is broken"
    assert literal <= set(zh), literal - set(zh)
    for prefix in ("status.", "tier.", "zone.", "control.", "mode.", "kind.", "drill."):
        assert any(k.startswith(prefix) for k in zh), prefix


def test_every_status_a_document_can_hold_has_words() -> None:
    zh = render.messages("zh")
    defs = SCHEMA["$defs"]
    statuses = set(defs["status"]["enum"]) | set(defs["observation"]["properties"]["status"]["enum"])
    statuses |= {"holds", "violated", "partial", "ok", "broken", "succeeded", "failed", "error", "warning"}
    assert {f"status.{s}" for s in statuses} <= set(zh)
    for control in defs["workload"]["properties"]["controls"]["items"]["properties"]["id"]["enum"]:
        assert f"control.{control}" in zh


def test_a_missing_message_is_an_error_not_a_blank() -> None:
    with pytest.raises(DcctlError, match="missing"):
        render.Translator("en")("no.such.key")
    with pytest.raises(DcctlError, match="language"):
        render.Translator("fr")


def test_durations_read_naturally_in_both_languages() -> None:
    assert render.duration(900, "en") == "15 min"
    assert render.duration(900, "zh") == "15分钟"
    assert render.duration(3725, "en") == "1 h 2 min"
    assert render.duration(47.3, "zh") == "47秒"
    assert render.duration(0, "en") == "0 s"
    assert render.duration(None, "en") == ""


def test_chart_geometry_is_on_one_scale_and_marks_what_was_not_observed() -> None:
    chart = render.bar_chart([("a", 8, 2), ("b", 16, None)], unit="vCPU", width=300, label_width=60)
    a, b = chart.bars
    assert b.total == pytest.approx(2 * a.total)
    assert a.used == pytest.approx(a.total / 4)
    assert b.used is None and "vCPU" in b.caption


# ------------------------------------------------------------------------------------------ without observation
@pytest.fixture(scope="module")
def liaoning(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    with fresh_state(tmp_path_factory.mktemp("ln")) as state:
        yield facts.gather(ROOT / "inventories" / "liaoning", state=state, observe=False, now=NOW)


def test_liaoning_without_backends_marks_everything_live_as_not_observed(liaoning: dict[str, Any]) -> None:
    valid(liaoning)
    assert liaoning["observation"]["requested"] is False
    assert liaoning["observation"]["counts"]["not_requested"] == liaoning["observation"]["backends"] == 58
    backends = [b for dc in liaoning["estate"]["data_centers"] for b in dc["backends"]]
    assert all(b["used"] is None and b["observation"]["status"] == "not_requested" for b in backends)
    assert all(t["used"] is None for t in liaoning["tenancies"])
    assert all(w["running_on"] is None for w in liaoning["workloads"])
    assert liaoning["drift"]["status"] == "not_observed"
    protected = [w for w in liaoning["workloads"] if w["dr"]]
    assert protected and all(w["dr"]["rpo_measured_seconds"] is None for w in protected)
    assert {w["dr"]["rpo_status"] for w in protected} == {"not_measured"}
    assert {w["dr"]["gbt20988"]["level_achieved"] for w in protected} == {0}
    assert {w["dr"]["gbt20988"]["edition"] for w in protected} == {"GB/T 20988-2025"}
    assert len(liaoning["legacy_data_centers"]) == 4
    assert liaoning["policy"]["warnings"] == 4
    # the declared side is still there: capacity × overcommit
    assert all(b["allocatable"]["vcpus"] >= b["capacity"]["vcpus"] for b in backends)


@pytest.mark.parametrize("lang", ["zh", "en"])
def test_liaoning_renders_in_html_and_markdown(liaoning: dict[str, Any], lang: str) -> None:
    html = render.render_html(liaoning, lang)
    md = render.render_markdown(liaoning, lang)
    marker = "未观测" if lang == "zh" else "not observed"
    assert marker in html and marker in md
    titles = ("资源总览", "租户托管情况", "网络区域与隔离", "变更记录与审计日志")
    if lang == "zh":
        assert all(t in html and t in md for t in titles)
        assert "辽宁省人口基础信息资源库" in html
    else:
        assert "Estate overview" in html and "Change history and audit log" in md
        assert not any(t in html for t in titles)
    assert "<script" not in html  # no JavaScript in evidence
    assert html.count("<svg") >= 5


def test_html_escapes_what_the_inventory_says(tmp_path: Path, state_url: str) -> None:
    inv = write_inventory(tmp_path)
    doc = yaml.safe_load((inv / "province.yaml").read_text(encoding="utf-8"))
    doc["tenancies"][0]["workloads"][0]["name"] = "<script>alert(1)</script>门户"
    (inv / "province.yaml").write_text(yaml.safe_dump(doc, allow_unicode=True), encoding="utf-8")
    report = facts.gather(inv, state=state_url, observe=False)
    html = render.render_html(report, "zh")
    assert "<script>alert(1)</script>" not in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;门户" in html


# --------------------------------------------------------------------------------------------- with observation
@pytest.fixture
def applied(tmp_path: Path, state_url: str) -> Iterator[Session]:
    """The test driver's in-process hosts, applied, with DR catalog rows and audit entries in state."""
    inv = write_inventory(tmp_path)
    doc = yaml.safe_load((inv / "province.yaml").read_text(encoding="utf-8"))
    workload = doc["tenancies"][0]["workloads"][0]
    workload["mlps_level"] = 3
    workload["dr"] = {"rpo": "15m", "rto": "1h"}
    (inv / "province.yaml").write_text(yaml.safe_dump(doc, allow_unicode=True, sort_keys=False), encoding="utf-8")
    with Session(inv, state_path=state_url) as s:
        assert s.validation.valid, list(s.validation.diagnostics)
        assert s.apply(s.plan()).ok
        yield s


def test_measured_figures_come_from_state_and_observation(applied: Session) -> None:
    seed_dr(applied.store, "portal", taken=NOW - timedelta(minutes=4), rto=47.3)
    doc = facts.collect(applied.validation, applied.store, facts.observe_session(applied), now=NOW)
    valid(doc)
    w = next(w for w in doc["workloads"] if w["id"] == "portal")
    assert w["dr"]["rpo_measured_seconds"] == 240.0 and w["dr"]["rpo_status"] == "met"
    assert w["dr"]["rto_measured_seconds"] == 47.3 and w["dr"]["rto_status"] == "met"
    assert w["dr"]["gbt20988"] == {
        "edition": "GB/T 20988-2025",
        "levels_from": "GB/T 20988-2007",
        "level_achieved": 5,
        "level_name": "实时数据传输及完整设备支持",
        "level_name_en": "Real-time transmission and complete equipment",
    }
    assert w["running_on"] == ["sy-kvm1"] and w["used"]["servers"] == 2
    controls = {c["id"]: c for c in w["controls"]}
    assert controls["offsite-realtime-backup"]["status"] == "met"
    assert controls["offsite-realtime-backup"]["evidence"]["targets"] == ["dr-kvm"]
    assert controls["audit-trail"]["status"] == "met" and controls["audit-trail"]["evidence"]["entries"] == 6
    sy = next(b for dc in doc["estate"]["data_centers"] for b in dc["backends"] if b["id"] == "sy-kvm1")
    assert sy["used"] == {"vcpus": 2.0, "ram_gb": 0.5, "storage_gb": 6.0, "servers": 2, "running": 2}
    tenancy = doc["tenancies"][0]
    assert tenancy["used"] == {"vcpus": 2.0, "ram_gb": 0.5, "storage_gb": 6.0, "instances": 2}
    assert tenancy["data_locations"] == [{"backend": "sy-kvm1", "data_center": "shenyang-dc", "observed": True}]
    assert tenancy["backups"][0]["backends"] == ["dr-kvm"]
    assert doc["drift"] == {"status": "observed", "backends_observed": 2, "changes": []}
    assert doc["audit"]["verification"]["ok"] and doc["audit"]["entries_total"] == 8
    check = next(c for c in doc["networks"]["checks"] if c["id"] == "observed-servers-in-zone")
    assert (check["status"], check["checked"]) == ("holds", 2)
    html = render.render_html(doc, "zh")
    assert "4分钟" in html and "47秒" in html and "第5级" in html
    en = render.render_html(doc, "en")
    assert "4 min" in en and "level 5" in en


def test_a_stale_replica_and_a_slow_drill_are_not_met(applied: Session) -> None:
    seed_dr(applied.store, "portal", taken=NOW - timedelta(hours=3), rto=7200.0)
    doc = facts.collect(applied.validation, applied.store, facts.observe_session(applied), now=NOW)
    w = next(w for w in doc["workloads"] if w["id"] == "portal")
    assert (w["dr"]["rpo_status"], w["dr"]["rto_status"]) == ("not_met", "not_met")
    assert next(c for c in w["controls"] if c["id"] == "offsite-realtime-backup")["status"] == "not_met"
    assert w["dr"]["gbt20988"]["level_achieved"] == 4  # RPO ≤ 1 day and RTO ≤ 2 days; RPO > 30 min: not 5


def test_drift_and_an_unreachable_backend_are_reported_not_guessed(applied: Session) -> None:
    provider = applied.providers()["sy-kvm1"]
    with provider.conns.get() as conn:  # type: ignore[attr-defined]
        conn.lookupByName("dcctl-portal-web-2").destroy()
    observed = facts.observe_session(applied)
    observed.status["dr-kvm"] = ("unreachable", "cannot connect: no route to host")
    observed.resources.pop("dr-kvm")
    doc = facts.collect(applied.validation, applied.store, observed, now=NOW)
    valid(doc)
    assert [c["key"] for c in doc["drift"]["changes"]] == ["server:portal/web/2"]
    assert doc["drift"]["status"] == "partial"
    dr = next(b for dc in doc["estate"]["data_centers"] for b in dc["backends"] if b["id"] == "dr-kvm")
    assert dr["used"] is None and dr["observation"] == {
        "status": "unreachable",
        "reason": "cannot connect: no route to host",
    }
    html = render.render_html(doc, "en")
    assert "cannot connect: no route to host" in html


def test_a_broken_audit_chain_shows_in_the_report(applied: Session) -> None:
    applied.store.db.execute("UPDATE audit SET outcome = 'failed' WHERE id = 2")
    doc = facts.collect(applied.validation, applied.store, facts.Observed(False), now=NOW)
    valid(doc)
    assert doc["audit"]["verification"]["first_bad_id"] == 2
    assert {c["status"] for w in doc["workloads"] for c in w["controls"] if c["id"] == "audit-trail"} == {"not_met"}
    assert "第 2 条记录" in render.render_html(doc, "zh")


# ------------------------------------------------------------------------------------------------------ the CLI
def test_report_command_writes_every_format(tmp_path: Path, state_url: str, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "out"
    args = ["report", str(ROOT / "inventories" / "lab"), "--no-observe", "--state", state_url]
    code = main([*args, "--format", "html", "--format", "md", "--format", "json", "--lang", "en", "--out", str(out)])
    assert code == exitcodes.OK
    assert sorted(p.name for p in out.iterdir()) == ["report.en.html", "report.en.md", "report.json"]
    doc = json.loads((out / "report.json").read_text(encoding="utf-8"))
    valid(doc)
    assert doc["province"]["id"] == "liaoning-lab"
    assert "wrote" in capsys.readouterr().out
    assert main([*args, "--format", "docx", "--out", str(out)]) == exitcodes.ERROR
    assert main([*args, "--json", "--out", str(out)]) == exitcodes.OK
    assert json.loads(capsys.readouterr().out)["files"] == [str(out / "report.zh.html")]


def test_endpoint_never_shows_a_uri_query_or_user() -> None:
    inv = api.validate(ROOT / "inventories" / "lab").inventory
    shown = {facts.endpoint(b) for _, b in inv.backends.values()}
    assert {f"qemu+libssh://198.18.50.{n}" for n in (11, 12, 13, 14)} <= shown
    assert not any("?" in e or "@" in e or "keyfile" in e for e in shown)
