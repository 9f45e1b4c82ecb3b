"""Host preparation: the inventory's libvirt hosts as an Ansible inventory, and prepare-hosts.yml run on them.

The hosts come from the libvirt URIs (``qemu+ssh://`` and ``qemu+libssh://``: address, port, user, the SSH key in
``keyfile`` and the ``known_hosts`` file). Host keys are always verified (``StrictHostKeyChecking=yes``), whatever
the URI says about its own verification. The playbook runs through ansible-runner: every task result on every host
is reported as a ``HostEvent`` while it runs, ``prepare`` returns a ``PrepareResult`` with per-host counts, and each
host's outcome goes to the audit log. Nothing here prints; ``ANSIBLE_HOME`` and Ansible's local temporary files live
beside the run's artifacts, never in ``~/.ansible``.
"""

from __future__ import annotations

import os
import sys
import tempfile
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from difflib import get_close_matches
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

from dcctl.errors import DcctlError, InventoryError
from dcctl.inventory import Inventory
from dcctl.inventory.model import LibvirtBackend

PLAYBOOK = "prepare-hosts.yml"
GROUP = "libvirt_hosts"
#: libvirt transports that tunnel over SSH, so Ansible can reach the same host the same way
SSH_TRANSPORTS = frozenset({"ssh", "libssh", "libssh2"})
#: ansible-runner event → what happened to a task on a host
OUTCOMES = {
    "runner_on_ok": "ok",
    "runner_on_failed": "failed",
    "runner_on_skipped": "skipped",
    "runner_on_unreachable": "unreachable",
}


@dataclass(frozen=True)
class SshTarget:
    """Where a libvirt URI's SSH tunnel goes, and with which key and known_hosts."""

    address: str
    port: int | None = None
    user: str | None = None
    key_file: str | None = None
    known_hosts: str | None = None


@dataclass(frozen=True)
class PreparedHost:
    """One machine to prepare: every libvirt backend the inventory has on it (same address and port)."""

    name: str  # the Ansible inventory name: the first of its backends' ids
    target: SshTarget
    backends: tuple[str, ...]
    data_centers: tuple[str, ...]
    storage_paths: tuple[str, ...]
    console_paths: tuple[str, ...]

    def host_vars(self) -> dict[str, Any]:
        t = self.target
        args = ["-o StrictHostKeyChecking=yes"]
        if t.known_hosts:
            args.append(f"-o UserKnownHostsFile={t.known_hosts}")
        if t.key_file:
            args.append("-o IdentitiesOnly=yes")
        hv: dict[str, Any] = {"ansible_host": t.address, "ansible_ssh_common_args": " ".join(args)}
        if t.port:
            hv["ansible_port"] = t.port
        if t.user:
            hv["ansible_user"] = t.user
        if t.key_file:
            hv["ansible_ssh_private_key_file"] = t.key_file
        hv.update(
            dcctl_backends=list(self.backends),
            dcctl_data_centers=list(self.data_centers),
            dcctl_storage_paths=list(self.storage_paths),
            dcctl_console_paths=list(self.console_paths),
        )
        return hv

    def matches(self, token: str) -> bool:
        return token in (self.name, self.target.address) or token in self.backends or token in self.data_centers


@dataclass(frozen=True)
class HostEvent:
    """A task's result on one host, as it happens."""

    host: str
    task: str
    outcome: str  # ok, changed, failed, skipped, unreachable
    message: str = ""
    seconds: float | None = None
    check: bool = False


@dataclass(frozen=True)
class HostSummary:
    host: str
    address: str = ""
    backends: tuple[str, ...] = ()
    ok: int = 0
    changed: int = 0
    failed: int = 0
    unreachable: int = 0
    skipped: int = 0

    @property
    def succeeded(self) -> bool:
        return not self.failed and not self.unreachable

    def to_dict(self) -> dict[str, Any]:
        return {**self.__dict__, "backends": list(self.backends), "succeeded": self.succeeded}


