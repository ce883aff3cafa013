"""The local commands of ``pg2rds``: ``run --local``, ``serve --local`` and ``demo``.

They are registered on the operator CLI through the ``pg2rds.commands`` entry point, so the CLI never imports
the emulator: a machine without it simply has no local commands. Registering imports nothing heavy (moto
loads only when a local command runs), so ``pg2rds status`` starts as fast as without the emulator.
"""

import argparse
import json
import signal
import sys
import time
from collections.abc import Callable
from contextlib import ExitStack
from pathlib import Path
from typing import TYPE_CHECKING

from rich.live import Live
from rich.text import Text

from pg2rds_cli import display
from pg2rds_cli.arguments import dsn, time_scale
from pg2rds_cli.errors import UsageError
from pg2rds_cli.executions import ExecutionView
from pg2rds_cli.main import console, finish, heavy_imports, load_spec, say_error
from pg2rds_emulator import LOCAL_TIME_SCALE

if TYPE_CHECKING:
    from pg2rds_emulator.local_run import LocalRunAborted
    from pg2rds_emulator.schema_copy import SchemaCopy


def cmd_run(args: argparse.Namespace) -> int:
    if not args.local:
        raise UsageError("`pg2rds run` needs --local; in AWS use `pg2rds start SPEC`")
    if args.cutover == "ask" and not sys.stdin.isatty():
        raise UsageError("--cutover ask needs a terminal to ask on; without one use --cutover auto or abort")
    with heavy_imports():
        from pg2rds_cli.graph import render_execution
        from pg2rds_emulator.local_run import LocalRunAborted
        from pg2rds_emulator.schema_copy import SchemaCopy, SchemaCopyFailed, copy_meanwhile

    spec = load_spec(args.spec)
    if args.migration_id:
        spec = {**(spec or {}), "migration_id": args.migration_id}
    with ExitStack() as stack:
        schema: SchemaCopy | None = None
        ready: Callable[[], None] = _nothing
        if args.copy_schema:
            schema = SchemaCopy(args.source_dsn, args.target_dsn, spec)
            console.print(schema.announcement, highlight=False)
            ready = copy_meanwhile(schema, stack)
        try:
            view, leftovers = _run(args, spec, ready)
        except SchemaCopyFailed as error:
            return _schema_failed(error)
        except LocalRunAborted as aborted:
            code = _aborted(aborted)
            _post_data_not_built(schema)
            return code
        post_data = 0 if schema is None else _build_post_data(schema, view)
    if args.graph:
        render_execution(view, args.graph)
        console.print(Text(f"Graph written to {args.graph}"))
    if leftovers:
        console.print(f"[red]Left in the embedded account: {', '.join(leftovers)}[/red]")
    code = finish(view, args.json)
    if post_data:
        _post_data_not_built(schema)
    return max(code, post_data)


def _build_post_data(schema: "SchemaCopy", view: ExecutionView) -> int:
    """After a full load into tables without them: the schema's post-data section, if the migration
    SUCCEEDED. 0 if built (or nothing was left to build), 1 if not (the migration failed, or building it
    did), 130 if Ctrl-C or SIGTERM stopped the build (pg_restore is stopped with it)."""
    from pg2rds_emulator.local_run import Terminated, interruption_reason, sigterm_interrupts
    from pg2rds_emulator.schema_copy import POST_DATA_OBJECTS, SchemaCopyFailed

    if not schema.deferred:
        return 0
    if view.status != "SUCCEEDED":
        return 1
    console.print(f"Building the {POST_DATA_OBJECTS} (pg_restore --section=post-data) …", highlight=False)
    try:
        with sigterm_interrupts():
            schema.finish(progress=lambda line: console.print(line, markup=False, highlight=False))
    except SchemaCopyFailed as error:
        _schema_failed(error)
        return 1
    except (KeyboardInterrupt, Terminated) as interruption:
        reason = interruption_reason(interruption)
        console.print(f"[red]{reason}[/red] while building the {POST_DATA_OBJECTS}", highlight=False)
        return 130
    return 0


