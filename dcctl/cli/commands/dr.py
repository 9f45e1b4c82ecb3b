"""`dcctl dr …`: replicate protected workloads to the provincial DR site, watch RPO, drill, fail over and back."""

from __future__ import annotations

import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated

import typer

from dcctl.cli import exitcodes
from dcctl.cli.commands.engine import State, _session
from dcctl.cli.options import DEFAULT_INVENTORY, InventoryPath, Json
from dcctl.cli.output import emit_json

app = typer.Typer(
    help="Disaster recovery: changed-block replication to the provincial DR site, RPO, drills, failover.",
    no_args_is_help=True,
)
WorkloadOpt = Annotated[
    list[str] | None, typer.Option("--workload", "-w", help="Only this protected workload (repeatable).")
]
WorkloadArg = Annotated[str, typer.Argument(help="A protected workload id (one with a 'dr:' policy).")]
Inventory = Annotated[Path, typer.Option("--inventory", "-i", help="Inventory directory.")]


def _say(message: str) -> None:
    typer.echo(f"  {message}", err=True)


@app.command()
def replicate(
    path: InventoryPath = Path(DEFAULT_INVENTORY),
    workload: WorkloadOpt = None,
    json_output: Json = False,
    state: State = None,
) -> int:
    """Take a consistent point of each protected workload and ship only its changed blocks to the DR site.

    The first point of a disk is full, later ones carry only the blocks changed since (libvirt checkpoints and
    dirty bitmaps). A point is good only once its checksum matched at the DR site; an interrupted transfer resumes
    on the next run. Exit 1 if any server failed.
    """
    from dcctl.dr import service

    with _session(path, None, state, json_output=json_output) as s:
        results = service.replicate(s, workload or (), progress=_say)
    if json_output:
        emit_json(
            {
                "replication": [
                    {
                        "workload": r.workload,
                        "target": r.target_backend,
                        "ok": r.ok,
                        "servers": [s.__dict__ for s in r.servers],
                    }
                    for r in results
                ]
            }
        )
    else:
        for r in results:
            for sr in r.servers:
                if sr.ok:
                    typer.echo(
                        f"{r.workload} {sr.server}: {sr.kind} point {sr.point_set} → {r.target_backend}: "
                        f"{sr.changed_bytes / 2**20:.1f} MiB changed, {sr.shipped_bytes / 2**20:.1f} MiB shipped, "
                        f"{sr.seconds:.1f}s"
                    )
                else:
                    hint = f" — {sr.hint}" if sr.hint else ""
                    typer.echo(f"{r.workload} {sr.server}: error[dr-replicate-failed]: {sr.error}{hint}")
    return exitcodes.OK if all(r.ok for r in results) else exitcodes.ERROR


@app.command()
def status(
    path: InventoryPath = Path(DEFAULT_INVENTORY),
    json_output: Json = False,
    output_format: Annotated[
        str, typer.Option("--format", help="text, json or prometheus (for node_exporter's textfile collector).")
    ] = "text",
    state: State = None,
) -> int:
    """Per protected workload: last good point, measured RPO against its target, chain, bytes shipped, where it
    runs, and the GB/T 20988 level achieved. Exit 1 when any RPO is breached (or never replicated)."""
    from dcctl.api import validate
    from dcctl.dr.status import dr_status, human, prometheus
    from dcctl.state import open_store

    inv = validate(path).inventory
    store = open_store(path, state)
    try:
        rows = dr_status(inv, store, datetime.now(UTC))
    finally:
        store.close()
    fmt = "json" if json_output else output_format
    if fmt == "json":
        emit_json({"workloads": [r.to_dict() for r in rows]})
    elif fmt == "prometheus":
        typer.echo(prometheus(rows), nl=False)
    else:
        for line in human(rows):
            typer.echo(line)
        breached = [r.workload for r in rows if r.breached]
        typer.echo(
            f"{len(rows)} protected workloads, {len(breached)} with RPO breached"
            + (f": {', '.join(breached)}" if breached else "")
        )
    return exitcodes.ERROR if any(r.breached for r in rows) else exitcodes.OK


def _recover(path: Path, workload: str, kind: str, state: str | None, json_output: bool, planned: bool = True) -> int:
    from dcctl.dr import service

    with _session(path, None, state, json_output=json_output) as s:
        result = service.recover(s, workload, kind, planned=planned, progress=_say)
    if json_output:
        emit_json({kind: result.to_dict()})
    elif result.ok:
        typer.echo(f"{kind} of {workload} from point {result.point_set}: RTO {result.rto_seconds:.1f}s")
        for server, marker in sorted(result.booted.items()):
            typer.echo(f"  {server}: {marker}")
    else:
        hint = f" — {result.hint}" if result.hint else ""
        typer.echo(f"error[dr-{kind}-failed]: {workload}: {result.error}{hint}")
    return exitcodes.OK if result.ok else exitcodes.ERROR


@app.command()
def drill(
    workload: WorkloadArg, path: Inventory = Path(DEFAULT_INVENTORY), json_output: Json = False, state: State = None
) -> int:
    """Non-disruptive: boot the newest good point at the DR site in an isolated network, check each guest's boot
    marker, record the RTO, tear everything down. Production is not touched."""
    return _recover(path, workload, "drill", state, json_output)


@app.command()
def failover(
    workload: WorkloadArg,
    path: Inventory = Path(DEFAULT_INVENTORY),
    unplanned: Annotated[
        bool, typer.Option("--unplanned", help="The source is unreachable: start from the newest good point.")
    ] = False,
    json_output: Json = False,
    state: State = None,
) -> int:
    """Run a workload at the DR site. Planned (default): pause the source servers, replicate a last point, stop
    them, boot the replicas. --unplanned: boot the newest good point without touching the source."""
    return _recover(path, workload, "failover", state, json_output, planned=not unplanned)


@app.command()
def failback(
    workload: WorkloadArg, path: Inventory = Path(DEFAULT_INVENTORY), json_output: Json = False, state: State = None
) -> int:
    """Carry what changed at the DR site back to the source disks, start the source servers, remove the DR copy.
    The next replicate starts a new chain with a full point."""
    return _recover(path, workload, "failback", state, json_output)


@app.command()
def run(
    path: InventoryPath = Path(DEFAULT_INVENTORY),
    interval: Annotated[float, typer.Option("--interval", help="Seconds between checks.")] = 60.0,
    once: Annotated[bool, typer.Option("--once", help="One pass, then exit (for cron and systemd timers).")] = False,
    state: State = None,
) -> int:
    """Keep every protected workload within its RPO: replicate each one whose newest good point is older than half
    its RPO target. Runs until interrupted (or one pass with --once, for cron or a systemd timer)."""
    from dcctl.api import validate
    from dcctl.dr import catalog, service

    while True:
        inv = validate(path).inventory
        due = []
        with _session(path, None, state) as s:
            for _, w in inv.workloads.values():
                if w.dr is None:
                    continue
                rpo = catalog.measured_rpo(s.store, w.id)
                if rpo is None or rpo > w.dr.rpo / 2:
                    due.append(w.id)
            if due:
                typer.echo(f"{datetime.now(UTC).isoformat(timespec='seconds')} replicating {', '.join(due)}", err=True)
                results = service.replicate(s, due, progress=_say)
                failed = [sr.server for r in results for sr in r.servers if not sr.ok]
                if failed:
                    typer.echo(f"  failed: {', '.join(failed)} (retried next pass)", err=True)
        if once:
            return exitcodes.OK
        time.sleep(interval)
