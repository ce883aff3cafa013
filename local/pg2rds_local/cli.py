"""The ``pg2rds`` command: run a migration locally, or start and follow one in AWS."""

import argparse
import json
import os
import signal
import sys
import time
from pathlib import Path
from typing import Any

import boto3
from rich.console import Console
from rich.live import Live

from pg2rds_local import display
from pg2rds_local.executions import ExecutionView, read_execution, watch
from pg2rds_local.local_run import LOCAL_TIME_SCALE

console = Console(stderr=True)
STACK_NAME = "pg2rds"


def _load_spec(path: str | None) -> dict[str, Any] | None:
    if not path:
        return None
    return json.loads(Path(path).read_text())


def _follow(sfn: Any, arn: str) -> ExecutionView:
    with Live(console=console, refresh_per_second=4, transient=False) as live:
        return watch(sfn, arn, lambda view: live.update(display.live_panel(view)), interval_seconds=5)


def _finish(view: ExecutionView, as_json: bool) -> int:
    if as_json:
        print(json.dumps(view.record, indent=2, default=str))
    display.summary(console, view)
    return 0 if view.status == "SUCCEEDED" else 1


# -- run --local ------------------------------------------------------------------------------------------
def cmd_run(args: argparse.Namespace) -> int:
    if not args.local:
        console.print("[red]`pg2rds run` needs --local; in AWS use `pg2rds start SPEC`.[/red]")
        return 2
    from pg2rds_local.local_run import copy_schema, run_local

    if args.copy_schema:
        console.print("Copying the schema (pg_dump --schema-only | psql) …")
        copy_schema(args.source_dsn, args.target_dsn)
    spec = _load_spec(args.spec)
    if args.migration_id:
        spec = {**(spec or {}), "migration_id": args.migration_id}
    if args.quiet:
        view, leftovers = run_local(
            args.source_dsn,
            args.target_dsn,
            spec,
            time_scale=args.time_scale,
            decide=_decider(args.cutover, None),
        )
    else:
        with Live(console=console, refresh_per_second=4) as live:
            view, leftovers = run_local(
                args.source_dsn,
                args.target_dsn,
                spec,
                time_scale=args.time_scale,
                on_update=lambda v: live.update(display.live_panel(v)),
                decide=_decider(args.cutover, live),
            )
    if args.graph:
        from pg2rds_local.graph import render_execution

        render_execution(view, args.graph)
        console.print(f"Graph written to {args.graph}")
    if leftovers:
        console.print(f"[red]Left in the embedded account: {', '.join(leftovers)}[/red]")
    return _finish(view, args.json)


def _decider(mode: str, live: Live | None):  # noqa: ANN202 - a local_run.Decide
    """The local stand-in for `pg2rds cutover`: decide at once ("auto", "abort"), or ask on the terminal."""
    if mode in ("auto", "abort"):
        return lambda view: "cutover" if mode == "auto" else "abort"
    asked_at = [0.0]

    def ask(view: ExecutionView) -> str | None:
        if time.monotonic() - asked_at[0] < 30:
            return None
        if live:
            live.stop()
        latency = (view.record.get("progress") or {}).get("cdc_latency_target_seconds")
        answer = (
            console.input(
                f"The target has caught up (latency {latency if latency is not None else '?'} s). Stop the "
                "application's writes, then [bold]c[/bold]ut over, [bold]a[/bold]bort, or Enter to wait: "
            )
            .strip()
            .lower()
        )
        if live:
            live.start()
        asked_at[0] = time.monotonic()
        return {"c": "cutover", "a": "abort"}.get(answer[:1])

    return ask


# -- AWS ---------------------------------------------------------------------------------------------------
def _state_machine_arn(explicit: str | None) -> str:
    explicit = explicit or os.environ.get("PG2RDS_STATE_MACHINE_ARN")
    if explicit:
        return explicit
    outputs = boto3.client("cloudformation").describe_stacks(StackName=STACK_NAME)["Stacks"][0]["Outputs"]
    return next(o["OutputValue"] for o in outputs if o["OutputKey"] == "StateMachineArn")


def cmd_start(args: argparse.Namespace) -> int:
    from pg2rds.errors import SpecInvalid
    from pg2rds.spec import parse_spec

    spec = _load_spec(args.spec)
    try:
        migration_id = parse_spec(spec).migration_id  # fail here, naming the field, not in the first state
    except SpecInvalid as error:
        console.print(f"[red]{error}[/red]")
        return 2
    sfn = boto3.client("stepfunctions")
    arn = sfn.start_execution(
        stateMachineArn=_state_machine_arn(args.state_machine_arn),
        name=f"{migration_id}-{time.strftime('%Y%m%dT%H%M%S', time.gmtime())}",  # readable in the console
        input=json.dumps(spec),
    )["executionArn"]
    print(arn)
    if args.watch:
        return _finish(_follow(sfn, arn), as_json=False)
    return 0


def cmd_status(args: argparse.Namespace) -> int:
    view = read_execution(boto3.client("stepfunctions"), args.execution)
    if view.done:
        return _finish(view, args.json)
    console.print(display.live_panel(view))
    return 0


def cmd_watch(args: argparse.Namespace) -> int:
    return _finish(_follow(boto3.client("stepfunctions"), args.execution), args.json)