def _post_data_not_built(schema: "SchemaCopy | None") -> None:
    from pg2rds_emulator.schema_copy import POST_DATA_OBJECTS

    if schema is not None and schema.deferred:
        console.print(
            f"The target's {POST_DATA_OBJECTS} were not all built; build them with:\n  "
            + schema.post_data_command(),
            style="yellow",
            markup=False,
            highlight=False,
            soft_wrap=True,
        )


def _schema_failed(error: Exception) -> int:
    say_error(f"pg2rds: {error}")
    return 1


def _nothing() -> None:
    """Nothing to make ready before the execution starts (no schema to copy)."""


def _run(
    args: argparse.Namespace, spec: dict | None, before_start: Callable[[], None]
) -> tuple[ExecutionView, list[str]]:
    from pg2rds_emulator.local_run import run_local

    def notify(message: str) -> None:
        console.print(message, markup=False, highlight=False)

    if args.quiet:
        return run_local(
            args.source_dsn,
            args.target_dsn,
            spec,
            time_scale=args.time_scale,
            decide=_decider(args.cutover, None),
            notify=notify,
            before_start=before_start,
        )
    with Live(console=console, refresh_per_second=4) as live:
        return run_local(
            args.source_dsn,
            args.target_dsn,
            spec,
            time_scale=args.time_scale,
            on_update=lambda v: live.update(display.live_panel(v)),
            decide=_decider(args.cutover, live),
            notify=notify,
            before_start=before_start,
        )


def _aborted(aborted: "LocalRunAborted") -> int:
    """What an interrupted run removed and what it could not; 130 (as after SIGINT) unless an error."""
    console.print(Text("Migration aborted: ", style="red") + Text(aborted.reason), highlight=False)
    console.print("Removed: " + (", ".join(aborted.removed) or "nothing was left to remove"), highlight=False)
    if aborted.left:
        console.print("[red]Still left:[/red] " + "; ".join(aborted.left), highlight=False)
    return 1 if aborted.reason.startswith("Stopped by an error") else 130


def _decider(mode: str, live: Live | None):
    """The local stand-in for `pg2rds cutover`: decide at once ("auto", "abort"), or ask on the terminal."""
    if mode in ("auto", "abort"):
        return lambda view: "cutover" if mode == "auto" else "abort"
    asked_at = [0.0]

    def ask(view: ExecutionView) -> str | None:
        if time.monotonic() - asked_at[0] < 30:
            return None
        if live:
            live.stop()
        progress = view.record.get("progress") or {}
        latency = progress.get("cdc_latency_target_seconds")
        cost = (progress.get("validation") or {}).get("summary", "")
        answer = (
            console.input(
                f"The target has caught up (latency {latency if latency is not None else '?'} s)"
                + (f"; expected downtime: {cost}" if cost else "")
                + ". Stop the application's writes, then [bold]c[/bold]ut over, [bold]a[/bold]bort, or "
                "Enter to wait: "
            )
            .strip()
            .lower()
        )
        if live:
            live.start()
        asked_at[0] = time.monotonic()
        return {"c": "cutover", "a": "abort"}.get(answer[:1])

    return ask


