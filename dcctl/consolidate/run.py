"""Run a legacy data center's consolidation: each workload moved, verified, switched in the inventory — or rolled back.

Per workload, in the plan's order, holding the state locks of its source and target backends:

1. **prepare** — the engine makes what its servers need at the target (the pool, the tenancy's networks, the volumes),
   planned from the inventory as it will read after the switch;
2. **move** — *live*: libvirt migrates each running guest with its storage into those volumes; *warm*: the DR copier
   ships changed-block rounds while the guests run, then freezes them for the last delta; *cold*: the guests are
   frozen and their disks copied whole (``dcctl.consolidate.diskcopy``);
3. **verify** — *live*: each server runs at the target (its CPU time advancing), is gone from the source, and the
   target's provider owns it; *warm/cold*: every disk's content digest is equal at both ends while the source guests
   are still only paused (a failure here rolls back by resuming them: no reboot, nothing lost), then the sources are
   powered off and the target servers made (by the engine, exactly as ``dcctl apply`` would) and started, and their
   boot markers read;
4. **commit** — the engine deletes the source's servers and volumes (and the tenancy's networks and the pool there once
   nothing else uses them); the tenancy's ``hosted_in`` is switched in its YAML file in place when its last workload
   has moved; the move is recorded in the audit trail (``consolidate.move``, which ``progress`` reads);

   or **roll back** — the target copy removed (servers, volumes, and the networks and pool the move made), the source
   servers as before (resumed; started again if they had been powered off; a live guest migrated back), the
   inventory untouched, the failure audited.

A scratch journal per move (``<state dir>/consolidate/<workload>.db``: its phase and its copy catalog) lets the next
run finish a move stopped after verification, or undo one stopped before.
"""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from dcctl import __version__
from dcctl.consolidate import diskcopy as copying
from dcctl.consolidate.facts import backends_involved, gather, open_providers
from dcctl.consolidate.plan import (
    ConsolidationPlan,
    Method,
    ServerMove,
    State,
    WorkloadMove,
    migration_address,
    plan_consolidation,
    switch_tenancies,
)
from dcctl.consolidate.progress import ACTION, measured_assumptions
from dcctl.dr.recovery import MARKER
from dcctl.dr.replicate import Progress, _quiet
from dcctl.dr.ssh import Ssh, SshTarget, q
from dcctl.engine.apply import apply_plan
from dcctl.errors import DcctlError
from dcctl.inventory import Inventory
from dcctl.inventory.edit import EditError, FileEdit, ScalarEdit, apply_edits
from dcctl.inventory.model import DataCenter, LibvirtBackend
from dcctl.placement import servers
from dcctl.plan.build import Observation, build_plan, observe_all, resolve_targets
from dcctl.plan.model import Action, Change, Mode, Plan, Reason
from dcctl.providers.base import Provider
from dcctl.resources import ObservedResource, digest
from dcctl.state import audit, local_dir
from dcctl.state.store import Holder, Store

#: fault injection for tests (in ``DCCTL_FAILPOINTS``, like dcctl.failpoints): corrupt the copy before it is verified
CORRUPT_COPY = "consolidate.corrupt-copy"


@dataclass
class MoveResult:
    workload: str
    tenancy: str
    method: str
    ok: bool = False
    rolled_back: bool = False
    downtime_seconds: float | None = None  # measured: freeze → boot marker (warm/cold), libvirt's pause (live)
    expected_downtime_seconds: float = 0.0
    seconds: float = 0.0
    copied_bytes: int = 0
    copy_seconds: float = 0.0
    boot_seconds: float | None = None
    rounds: list[dict[str, Any]] = field(default_factory=list)
    servers: dict[str, dict[str, Any]] = field(default_factory=dict)  # per server: marker, digests, live stats
    source_backends: list[str] = field(default_factory=list)
    target_backends: list[str] = field(default_factory=list)
    switched: str | None = None  # "file:line:col hosted_in: old → new" when the tenancy was switched
    error: str = ""
    hint: str = ""

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


@dataclass
class RunResult:
    plan: ConsolidationPlan
    moves: list[MoveResult] = field(default_factory=list)
    switched: list[str] = field(default_factory=list)  # tenancies whose hosted_in now names the target

    @property
    def ok(self) -> bool:
        return not self.plan.refused and all(m.ok for m in self.moves)

    def to_dict(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "plan": self.plan.to_dict(),
            "moves": [m.to_dict() for m in self.moves],
            "switched": self.switched,
        }