@dataclass
class PrepareResult:
    inventory: str
    check: bool
    status: str  # ansible-runner's: successful, failed, timeout, canceled
    rc: int
    seconds: float
    hosts: list[HostSummary] = field(default_factory=list)
    skipped_backends: dict[str, str] = field(default_factory=dict)  # backend id → why it is not prepared
    failures: list[HostEvent] = field(default_factory=list)
    artifact_dir: str = ""
    output_tail: str = ""  # the end of ansible-playbook's output, when it failed without a host to blame

    @property
    def ok(self) -> bool:
        return self.status == "successful" and self.rc == 0 and all(h.succeeded for h in self.hosts)

    @property
    def changed(self) -> bool:
        return any(h.changed for h in self.hosts)

    def to_dict(self) -> dict[str, Any]:
        return {
            "inventory": self.inventory,
            "ok": self.ok,
            "check": self.check,
            "changed": self.changed,
            "status": self.status,
            "rc": self.rc,
            "seconds": round(self.seconds, 2),
            "hosts": [h.to_dict() for h in self.hosts],
            "failures": [f.__dict__ for f in self.failures],
            "skipped_backends": self.skipped_backends,
            "artifact_dir": self.artifact_dir,
            "output_tail": self.output_tail,
        }


HostEventHandler = Callable[[HostEvent], None]


def ssh_target(uri: str) -> SshTarget | None:
    """The SSH end of a libvirt URI, or None for a URI that is not tunnelled over SSH (local, tcp, tls, test)."""
    parts = urlsplit(uri)
    _, _, transport = parts.scheme.partition("+")
    if transport not in SSH_TRANSPORTS or not parts.hostname:
        return None
    query = {k: v[-1] for k, v in parse_qs(parts.query).items()}
    return SshTarget(
        address=parts.hostname,
        port=parts.port,
        user=parts.username,
        key_file=query.get("keyfile"),
        known_hosts=query.get("known_hosts"),
    )


def libvirt_hosts(inventory: Inventory) -> tuple[list[PreparedHost], dict[str, str]]:
    """Every machine behind the inventory's libvirt backends, and the backends left out (with why)."""
    found: dict[tuple[str, int | None], list[tuple[str, LibvirtBackend, SshTarget]]] = {}
    skipped: dict[str, str] = {}
    for backend_id, (dc, backend) in sorted(inventory.backends.items()):
        if not isinstance(backend, LibvirtBackend):
            skipped[backend_id] = f"{backend.type} backend: not a host dcctl prepares"
            continue
        target = ssh_target(backend.uri)
        if target is None:
            skipped[backend_id] = f"libvirt URI {backend.uri.split('?')[0]} is not reached over SSH"
            continue
        found.setdefault((target.address, target.port), []).append((dc.id, backend, target))
    hosts = []
    for entries in found.values():
        first = entries[0][2]
        hosts.append(
            PreparedHost(
                name=entries[0][1].id,
                target=first,
                backends=tuple(b.id for _, b, _ in entries),
                data_centers=tuple(dict.fromkeys(dc for dc, _, _ in entries)),
                storage_paths=tuple(dict.fromkeys(b.storage_path for _, b, _ in entries)),
                console_paths=tuple(dict.fromkeys(b.console_path for _, b, _ in entries if b.console_path)),
            )
        )
    return sorted(hosts, key=lambda h: h.name), skipped


def select(hosts: list[PreparedHost], limit: Iterable[str]) -> list[PreparedHost]:
    """The hosts named by ``limit`` (backend ids, data center ids or addresses); all of them when it is empty."""
    tokens = [t for t in limit if t]
    if not tokens:
        return hosts
    chosen = [h for h in hosts if any(h.matches(t) for t in tokens)]
    for token in tokens:
        if not any(h.matches(token) for h in hosts):
            names = sorted({n for h in hosts for n in (*h.backends, *h.data_centers, h.target.address)})
            close = get_close_matches(token, names, n=1)
            hint = f"did you mean '{close[0]}'?" if close else "one of: " + ", ".join(names)
            raise DcctlError(f"--limit {token}: no libvirt host of the inventory is called that", hint=hint)
    return chosen