def cmd_serve(args: argparse.Namespace) -> int:
    with heavy_imports():
        from pg2rds_emulator.dms_standin import StandInEngine
        from pg2rds_emulator.local_run import secrets_of
        from pg2rds_emulator.serve import LocalEndpoint

    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))  # leave the `with`: engine and clusters let go
    secrets = secrets_of(args.source_dsn, args.target_dsn) if args.source_dsn and args.target_dsn else None
    engine = StandInEngine()
    try:
        with LocalEndpoint(args.port, engine, time_scale=args.time_scale) as endpoint:
            lines = [
                f"export AWS_ENDPOINT_URL={endpoint.url} AWS_DEFAULT_REGION=us-east-1",
                "export AWS_ACCESS_KEY_ID=local AWS_SECRET_ACCESS_KEY=local",
                f"export PG2RDS_STATE_MACHINE_ARN={endpoint.aws.state_machine_arn}",
            ]
            if secrets is not None:  # both DSNs given
                spec_path = Path(args.spec_out)
                endpoint.write_spec(
                    spec_path, args.source_dsn, args.target_dsn, load_spec(args.spec), secrets
                )
                lines.append(f"pg2rds start {spec_path} --watch")
            console.print("Serving the embedded AWS (Ctrl-C to stop). In another shell:")
            for line in lines:  # never wrapped: they are meant to be copied
                console.print(line, soft_wrap=True, highlight=False, markup=False)
            ready = {"endpoint_url": endpoint.url, "state_machine_arn": endpoint.aws.state_machine_arn}
            print(json.dumps(ready), flush=True)  # one line on stdout, for scripts
            signal.pause()
    except KeyboardInterrupt:
        pass
    finally:
        engine.shutdown()
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    with heavy_imports():
        from pg2rds_emulator.demo import run_demo

    return run_demo(console, keep=args.keep, graph=args.graph)


def register(sub: "argparse._SubParsersAction[argparse.ArgumentParser]") -> None:
    """Add the local commands to the ``pg2rds`` parser (the ``pg2rds.commands`` entry point)."""
    run = sub.add_parser("run", help="run a migration in an embedded AWS against real PostgreSQL servers")
    run.add_argument("spec", nargs="?", help="migration spec JSON (default: every table, full load)")
    run.add_argument("--local", action="store_true", help="embedded AWS (the only mode of `run`)")
    run.add_argument("--source-dsn", required=True, type=dsn)
    run.add_argument("--target-dsn", required=True, type=dsn)
    run.add_argument("--migration-id")
    run.add_argument(
        "--copy-schema",
        action="store_true",
        help="copy the source's schema (pg_dump --schema-only): for a full load, the tables before it and "
        "their keys, indexes and triggers once it SUCCEEDED; with CDC, all of it first",
    )
    run.add_argument(
        "--time-scale",
        type=time_scale,
        default=LOCAL_TIME_SCALE,
        help=f"compress Wait and Retry delays by this factor (default {LOCAL_TIME_SCALE})",
    )
    run.add_argument(
        "--cutover",
        choices=("ask", "auto", "abort"),
        default="ask" if sys.stdin.isatty() else "auto",
        help="CDC: once the target has caught up, ask (default on a terminal), cut over (auto), or abort",
    )
    run.add_argument("--graph", help="also draw the execution to this .svg/.png file")
    run.add_argument("--json", action="store_true", help="print the execution output as JSON on stdout")
    run.add_argument("--quiet", action="store_true", help="no live progress display")
    run.set_defaults(func=cmd_run)

    serve = sub.add_parser("serve", help="serve the embedded AWS on a local endpoint for other commands")
    serve.add_argument("--local", action="store_true", help="the only mode of `serve`")
    serve.add_argument("--port", type=int, default=5000)
    serve.add_argument(
        "--source-dsn", type=dsn, help="with --target-dsn: store their credentials, write a spec"
    )
    serve.add_argument("--target-dsn", type=dsn)
    serve.add_argument("--spec", help="spec to complete with the DSNs (default: every table, full load)")
    serve.add_argument("--spec-out", default=".pg2rds/local-spec.json")
    serve.add_argument("--time-scale", type=time_scale, default=LOCAL_TIME_SCALE)
    serve.set_defaults(func=cmd_serve)

    demo = sub.add_parser("demo", help="migrate the pagila sample between two temporary local clusters")
    demo.add_argument("--keep", action="store_true", help="leave the clusters running")
    demo.add_argument("--graph", help="draw the execution to this file")
    demo.set_defaults(func=cmd_demo)
