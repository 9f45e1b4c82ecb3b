"""The typer root: registers the commands and maps every exception to a message and an exit code, in one place."""

from __future__ import annotations

import gc
import os
import sys
import traceback

import typer

from dcctl import __version__
from dcctl.cli import exitcodes
from dcctl.cli.commands import audit, consolidate, dr, engine, hosts, lock, policy, report, schema, state, validate
from dcctl.errors import DcctlError

app = typer.Typer(
    name="dcctl",
    help=(
        "Control toolkit for a province's two-tier e-government cloud: a YAML inventory of data centers, "
        "county tenancies and workloads, validated against the provincial plan, MLPS 2.0 and GB/T 20988, "
        "then provisioned on OpenStack and libvirt.\n\n"
        "Start with: dcctl validate inventories/lab"
    ),
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)
app.command()(validate.validate)
app.command()(engine.plan)
app.command()(engine.apply)
app.command()(engine.destroy)
app.command()(engine.status)
app.command()(engine.drift)
app.command()(schema.schema)
app.add_typer(policy.app, name="policy")
app.add_typer(lock.app, name="lock")
app.add_typer(hosts.app, name="hosts")
app.add_typer(dr.app, name="dr")
app.add_typer(consolidate.app, name="consolidate")
app.command()(report.report)
app.add_typer(audit.app, name="audit")
app.add_typer(state.app, name="state")


def _version(value: bool) -> None:
    if value:
        typer.echo(f"dcctl {__version__}")
        raise typer.Exit(exitcodes.OK)


@app.callback()
def root(
    version: bool = typer.Option(False, "--version", callback=_version, is_eager=True, help="Print the version."),
) -> None:
    """dcctl"""


def main(argv: list[str] | None = None) -> int:
    """Run the CLI; returns the exit code (never raises, never prints a traceback unless DCCTL_DEBUG=1)."""
    try:
        result = app(args=argv, prog_name="dcctl", standalone_mode=False)
    except typer.Exit as exc:
        return int(exc.exit_code)
    except (typer.Abort, KeyboardInterrupt):
        typer.echo("interrupted", err=True)
        return exitcodes.INTERRUPTED
    except typer.TyperException as exc:  # typer's own (vendored click) usage and parameter errors
        show = getattr(exc, "show", None)
        if callable(show):
            show()
        else:
            typer.echo(f"error: {exc.format_message()}", err=True)
        if type(exc).__name__ == "NoArgsIsHelpError":
            return exitcodes.OK
        return exitcodes.USAGE if exc.exit_code == 2 else exitcodes.ERROR
    except DcctlError as exc:
        hint = f" — {exc.hint}" if exc.hint else ""
        typer.echo(f"error: {exc.message}{hint}", err=True)
        return exitcodes.ERROR
    except BrokenPipeError:
        return exitcodes.ERROR
    except Exception as exc:  # a bug: say so plainly, keep the traceback for those who ask
        if os.environ.get("DCCTL_DEBUG"):
            traceback.print_exc()
        typer.echo(
            f"internal error: {type(exc).__name__}: {exc} — this is a bug in dcctl; "
            "re-run with DCCTL_DEBUG=1 for the traceback and report it",
            err=True,
        )
        return exitcodes.ERROR
    return int(result) if isinstance(result, int) else exitcodes.OK


def entrypoint() -> None:
    """The ``dcctl`` process: run the CLI, then exit without a last garbage collection over every object the run
    loaded (models, SDKs: about 50 ms). Everything is closed by then; the process's memory goes with it."""
    code = main()
    gc.freeze()
    sys.exit(code)