def fault(name: str) -> bool:
    """Whether a test armed this fault (``DCCTL_FAILPOINTS=consolidate.corrupt-copy``); never set in production."""
    return any(item.split(":", 1)[0].strip() == name for item in os.environ.get("DCCTL_FAILPOINTS", "").split(","))


def plan(inv: Inventory, store: Store, legacy_dc: str, *, method: Method | None = None) -> ConsolidationPlan:
    """Observe the legacy data center and its target, then plan (changes nothing)."""
    providers = open_providers(inv, backends_involved(inv, legacy_dc))
    try:
        facts, _ = gather(inv, providers)
    finally:
        for p in providers.values():
            p.close()
    return plan_consolidation(inv, legacy_dc, facts, method=method, assumptions=measured_assumptions(store))


def run(
    inv: Inventory,
    store: Store,
    legacy_dc: str,
    *,
    workloads: tuple[str, ...] = (),
    method: Method | None = None,
    progress: Progress = _quiet,
    timeout: float = 3600.0,
    boot_timeout: float = 300.0,
    journal_dir: Path | None = None,
) -> RunResult:
    """Plan afresh, then move the workloads one after another; stops at the first that fails (it is rolled back).
    ``journal_dir`` holds each move's scratch journal (default: beside the state, in ``consolidate/``)."""
    journal_dir = journal_dir or local_dir(inv.root, store.location) / "consolidate"
    providers = open_providers(inv, backends_involved(inv, legacy_dc))
    try:
        facts, _ = gather(inv, providers)
        cplan = plan_consolidation(
            inv, legacy_dc, facts, method=method, only=workloads, assumptions=measured_assumptions(store)
        )
        result = RunResult(cplan)
        if cplan.refused:
            return result
        legacy = inv.data_centers[legacy_dc]
        target = inv.data_centers[cplan.target_dc or ""]
        for move in cplan.moves:
            mover = Mover(inv, store, legacy, target, providers, move, progress, timeout, boot_timeout, journal_dir)
            outcome = mover.run()
            if outcome is None:
                continue
            result.moves.append(outcome)
            if outcome.switched:
                result.switched.append(move.tenancy)
            if not outcome.ok:
                return result
        for tid in cplan.switch_only:
            edit = _switch(inv, tid, legacy, target)
            result.switched.append(tid)
            audit.record(
                store,
                audit.AuditEvent(
                    "consolidate.switch",
                    tid,
                    "succeeded",
                    before_digest=edit.sha256_before,
                    after_digest=edit.sha256_after,
                    detail={"legacy_dc": legacy.id, "target_dc": target.id, "tenancy": tid, "workloads": 0},
                ),
            )
        return result
    finally:
        for p in providers.values():
            p.close()


def _switch(inv: Inventory, tenancy_id: str, legacy: DataCenter, target: DataCenter) -> FileEdit:
    """Edit the tenancy's ``hosted_in`` in its YAML file, in place."""
    tenancy = inv.tenancies[tenancy_id]
    where = tenancy.where("hosted_in")
    if where is None:
        raise EditError(f"tenancy '{tenancy_id}' has no source position: it was not loaded from a file")
    [edit] = apply_edits([ScalarEdit(where, "hosted_in", legacy.id, target.id)])
    return edit


