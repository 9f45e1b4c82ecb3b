"""Host preparation without running Ansible: libvirt URIs → SSH targets → an Ansible inventory; runner events."""

from __future__ import annotations

from pathlib import Path

import pytest

from dcctl import api
from dcctl.cli import exitcodes
from dcctl.cli.app import main
from dcctl.errors import DcctlError
from dcctl.hosts import (
    GROUP,
    PrepareResult,
    SshTarget,
    _event,
    _summaries,
    ansible_inventory,
    libvirt_hosts,
    select,
    ssh_target,
)
from tests.conftest import ROOT
from tests.unit.ansible.sandbox import write_inventory

LAB = ROOT / "inventories" / "lab"
KEY = "/var/lib/dcctl-lab/ssh/id_ed25519"
KNOWN = "/var/lib/dcctl-lab/ssh/known_hosts"


def test_libssh_uri_gives_address_user_key_and_known_hosts() -> None:
    uri = (
        f"qemu+libssh://root@198.18.50.11/system?sshauth=privkey&keyfile={KEY}"
        f"&known_hosts={KNOWN}&known_hosts_verify=normal"
    )
    assert ssh_target(uri) == SshTarget("198.18.50.11", None, "root", KEY, KNOWN)


def test_openssh_uri_with_port_and_ipv6() -> None:
    assert ssh_target("qemu+ssh://ops@[2001:db8::5]:2222/system?keyfile=/k") == SshTarget(
        "2001:db8::5", 2222, "ops", "/k", None
    )


@pytest.mark.parametrize(
    "uri", ["qemu:///system", "test:///default", "qemu+tcp://10.0.0.1/system", "qemu+tls://h/system", "qemu+ssh:///x"]
)
def test_uris_not_over_ssh_have_no_target(uri: str) -> None:
    assert ssh_target(uri) is None


def test_lab_inventory_has_four_hosts_with_their_paths() -> None:
    hosts, skipped = libvirt_hosts(api.validate(LAB).inventory)
    assert [h.name for h in hosts] == ["dr-kvm", "faku-kvm", "prov-kvm", "sy-kvm"]
    assert all(why == "openstack backend: not a host dcctl prepares" for why in skipped.values())
    sy = next(h for h in hosts if h.name == "sy-kvm")
    assert sy.target.address == "198.18.50.12"
    assert sy.data_centers == ("shenyang-dc",)
    assert sy.storage_paths == ("/srv/dcctl/images",)
    assert sy.console_paths == ("/srv/dcctl/console",)


def test_backends_on_one_machine_are_one_host_and_local_ones_are_skipped(tmp_path: Path) -> None:
    uri = f"qemu+libssh://root@198.18.51.10/system?keyfile={KEY}&known_hosts=/kh"
    inv = write_inventory(tmp_path, uri)
    text = (inv / "province.yaml").read_text()
    (inv / "province.yaml").write_text(text.replace("test:///default", uri.replace("/system", ":22/system"), 1))
    hosts, skipped = libvirt_hosts(api.validate(inv).inventory)
    # same address, but the DR backend names the port explicitly: a different SSH endpoint as far as we know
    assert len(hosts) == 2
    inv2 = write_inventory(tmp_path / "b", uri, dr_uri=uri)
    hosts, skipped = libvirt_hosts(api.validate(inv2).inventory)
    assert [(h.name, h.backends, h.data_centers) for h in hosts] == [
        ("dr-kvm", ("dr-kvm", "sy-kvm"), ("prov-dr", "shenyang-dc"))
    ]
    inv3 = write_inventory(tmp_path / "c", uri)
    hosts, skipped = libvirt_hosts(api.validate(inv3).inventory)
    assert [h.name for h in hosts] == ["sy-kvm"]
    assert skipped == {"dr-kvm": "libvirt URI test:///default is not reached over SSH"}


def test_ansible_inventory_verifies_host_keys_with_the_uris_known_hosts() -> None:
    hosts, _ = libvirt_hosts(api.validate(LAB).inventory)
    doc = ansible_inventory(hosts)
    prov = doc["all"]["children"][GROUP]["hosts"]["prov-kvm"]
    assert prov["ansible_host"] == "198.18.50.11"
    assert prov["ansible_user"] == "root"
    assert prov["ansible_ssh_private_key_file"] == KEY
    assert "-o StrictHostKeyChecking=yes" in prov["ansible_ssh_common_args"]
    assert f"-o UserKnownHostsFile={KNOWN}" in prov["ansible_ssh_common_args"]
    assert prov["dcctl_storage_paths"] == ["/srv/dcctl/images"]
    assert prov["dcctl_backends"] == ["prov-kvm"]