def ansible_inventory(hosts: Iterable[PreparedHost]) -> dict[str, Any]:
    """The Ansible inventory (YAML/JSON structure) for prepare-hosts.yml: group ``libvirt_hosts``."""
    return {"all": {"children": {GROUP: {"hosts": {h.name: h.host_vars() for h in hosts}}}}}


def ansible_dir() -> Path:
    """The directory holding ansible.cfg, playbooks/ and collections/: ``$DCCTL_ANSIBLE_DIR``, else dcctl's checkout."""
    configured = os.environ.get("DCCTL_ANSIBLE_DIR")
    base = Path(configured) if configured else Path(__file__).resolve().parent.parent
    if not (base / "playbooks" / PLAYBOOK).is_file():
        raise DcctlError(
            f"playbooks/{PLAYBOOK} not found in {base}",
            hint="run dcctl from a checkout of its repository, or point DCCTL_ANSIBLE_DIR at one",
        )
    return base


def _event(raw: Mapping[str, Any], check: bool) -> HostEvent | None:
    outcome = OUTCOMES.get(str(raw.get("event", "")))
    data = raw.get("event_data") or {}
    if outcome is None or not data.get("host"):
        return None
    res = data.get("res") or {}
    if outcome == "ok" and res.get("changed"):
        outcome = "changed"
    message = ""
    if outcome in ("failed", "unreachable"):
        message = str(res.get("msg") or res.get("stderr") or "").strip()
        if data.get("ignore_errors"):
            outcome = "ignored"
    elif outcome == "skipped" and res.get("skip_reason"):
        message = str(res["skip_reason"])
    duration = data.get("duration")
    return HostEvent(
        host=str(data["host"]),
        task=str(data.get("task") or data.get("task_action") or "?"),
        outcome=outcome,
        message=message,
        seconds=float(duration) if isinstance(duration, int | float) else None,
        check=check,
    )


def _summaries(stats: Mapping[str, Any] | None, hosts: Iterable[PreparedHost]) -> list[HostSummary]:
    stats = stats or {}

    def count(key: str, host: str) -> int:
        return int((stats.get(key) or {}).get(host, 0))

    return [
        HostSummary(
            host=h.name,
            address=h.target.address,
            backends=h.backends,
            ok=count("ok", h.name),
            changed=count("changed", h.name),
            failed=count("failures", h.name),
            unreachable=count("dark", h.name),
            skipped=count("skipped", h.name),
        )
        for h in hosts
    ]


def runner_dir(inventory_path: str | Path, state: str | Path | None) -> Path:
    """Where runs keep their artifacts: beside the state database (``<inventory>/.dcctl/ansible`` by default)."""
    from dcctl.state import local_dir

    return local_dir(inventory_path, state) / "ansible"