def cmd_cutover(args: argparse.Namespace) -> int:
    from pg2rds_local.cutover import NotWaitingForCutover, send_decision

    try:
        decision = send_decision(
            boto3.client("stepfunctions"), args.execution, abort=args.abort, reason=args.reason
        )
    except NotWaitingForCutover as error:
        console.print(f"[red]{error}[/red]")
        return 1
    console.print(
        "Aborted: the migration cleans up and ends FAILED (CutoverAborted)."
        if decision == "aborted"
        else "Cutting over: replication stops once every change is applied; then the target is finished "
        "and verified."
    )
    return 0


def cmd_graph(args: argparse.Namespace) -> int:
    from pg2rds_local.graph import render_definition, render_execution

    if args.definition:
        render_definition(args.output)
    else:
        render_execution(read_execution(boto3.client("stepfunctions"), args.execution), args.output)
    console.print(f"Graph written to {args.output}")
    return 0


def cmd_serve(args: argparse.Namespace) -> int:
    from pg2rds_local.dms_standin import StandInEngine
    from pg2rds_local.serve import LocalEndpoint

    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))  # leave the `with`: engine and clusters let go
    engine = StandInEngine()
    try:
        with LocalEndpoint(args.port, engine, time_scale=args.time_scale) as endpoint:
            lines = [
                f"export AWS_ENDPOINT_URL={endpoint.url} AWS_DEFAULT_REGION=us-east-1",
                "export AWS_ACCESS_KEY_ID=local AWS_SECRET_ACCESS_KEY=local",
                f"export PG2RDS_STATE_MACHINE_ARN={endpoint.aws.state_machine_arn}",
            ]
            if args.source_dsn and args.target_dsn:
                spec_path = Path(args.spec_out)
                endpoint.write_spec(spec_path, args.source_dsn, args.target_dsn, _load_spec(args.spec))
                lines.append(f"pg2rds start {spec_path} --watch")
            console.print("Serving the embedded AWS (Ctrl-C to stop). In another shell:\n" + "\n".join(lines))
            ready = {"endpoint_url": endpoint.url, "state_machine_arn": endpoint.aws.state_machine_arn}
            print(json.dumps(ready), flush=True)  # one line on stdout, for scripts
            signal.pause()
    except KeyboardInterrupt:
        pass
    finally:
        engine.shutdown()
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    from pg2rds_local.demo import run_demo

    return run_demo(console, keep=args.keep, graph=args.graph)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="pg2rds", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    run = sub.add_parser("run", help="run a migration in an embedded AWS against real PostgreSQL servers")
    run.add_argument("spec", nargs="?", help="migration spec JSON (default: every table, full load)")
    run.add_argument("--local", action="store_true", help="embedded AWS (the only mode of `run`)")
    run.add_argument("--source-dsn", required=True)
    run.add_argument("--target-dsn", required=True)
    run.add_argument("--migration-id")
    run.add_argument(
        "--copy-schema",
        action="store_true",
        help="create the target schema first with pg_dump --schema-only | psql",
    )
    run.add_argument(
        "--time-scale",
        type=float,
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

    start = sub.add_parser("start", help="start a migration on the deployed state machine")
    start.add_argument("spec")
    start.add_argument(
        "--state-machine-arn", help=f"default: the {STACK_NAME} stack's StateMachineArn output"
    )
    start.add_argument("--watch", action="store_true")
    start.set_defaults(func=cmd_start)

    for name, func, text in (
        ("status", cmd_status, "show an execution"),
        ("watch", cmd_watch, "follow an execution"),
    ):
        command = sub.add_parser(name, help=text)
        command.add_argument("execution", help="execution ARN")
        command.add_argument("--json", action="store_true")
        command.set_defaults(func=func)

    cutover = sub.add_parser("cutover", help="send the cutover decision to an execution waiting for it")
    cutover.add_argument("execution", help="execution ARN")
    cutover.add_argument("--abort", action="store_true", help="abort instead: clean up, end FAILED")
    cutover.add_argument("--reason", default="", help="recorded in the failure cause with --abort")
    cutover.set_defaults(func=cmd_cutover)

    graph = sub.add_parser("graph", help="draw the state machine, or an execution's path through it")
    target = graph.add_mutually_exclusive_group(required=True)
    target.add_argument("execution", nargs="?")
    target.add_argument("--definition", action="store_true")
    graph.add_argument("-o", "--output", required=True, help=".svg or .png")
    graph.set_defaults(func=cmd_graph)

    serve = sub.add_parser("serve", help="serve the embedded AWS on a local endpoint for other commands")
    serve.add_argument("--local", action="store_true", help="the only mode of `serve`")
    serve.add_argument("--port", type=int, default=5000)
    serve.add_argument("--source-dsn", help="with --target-dsn: store their credentials, write a spec")
    serve.add_argument("--target-dsn")
    serve.add_argument("--spec", help="spec to complete with the DSNs (default: every table, full load)")
    serve.add_argument("--spec-out", default=".pg2rds/local-spec.json")
    serve.add_argument("--time-scale", type=float, default=LOCAL_TIME_SCALE)
    serve.set_defaults(func=cmd_serve)

    demo = sub.add_parser("demo", help="migrate the pagila sample between two temporary local clusters")
    demo.add_argument("--keep", action="store_true", help="leave the clusters running")
    demo.add_argument("--graph", help="draw the execution to this file")
    demo.set_defaults(func=cmd_demo)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