# ------------------------------------------------------------------------------------------------------ a move
class Mover:
    """One workload's move: prepare, move, verify, commit — or roll back."""

    def __init__(
        self,
        inv: Inventory,
        store: Store,
        legacy: DataCenter,
        target: DataCenter,
        providers: dict[str, Provider],
        move: WorkloadMove,
        progress: Progress,
        timeout: float,
        boot_timeout: float,
        journal_dir: Path,
    ) -> None:
        self.inv = inv
        self.store = store
        self.legacy = legacy
        self.target = target
        self.providers = providers
        self.move = move
        self.say = progress
        self.timeout = timeout
        self.boot_timeout = boot_timeout
        self.tenancy = inv.tenancies[move.tenancy]
        self.workload = inv.workloads[move.workload][1]
        self.holder = Holder.me("consolidate")
        self.result = MoveResult(
            move.workload,
            move.tenancy,
            move.method.value,
            expected_downtime_seconds=round(move.estimate.downtime_seconds, 2),
            source_backends=move.source_backends,
            target_backends=move.target_backends,
        )
        self.created: list[Change] = []  # what prepare made at the target (undone on rollback)
        self.originals: dict[str, str] = {}  # server name → its migratable XML at the source (live rollback)
        self.migrated: list[ServerMove] = []
        self.copies: list[copying.ServerCopy] = []
        self.journal_path = journal_dir / f"{move.workload}.db"
        self._journal: Store | None = None
        self.backends: list[str] = []
        self.server_changes: dict[str, Change] = {}
        self.edit: FileEdit | None = None
        self.run_id: int | None = None
        self.volume_names = {
            f"dcctl-{s.workload.id}-{s.group.name}-{s.index}-{disk}.qcow2"
            for s in servers(inv, {move.workload})
            for disk in (["root"] if s.flavor.disk_gb > 0 else []) + [v.name for v in s.group.volumes]
        }

    # ----------------------------------------------------------------------------------------------- driver
    def run(self) -> MoveResult | None:
        move, res = self.move, self.result
        resume_only = (move.state is State.MOVED or move.method is Method.NONE) and not self._journal_exists()
        if resume_only and not move.switches_tenancy:
            return None  # moved by an earlier run; its tenancy still has workloads to move
        started = time.monotonic()
        backends = sorted(
            {*move.source_backends, *move.target_backends, *(b.id for b in self.legacy.backends)} & set(self.providers)
        )
        if not resume_only:
            self.say(
                f"{move.workload}: {move.method.value} move {', '.join(move.source_backends)} → "
                f"{', '.join(move.target_backends)} (expected downtime ~{move.estimate.downtime_seconds:.0f}s)"
            )
        self.run_id = self.store.start_run("consolidate", self.inv.root, None, self.holder)
        with self._locked(backends):
            try:
                phase = self._phase()
                if resume_only or phase == "verified":
                    if phase:
                        self.say(f"{move.workload}: an earlier run verified this move; finishing it")
                    self._commit()
                    res.ok = True
                else:
                    if phase or move.state is State.INTERRUPTED:
                        self._undo_interrupted()
                    self._attempt()
            except DcctlError as exc:
                res.error, res.hint = res.error or exc.message, res.hint or exc.hint
            finally:
                res.seconds = round(time.monotonic() - started, 2)
                self.store.finish_run(self.run_id, "succeeded" if res.ok else "failed")
        self._audit("consolidate.switch" if resume_only else ACTION)
        if res.ok or res.rolled_back or self._phase() in ("", "preparing"):
            self._drop_journal()
        return res

    def _attempt(self) -> None:
        res = self.result
        self._set_phase("preparing")
        servers = self._prepare()
        try:
            if self.move.method is Method.LIVE:
                self._set_phase("migrating", was_running=" ".join(m.name for m in self.move.servers if m.exists))
                self._live(servers)
            elif self.move.method in (Method.WARM, Method.COLD):
                self._set_phase("copying")
                self._copy(servers)
            self._verify_owned()
        except DcctlError as exc:
            res.error, res.hint = exc.message, exc.hint
            self.say(f"{self.move.workload}: {exc.message} — rolling back")
            self._rollback()
            res.rolled_back = True
            return
        self._set_phase("verified")
        self._commit()
        res.ok = True

    # ----------------------------------------------------------------------------------------------- engine
    @contextlib.contextmanager
    def _locked(self, backends: list[str]) -> Iterator[None]:
        self.backends = backends
        self.store.lock(backends, self.holder, None)
        try:
            yield
        finally:
            self.store.unlock(backends, self.holder)

    def _apply(self, changes: list[Change], what: str) -> None:
        """Apply changes with the engine (journal, retries, audit, state), keeping this move's locks."""
        if not changes:
            return
        plan = Plan(
            inventory=self.inv.root,
            inventory_digest=self.inv.digest,
            mode=Mode.NORMAL,
            created_at=datetime.now(UTC).isoformat(timespec="seconds"),
            dcctl_version=__version__,
            changes=changes,
        )
        try:
            result = apply_plan(plan, self.providers, self.store, command="consolidate", timeout=self.timeout)
        finally:
            self.store.lock(self.backends, self.holder, None)  # apply_plan releases the backends it locked
        failed = [r for r in result.results if not r.ok]
        if failed:
            raise DcctlError(f"{what}: {failed[0].change.kind} {failed[0].change.name}: {failed[0].error}")

    def _observe(self, backend_ids: list[str]) -> dict[str, Observation]:
        chosen = {b: self.providers[b] for b in backend_ids if b in self.providers}
        observations = observe_all(chosen)
        for o in observations.values():
            if o.error is not None:
                raise DcctlError(f"cannot observe backend '{o.backend}': {o.error.message}", hint=o.error.hint)
        return observations

    def _mine(self, r: ObservedResource) -> bool:
        """The workload's own servers and volumes (a volume whose server is gone is known by its name)."""
        if not r.managed:
            return False
        return r.key.startswith(f"server:{self.move.workload}/") or (r.kind == "volume" and r.name in self.volume_names)

    @staticmethod
    def _delete(resources: list[ObservedResource]) -> list[Change]:
        return [
            Change(
                key=r.key,
                kind=r.kind,
                backend=r.backend,
                name=r.name,
                action=Action.DELETE,
                reason=Reason.REMOVED_FROM_INVENTORY,
                before={"observed": {"provider_id": r.provider_id, **dict(r.attrs)}},
            )
            for r in resources
        ]

    # ----------------------------------------------------------------------------------------------- prepare
    def _prepare(self) -> dict[str, Change]:
        """Make the pool, networks and volumes at the target; returns the server changes (key → CREATE), which
        say where each server goes and how it must be defined there."""
        target_ids = sorted(b.id for b in self.target.backends if b.id in self.providers)
        involved = sorted(set(target_ids) | {b.id for b in self.legacy.backends if b.id in self.providers})
        observations = self._observe(involved)
        for bid in involved:
            if bid not in target_ids:  # the workload is hidden at its source: placement puts it at the target
                o = observations[bid]
                observations[bid] = Observation(bid, [r for r in o.resources if not self._mine(r)])
        after = switch_tenancies(self.inv, [self.tenancy.id], self.target.id)
        planned = build_plan(
            after,
            {b: self.providers[b] for b in involved},
            observations,
            self.store.applied(),
            scope=resolve_targets(after, [self.move.workload]),
        )
        if planned.diagnostics.has_errors():
            first = planned.diagnostics.errors[0]
            raise DcctlError(f"the target cannot be prepared: {first.message}", hint=first.hint)
        ours = [c for c in planned.changes if c.backend in target_ids]
        servers = {c.key: c for c in ours if c.kind == "server" and c.key.startswith(f"server:{self.move.workload}/")}
        stale = [c for c in servers.values() if c.action is not Action.CREATE]
        if stale:
            raise DcctlError(
                f"{stale[0].name} already exists at {stale[0].backend}: the move is not where the plan said"
            )
        self.server_changes = servers
        prep = [c for c in ours if c.kind != "server" and c.action in (Action.CREATE, Action.UPDATE)]
        self.created = [c for c in prep if c.action is Action.CREATE]
        self.say(f"{self.move.workload}: preparing {len(prep)} resources at {', '.join(target_ids)}")
        try:
            self._apply(prep, "preparing the target")
        except DcctlError:
            self._remove_target()
            raise
        for sm in self.move.servers:
            change = servers.get(sm.key)
            if change is None:
                raise DcctlError(f"the engine places no {sm.name} at the target")
            if change.backend != sm.target_backend:
                self.say(f"{sm.name}: placed on {change.backend} (the plan said {sm.target_backend})")
        return servers

    @staticmethod
    def _volumes(change: Change) -> dict[str, str]:
        """Disk target dev → volume file, as the engine renders the server (vda, vdb, … in the spec's order)."""
        disks = (change.spec or {}).get("disks", [])
        return {f"vd{'abcdefghijklmnopqrstuvwxyz'[i]}": str(d["path"]) for i, d in enumerate(disks)}

    def _backend(self, backend_id: str) -> LibvirtBackend:
        backend = self.inv.backends[backend_id][1]
        if not isinstance(backend, LibvirtBackend):
            raise DcctlError(f"backend '{backend_id}' is not a libvirt host")
        return backend

    # ----------------------------------------------------------------------------------------------- live
    def _live(self, servers: dict[str, Change]) -> None:
        from dcctl.providers.libvirt.migrate import MoveHost, retarget_xml

        res = self.result
        pauses = []
        deadline = time.monotonic() + self.timeout
        for sm in (sm for sm in self.move.servers if sm.exists):
            change = servers[sm.key]
            source, target = self._backend(sm.source_backend), self._backend(change.backend)
            address = migration_address(target)
            if address is None:
                raise DcctlError(f"{target.id}'s URI names no host to migrate to")
            with MoveHost(source) as src, MoveHost(target) as dst:
                original = src.xml(sm.name, migratable=True)
                self.originals[sm.name] = original
                volumes = self._volumes(change)
                dest_xml = retarget_xml(
                    original,
                    backend=target.id,
                    digest=digest(change.spec),
                    disk_paths=volumes,
                    console_path=target.console_path,
                )
                self.say(f"{sm.name}: migrating live {source.id} → {target.id} with its storage")
                stats = src.migrate_live(sm.name, dst, dest_xml, sorted(volumes), address, deadline)
                self.migrated.append(replace(sm, target_backend=target.id))
                self.store.journal(self.run_id or 0, target.id, sm.key, "server", sm.name, "migrate", "done")
                res.servers[sm.name] = {"live": stats.to_dict()}
                if stats.downtime_ms is not None:
                    pauses.append(stats.downtime_ms / 1000)
                self.say(
                    f"{sm.name}: migrated {stats.mode} in {stats.seconds:.1f}s, paused {stats.downtime_ms or 0:.0f} ms"
                )
                if src.exists(sm.name):
                    raise copying.VerifyError(f"{sm.name} is still defined at {source.id} after its migration")
                if not dst.running(sm.name):
                    raise copying.VerifyError(f"{sm.name} does not run at {target.id} after its migration")
                before = dst.cpu_seconds(sm.name)

                def advancing(host: MoveHost = dst, name: str = sm.name, before: float = before) -> bool:
                    return host.cpu_seconds(name) > before

                _wait(advancing, time.monotonic() + 30, f"{sm.name}'s CPU time to advance at {target.id}")
            res.copied_bytes += int(stats.memory_bytes or 0)
        res.downtime_seconds = round(max(pauses), 3) if pauses else None

    # ----------------------------------------------------------------------------------------------- copy
    def _copy(self, servers: dict[str, Change]) -> None:
        from dcctl.providers.libvirt.migrate import MoveHost

        res = self.result
        for sm in (sm for sm in self.move.servers if sm.exists):
            change = servers[sm.key]
            source = self._backend(sm.source_backend)
            with MoveHost(source) as src:
                disks = {d.target: d.path for d in src.disks(sm.name)}
                running = src.running(sm.name) and not src.paused(sm.name)
            volumes = self._volumes(change)
            missing = sorted(set(disks) - set(volumes))
            if missing:
                raise DcctlError(f"{sm.name} has disks ({', '.join(missing)}) the inventory does not declare")
            self.copies.append(
                copying.ServerCopy(
                    sm.key, sm.name, source, self._backend(change.backend), volumes, disks, was_running=running
                )
            )
        self._set_phase("copying", was_running=" ".join(s.name for s in self.copies if s.was_running))
        copier = copying.DiskCopier(
            self._journal_store(), self.workload, self.copies, progress=self.say, timeout=self.timeout
        )
        try:
            if self.move.method is Method.WARM:
                copying.converge(copier)
            frozen = time.monotonic()
            copying.freeze(self.copies)
            self.say(f"{self.move.workload}: guests frozen; {'last delta' if copier.rounds else 'full copy'}")
            copier.round(final=True)
            res.rounds = [r.__dict__ for r in copier.rounds]
            res.copied_bytes = copier.shipped_bytes
            res.copy_seconds = round(copier.ship_seconds, 2)
            if fault(CORRUPT_COPY):
                self._corrupt()
            sums = copying.content_digests(self.copies)
            for disk, (want, got) in sums.items():
                server = disk.split("/", 1)[0]
                res.servers.setdefault(server, {}).setdefault("digests", {})[disk] = {"source": want, "target": got}
                if want != got:
                    raise copying.VerifyError(
                        f"the copy of {disk} differs from its source: content digest {got[:12]}… at the target, "
                        f"{want[:12]}… at the source",
                        hint="the copy was discarded; run the move again",
                    )
            # verified while the sources are only paused: until here a rollback just resumes them
            copying.power_off(self.copies)
            self.say(f"{self.move.workload}: content digests equal for {len(sums)} disks; starting at the target")
            for s in self.copies:
                if s.target.console_path:
                    with Ssh(SshTarget.from_uri(s.target.uri)) as ssh:
                        ssh.run(f"rm -f {q(f'{s.target.console_path}/{s.name}.log')}")
            booting = time.monotonic()
            moved = {s.key for s in self.copies}
            self._apply([c for c in servers.values() if c.key in moved], "starting the servers at the target")
            markers = _wait_for_boot(self.copies, booting + self.boot_timeout)
            res.boot_seconds = round(time.monotonic() - booting, 2)
            res.downtime_seconds = (
                round(time.monotonic() - frozen, 2) if any(s.was_running for s in self.copies) else 0.0
            )
            for name, marker in markers.items():
                res.servers.setdefault(name, {})["boot_marker"] = marker
        finally:
            with contextlib.suppress(DcctlError):
                copier.cleanup()

    def _corrupt(self) -> None:
        """The test fault: overwrite the start of each target volume (its copy must then fail verification)."""
        for s in self.copies:
            with Ssh(SshTarget.from_uri(s.target.uri)) as ssh:
                for volume in s.volumes.values():
                    ssh.run(f"qemu-io -f qcow2 -c {q('write -P 0x5a 0 64k')} {q(volume)}")

    # ----------------------------------------------------------------------------------------------- verify
    def _verify_owned(self) -> None:
        """The target's provider observes each server as its own, under its key: a later plan sees it in sync."""
        targets = sorted(
            {c.target.id for c in self.copies} | {m.target_backend for m in self.migrated if m.target_backend}
        )
        observations = self._observe(targets)
        seen = {(r.key, r.backend) for o in observations.values() for r in o.resources if r.managed}
        for s in self.copies:
            if (s.key, s.target.id) not in seen:
                raise copying.VerifyError(f"{s.name} is not observed as dcctl's at {s.target.id}")
        for m in self.migrated:
            if (m.key, m.target_backend) not in seen:
                raise copying.VerifyError(
                    f"{m.name} runs at {m.target_backend} but its provider does not own it (a foreign domain)",
                    hint="the libvirt provider must adopt live-migrated domains; move it warm or cold",
                )

    # ----------------------------------------------------------------------------------------------- commit
    def _commit(self) -> None:
        """The point of no return is behind: remove the source copy, switch the inventory, record."""
        move, res = self.move, self.result
        sources = sorted({b.id for b in self.legacy.backends if b.id in self.providers})
        observations = self._observe(sources)
        leftovers = [r for o in observations.values() for r in o.resources if self._mine(r)]
        for m in self.migrated:  # the engine did not make the migrated domains: record them as applied
            spec = self.server_changes[m.key].spec
            self.store.record_applied(self.run_id or 0, m.target_backend or "", m.key, "server", m.name, digest(spec))
            self.store.forget(m.source_backend, m.key)
        if leftovers:
            self.say(f"{move.workload}: removing {len(leftovers)} leftovers at {', '.join(sources)}")
            self._apply(self._delete(leftovers), "removing the source copy")
        if move.switches_tenancy:
            self._remove_unused_at_source(sources)
            try:
                edit = _switch(self.inv, self.tenancy.id, self.legacy, self.target)
            except EditError as exc:
                where = self.tenancy.where("hosted_in")
                raise DcctlError(
                    f"{move.workload} moved, but the inventory could not be switched: {exc.message}",
                    hint=f"set 'hosted_in: {self.target.id}' at {where} by hand",
                ) from None
            res.switched = f"{self.tenancy.where('hosted_in')} hosted_in: {self.legacy.id} → {self.target.id}"
            self.edit = edit
            self.say(f"{self.tenancy.id}: {res.switched}")

    def _remove_unused_at_source(self, sources: list[str]) -> None:
        """The tenancy's networks at the source once no server there uses them; the pool once it holds nothing."""
        observations = self._observe(sources)
        gone: list[ObservedResource] = []
        for o in observations.values():
            servers = [r for r in o.resources if r.kind == "server"]
            used = {n for r in servers for n in r.attrs.get("networks", [])}
            for r in o.resources:
                if (
                    r.managed
                    and r.kind == "network"
                    and r.key.startswith(f"tenancy:{self.tenancy.id}/")
                    and (r.name not in used)
                ):
                    gone.append(r)
            volumes = [r for r in o.resources if r.kind == "volume"]
            if not servers and not volumes:
                gone.extend(r for r in o.resources if r.managed and r.kind == "pool")
        self._apply(self._delete(gone), "removing the tenancy's networks at the source")

    # ----------------------------------------------------------------------------------------------- rollback
    def _rollback(self) -> None:
        """Source running again as before, target copy removed; the inventory was never touched."""
        errors = []
        try:
            self._rollback_live()
        except DcctlError as exc:
            errors.append(exc.message)
        try:
            restarted = copying.restore_sources(self.copies)
            if restarted:
                self.say(f"{self.move.workload}: {', '.join(restarted)} started again at the source")
                _wait_for_boot(
                    [s for s in self.copies if s.name in restarted],
                    time.monotonic() + self.boot_timeout,
                    at_source=True,
                )
        except DcctlError as exc:
            errors.append(exc.message)
        try:
            self._remove_target()
        except DcctlError as exc:
            errors.append(exc.message)
        if errors:
            self.result.hint = "the rollback did not finish: " + "; ".join(errors)
            raise DcctlError(self.result.error, hint=self.result.hint)
        self.say(f"{self.move.workload}: rolled back: the target copy is removed, the source is as it was")

    def _rollback_live(self) -> None:
        from dcctl.providers.libvirt.migrate import MoveHost

        deadline = time.monotonic() + self.timeout
        for m in reversed(self.migrated):
            source, target = self._backend(m.source_backend), self._backend(m.target_backend or "")
            address = migration_address(source)
            with MoveHost(target) as dst, MoveHost(source) as src:
                if dst.exists(m.name) and dst.running(m.name) and address:
                    self.say(f"{m.name}: migrating back to {source.id}")
                    dst.migrate_live(m.name, src, self.originals[m.name], self._disks_of(m), address, deadline)
                else:
                    dst.remove(m.name)
                    src.define_xml(self.originals[m.name], start=True)

    def _disks_of(self, m: ServerMove) -> list[str]:
        import xml.etree.ElementTree as ET

        root = ET.fromstring(self.originals[m.name])
        return sorted(
            t.get("dev", "")
            for d in root.findall("devices/disk")
            if d.get("device", "disk") == "disk" and (t := d.find("target")) is not None
        )

    def _remove_target(self) -> None:
        """The workload's servers and volumes at the target, and what this move created there for them."""
        targets = sorted(b.id for b in self.target.backends if b.id in self.providers)
        observations = self._observe(targets)
        mine = [r for o in observations.values() for r in o.resources if self._mine(r)]
        created = {(c.backend, c.kind, c.name) for c in self.created}
        others = [
            r
            for o in observations.values()
            for r in o.resources
            if r.managed and (r.backend, r.kind, r.name) in created and not self._mine(r)
        ]
        in_use = {
            n
            for o in observations.values()
            for r in o.resources
            if r.kind == "server" and not self._mine(r)
            for n in r.attrs.get("networks", [])
        }
        keep_pool = {
            o.backend
            for o in observations.values()
            if any(r.kind in ("server", "volume") and not self._mine(r) for r in o.resources)
        }
        others = [
            r
            for r in others
            if not (r.kind == "network" and r.name in in_use) and not (r.kind == "pool" and r.backend in keep_pool)
        ]
        self._apply(self._delete(mine + others), "removing the copy at the target")

    def _undo_interrupted(self) -> None:
        """An earlier run stopped before verification: remove its copy at the target; the sources run again as they
        did before it (the journal says which ran; without it, see ``diskcopy.restore``)."""
        self.say(f"{self.move.workload}: an earlier run stopped midway; undoing it first")
        known = self._journal_exists() and self._phase() not in ("", "preparing")
        ran = set(self._meta("was_running").split()) if known else set()
        self._remove_target()
        from dcctl.providers.libvirt.migrate import MoveHost

        for sm in self.move.servers:
            with MoveHost(self._backend(sm.source_backend)) as src:
                if src.exists(sm.name):
                    copying.restore(src, sm.name, was_running=(sm.name in ran) if known else None)
        self._drop_journal()

    # ----------------------------------------------------------------------------------------------- journal
    def _journal_exists(self) -> bool:
        return self.journal_path.exists()

    def _journal_store(self) -> Store:
        if self._journal is None:
            self._journal = Store(self.journal_path)
        return self._journal

    def _phase(self) -> str:
        return self._meta("phase") if self._journal_exists() else ""

    def _meta(self, key: str) -> str:
        return self._journal_store().meta(f"consolidate.{key}") or ""

    def _set_phase(self, phase: str, **more: str) -> None:
        for key, value in {"phase": phase, **more}.items():
            self._journal_store().set_meta(f"consolidate.{key}", value)

    def _drop_journal(self) -> None:
        if self._journal is not None:
            self._journal.close()
            self._journal = None
        for suffix in ("", "-wal", "-shm"):
            Path(f"{self.journal_path}{suffix}").unlink(missing_ok=True)

    # ----------------------------------------------------------------------------------------------- audit
    def _audit(self, action: str) -> None:
        res, move = self.result, self.move
        copy_mib_s = (res.copied_bytes / 2**20 / res.copy_seconds) if res.copy_seconds > 0 else None
        edit = self.edit
        detail = {
            "legacy_dc": self.legacy.id,
            "target_dc": self.target.id,
            "tenancy": move.tenancy,
            "workload": move.workload,
            "method": move.method.value,
            "source_backends": res.source_backends,
            "target_backends": res.target_backends,
            "servers": [s.name for s in move.servers],
            "downtime_seconds": res.downtime_seconds,
            "expected_downtime_seconds": res.expected_downtime_seconds,
            "seconds": res.seconds,
            "copied_bytes": res.copied_bytes,
            "copy_mib_s": round(copy_mib_s, 2) if copy_mib_s else None,
            "boot_seconds": res.boot_seconds,
            "rounds": len(res.rounds),
            "verified": {k: {x: y for x, y in v.items() if x != "live"} for k, v in res.servers.items()},
            "switched": res.switched,
            "rolled_back": res.rolled_back,
            "error": res.error,
        }
        audit.record(
            self.store,
            audit.AuditEvent(
                action=action,
                target=move.workload,
                outcome="succeeded" if res.ok else "failed",
                before_digest=edit.sha256_before if edit else "",
                after_digest=edit.sha256_after if edit else "",
                detail=detail,
            ),
        )