def prepare(
    path: str | Path,
    *,
    limit: Iterable[str] = (),
    check: bool = False,
    extra_vars: Mapping[str, Any] | None = None,
    state: str | Path | None = None,
    events: HostEventHandler | None = None,
    timeout: float = 3600.0,
) -> PrepareResult:
    """Run prepare-hosts.yml on the inventory's libvirt hosts (``limit``: some of them); ``check``: change nothing.

    Raises InventoryError for an invalid inventory, DcctlError when there is no host to prepare or Ansible is missing.
    """
    from dcctl import api

    validation = api.validate(path)
    if not validation.valid:
        raise InventoryError(
            f"the inventory has {len(validation.diagnostics.errors)} errors",
            hint=f"run 'dcctl validate {path}' and fix them first",
        )
    hosts, skipped = libvirt_hosts(validation.inventory)
    chosen = select(hosts, limit)
    if not chosen:
        raise DcctlError(
            "the inventory has no libvirt host reached over SSH",
            hint="prepare-hosts.yml needs backends with qemu+ssh:// or qemu+libssh:// URIs",
        )
    try:
        import ansible_runner
    except ImportError:
        raise DcctlError(
            "ansible-runner is not installed", hint="install dcctl with its Ansible extra: pip install 'dcctl[ansible]'"
        ) from None

    base = ansible_dir()
    work = runner_dir(path, state)
    work.mkdir(parents=True, exist_ok=True)
    home = work / "home"  # ANSIBLE_HOME: SSH control sockets, collections cache; never ~/.ansible
    home.mkdir(exist_ok=True)
    # ansible-runner runs `ansible-playbook` from PATH: the one beside this Python (the venv's) comes first
    venv_bin = str(Path(sys.executable).parent)
    search = os.environ.get("PATH", os.defpath)
    if search.split(os.pathsep)[0] != venv_bin:
        search = venv_bin + os.pathsep + search
    handler = events or (lambda _: None)
    failures: list[HostEvent] = []

    def on_event(raw: dict[str, Any]) -> bool:
        event = _event(raw, check)
        if event is not None:
            if event.outcome in ("failed", "unreachable"):
                failures.append(event)
            handler(event)
        return True

    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="dcctl-ansible-", dir=work) as tmp:
        runner = ansible_runner.run(
            private_data_dir=str(work),
            ident=datetime.now(UTC).strftime("%Y%m%dT%H%M%S.%fZ"),
            project_dir=str(base),
            playbook=str(base / "playbooks" / PLAYBOOK),
            inventory=ansible_inventory(chosen),
            extravars=dict(extra_vars or {}),
            cmdline="--check --diff" if check else "--diff",
            envvars={
                "ANSIBLE_CONFIG": str(base / "ansible.cfg"),
                "ANSIBLE_COLLECTIONS_PATH": str(base / "collections"),
                "ANSIBLE_HOME": str(home),
                "ANSIBLE_SSH_CONTROL_PATH_DIR": str(home / "cp"),  # its default is ~/.ansible/cp, not under HOME
                "ANSIBLE_LOCAL_TEMP": tmp,
                "ANSIBLE_NOCOLOR": "1",
                # ansible-runner turns host key checking off unless told otherwise: keep it on
                "ANSIBLE_HOST_KEY_CHECKING": "True",
                "PATH": search,
            },
            event_handler=on_event,
            quiet=True,
            suppress_env_files=True,
            rotate_artifacts=20,
            timeout=int(timeout),
        )
    seconds = time.monotonic() - started
    result = PrepareResult(
        inventory=str(path),
        check=check,
        status=str(runner.status),
        rc=int(runner.rc if runner.rc is not None else 1),
        seconds=seconds,
        hosts=_summaries(runner.stats, chosen),
        skipped_backends=skipped,
        failures=failures,
        artifact_dir=str(getattr(runner.config, "artifact_dir", "")),
    )
    if not result.ok and not failures:
        result.output_tail = _tail(Path(result.artifact_dir) / "stdout")
    record(result, path, state)
    return result


def _tail(path: Path, lines: int = 15) -> str:
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return ""
    return "\n".join(text.rstrip().splitlines()[-lines:])


def record(result: PrepareResult, path: str | Path, state: str | Path | None) -> None:
    """One audit entry per host (action ``hosts.prepare``), check-mode runs included (marked as such)."""
    from dcctl.state import audit, open_store

    store = open_store(path, state)
    try:
        for summary in result.hosts:
            audit.record(
                store,
                audit.AuditEvent(
                    "hosts.prepare",
                    summary.host,
                    "succeeded" if summary.succeeded and result.status == "successful" else "failed",
                    detail={
                        "check": result.check,
                        "status": result.status,
                        **{k: v for k, v in summary.to_dict().items() if k not in ("host", "succeeded")},
                        "failures": [f"{f.task}: {f.message}"[:500] for f in result.failures if f.host == summary.host][
                            :10
                        ],
                        "artifact_dir": result.artifact_dir,
                    },
                ),
            )
    finally:
        store.close()