def test_limit_by_backend_data_center_or_address() -> None:
    hosts, _ = libvirt_hosts(api.validate(LAB).inventory)
    assert [h.name for h in select(hosts, ["sy-kvm"])] == ["sy-kvm"]
    assert [h.name for h in select(hosts, ["prov-dr", "198.18.50.13"])] == ["dr-kvm", "faku-kvm"]
    assert select(hosts, []) == hosts


def test_unknown_limit_is_an_error_with_a_suggestion() -> None:
    hosts, _ = libvirt_hosts(api.validate(LAB).inventory)
    with pytest.raises(DcctlError) as caught:
        select(hosts, ["sy-kmv"])
    assert "sy-kmv" in caught.value.message
    assert "did you mean 'sy-kvm'?" in caught.value.hint


def _raw(event: str, res: dict[str, object] | None = None, **data: object) -> dict[str, object]:
    return {"event": event, "event_data": {"host": "sy-kvm", "task": "Install libvirt", "res": res or {}, **data}}


def test_runner_events_become_one_line_per_task_and_host() -> None:
    ok = _event(_raw("runner_on_ok", {"changed": False}, duration=1.5), False)
    assert ok is not None and (ok.host, ok.task, ok.outcome, ok.seconds) == ("sy-kvm", "Install libvirt", "ok", 1.5)
    changed = _event(_raw("runner_on_ok", {"changed": True}), True)
    assert changed is not None and changed.outcome == "changed" and changed.check
    failed = _event(_raw("runner_on_failed", {"msg": "No package matching 'qemu-kvmx'"}), False)
    assert failed is not None and (failed.outcome, failed.message) == ("failed", "No package matching 'qemu-kvmx'")
    ignored = _event(_raw("runner_on_failed", {"msg": "x"}, ignore_errors=True), False)
    assert ignored is not None and ignored.outcome == "ignored"
    dark = _event(_raw("runner_on_unreachable", {"msg": "Host key verification failed."}), False)
    assert dark is not None and dark.outcome == "unreachable" and "Host key" in dark.message
    assert _event({"event": "playbook_on_task_start", "event_data": {"task": "x"}}, False) is None
    assert _event({"event": "runner_on_ok", "event_data": {}}, False) is None


def test_summaries_and_result_verdict() -> None:
    hosts, _ = libvirt_hosts(api.validate(LAB).inventory)
    stats = {"ok": {"sy-kvm": 12}, "changed": {"sy-kvm": 3}, "dark": {"prov-kvm": 1}, "failures": {}}
    summaries = _summaries(stats, [h for h in hosts if h.name in ("sy-kvm", "prov-kvm")])
    by = {s.host: s for s in summaries}
    assert (by["sy-kvm"].ok, by["sy-kvm"].changed, by["sy-kvm"].succeeded) == (12, 3, True)
    assert (by["prov-kvm"].unreachable, by["prov-kvm"].succeeded) == (1, False)
    result = PrepareResult("inv", False, "failed", 4, 1.0, summaries)
    assert not result.ok and result.changed
    doc = result.to_dict()
    assert doc["hosts"][0]["backends"] == ["prov-kvm"] and doc["hosts"][0]["address"] == "198.18.50.11"


def test_cli_without_ssh_hosts_says_so(tmp_path: Path, state_url: str, capsys: pytest.CaptureFixture[str]) -> None:
    inv = write_inventory(tmp_path)
    assert main(["hosts", "prepare", str(inv), "--state", state_url]) == exitcodes.ERROR
    assert "no libvirt host reached over SSH" in capsys.readouterr().err


def test_cli_unknown_limit_in_json(capsys: pytest.CaptureFixture[str], state_url: str) -> None:
    code = main(["hosts", "prepare", str(LAB), "--limit", "nowhere", "--json", "--state", state_url])
    assert code == exitcodes.ERROR
    out = capsys.readouterr().out
    assert '"error": "--limit nowhere: no libvirt host of the inventory is called that"' in out


def test_cli_invalid_inventory_shows_its_diagnostics(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "p.yaml"
    bad.write_text("province:\n  id: x\n  nmae: y\n")
    assert main(["hosts", "prepare", str(bad)]) == exitcodes.ERROR
    assert "error[" in capsys.readouterr().err


def test_cli_bad_extra_vars_is_a_usage_error(state_url: str) -> None:
    code = main(["hosts", "prepare", str(LAB), "-e", "not-a-var", "--state", state_url])
    assert code == exitcodes.USAGE