# ----------------------------------------------------------------------------------------------------- waits
def _wait(ready: Callable[[], bool], deadline: float, what: str) -> None:
    """Poll ``ready`` until it holds or the deadline passes (then a verification failure)."""
    delay = 0.1
    while not ready():
        if time.monotonic() > deadline:
            raise copying.VerifyError(f"timed out waiting for {what}")
        time.sleep(delay)
        delay = min(delay * 2, 1.0)


def _wait_for_boot(servers: list[copying.ServerCopy], deadline: float, *, at_source: bool = False) -> dict[str, str]:
    """Each server's boot marker from its serial log on its host: the proof it booted, not just started."""
    seen: dict[str, str] = {}
    for s in servers:
        host = s.source if at_source else s.target
        if host.console_path is None:
            raise copying.VerifyError(f"backend '{host.id}' has no console_path: dcctl cannot see {s.name} boot")
        log = f"{host.console_path.rstrip('/')}/{s.name}.log"
        with Ssh(SshTarget.from_uri(host.uri)) as ssh:

            def booted(ssh: Ssh = ssh, log: str = log, name: str = s.name) -> bool:
                _, out, _ = ssh.run(f"grep -a -m1 -h {q(MARKER)} {q(log)} 2>/dev/null || true")
                if out.strip():
                    seen[name] = out.strip()
                return bool(out.strip())

            _wait(booted, deadline, f"the boot marker of {s.name} at {host.id}")
        want = f"name={s.name} "
        if want not in seen[s.name] + " ":
            raise copying.VerifyError(f"{s.name} booted under another name: {seen[s.name]}")
    return seen


__all__ = ["MoveResult", "Mover", "RunResult", "plan", "run"]
