"""The ``pg2rds`` command: run a migration locally, or start and follow one in AWS."""

import argparse
import gc
import json
import os
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from importlib.metadata import entry_points
from pathlib import Path
from typing import Any, NoReturn

import boto3
from botocore.exceptions import BotoCoreError, ClientError
from rich.console import Console
from rich.live import Live
from rich.text import Text

from pg2rds_cli import display
from pg2rds_cli.arguments import dsn
from pg2rds_cli.collector import paused
from pg2rds_cli.errors import EXIT_FAILED, EXIT_USAGE, UsageError
from pg2rds_cli.executions import ExecutionView, read_execution, watch

console = Console(stderr=True)


def say_error(message: str) -> None:
    """An error as one red line, printed as it is: messages carry paths and names, whose "[...]" rich
    would otherwise read as markup (dropped, or a MarkupError)."""
    console.print(message, style="red", markup=False, highlight=False, soft_wrap=True)


STACK_NAME = "pg2rds"


def load_spec(path: str | None) -> dict[str, Any] | None:
    """The spec file as JSON data; every way it can be wrong is a :class:`UsageError` naming the file."""
    if not path:
        return None
    try:
        text = Path(path).read_text()
    except FileNotFoundError:
        raise UsageError(f"spec file {path} not found") from None
    except OSError as error:
        raise UsageError(f"spec file {path} cannot be read: {error.strerror}") from None
    try:
        spec = json.loads(text)
    except json.JSONDecodeError as error:
        raise UsageError(
            f"spec file {path} is not JSON: {error.msg} at line {error.lineno} column {error.colno}"
        ) from None
    if not isinstance(spec, dict):
        raise UsageError(f"spec file {path} must hold a JSON object, not {type(spec).__name__}")
    return spec


def print_json(data: Any) -> None:
    """Machine-readable results go to stdout (the rich display goes to stderr)."""
    print(json.dumps(data, indent=2, default=str))


def _follow(sfn: Any, arn: str) -> ExecutionView:
    with Live(console=console, refresh_per_second=4, transient=False) as live:
        return watch(sfn, arn, lambda view: live.update(display.live_panel(view)), interval_seconds=5)


def finish(view: ExecutionView, as_json: bool) -> int:
    if as_json:
        print_json(view.record)
    display.summary(console, view)
    return 0 if view.status == "SUCCEEDED" else 1


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

    spec = load_spec(args.spec)
    try:
        migration_id = parse_spec(spec).migration_id  # fail here, naming the field, not in the first state
    except SpecInvalid as error:
        raise UsageError(str(error)) from None
    sfn = boto3.client("stepfunctions")
    arn = sfn.start_execution(
        stateMachineArn=_state_machine_arn(args.state_machine_arn),
        name=f"{migration_id}-{time.strftime('%Y%m%dT%H%M%S', time.gmtime())}",  # readable in the console
        input=json.dumps(spec),
    )["executionArn"]
    if args.json and not args.watch:
        print_json({"executionArn": arn})
    else:
        print(arn)
    if args.watch:
        return finish(_follow(sfn, arn), as_json=args.json)
    return 0


def cmd_status(args: argparse.Namespace) -> int:
    view = read_execution(boto3.client("stepfunctions"), args.execution)
    if view.done:
        return finish(view, args.json)
    if args.json:
        print_json({"status": view.status, "current_state": view.current_state, **view.record})
    else:
        console.print(display.live_panel(view))
    return 0


def cmd_watch(args: argparse.Namespace) -> int:
    return finish(_follow(boto3.client("stepfunctions"), args.execution), args.json)


def cmd_cutover(args: argparse.Namespace) -> int:
    from pg2rds_cli.cutover import NotWaitingForCutover, send_decision

    try:
        decision = send_decision(
            boto3.client("stepfunctions"), args.execution, abort=args.abort, reason=args.reason
        )
    except NotWaitingForCutover as error:
        say_error(str(error))
        return EXIT_FAILED
    if args.json:
        print_json({"executionArn": args.execution, "decision": decision})
    console.print(
        "Aborted: the migration cleans up and ends FAILED (CutoverAborted)."
        if decision == "aborted"
        else "Cutting over: replication stops once every change is applied; then the target is finished "
        "and verified."
    )
    return 0


def cmd_graph(args: argparse.Namespace) -> int:
    from pg2rds_cli.graph import render_definition, render_execution

    if args.definition:
        render_definition(args.output)
    else:
        render_execution(read_execution(boto3.client("stepfunctions"), args.execution), args.output)
    if args.json:
        print_json({"output": args.output})
    console.print(Text(f"Graph written to {args.output}"))
    return 0


def cmd_check(args: argparse.Namespace) -> int:
    """Exit 0 when nothing is fatal, 1 when something is, 2 when the spec is invalid."""
    from pg2rds.errors import Pg2RdsError, SpecInvalid
    from pg2rds_cli.check import run_check

    try:
        source_report, target_report = run_check(args.source_dsn, args.target_dsn, load_spec(args.spec))
    except SpecInvalid as error:
        raise UsageError(str(error)) from None
    except Pg2RdsError as error:  # unreachable servers: the server's message, never the password
        say_error(f"{type(error).__name__}: {error}")
        return EXIT_FAILED
    record = {"source_report": source_report.model_dump(), "target_report": target_report.model_dump()}
    if args.json:
        print_json(record)
    fatal = len(source_report.fatal) + len(target_report.fatal)
    display.findings(console, record)
    if fatal:
        console.print(f"[red]Check FAILED: {fatal} fatal finding(s); fix them before migrating.[/red]")
        return 1
    console.print("[green]Check passed: nothing fatal.[/green] Nothing was created or changed.")
    return 0


class _Parser(argparse.ArgumentParser):
    """argparse, but a usage error is one line (what is wrong, and where help is), exit 2."""

    def error(self, message: str) -> NoReturn:
        self.exit(EXIT_USAGE, f"{self.prog}: {message} (see {self.prog} --help)\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="pg2rds", description=__doc__)
    parser.add_argument("--debug", action="store_true", help="show a traceback on any error")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    start = sub.add_parser("start", help="start a migration on the deployed state machine")
    start.add_argument("spec")
    start.add_argument(
        "--state-machine-arn", help=f"default: the {STACK_NAME} stack's StateMachineArn output"
    )
    start.add_argument("--watch", action="store_true")
    start.add_argument("--json", action="store_true", help="print the result as JSON on stdout")
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
    cutover.add_argument("--json", action="store_true", help="print the decision sent as JSON on stdout")
    cutover.set_defaults(func=cmd_cutover)

    check = sub.add_parser(
        "check", help="run a migration's checks against two databases (no AWS; creates nothing)"
    )
    check.add_argument("spec", nargs="?", help="migration spec (JSON); its tables and task options apply")
    check.add_argument(
        "--source-dsn", required=True, type=dsn, help="libpq DSN; no password: PGPASSWORD/~/.pgpass"
    )
    check.add_argument("--target-dsn", required=True, type=dsn)
    check.add_argument("--json", action="store_true", help="also print both reports as JSON")
    check.set_defaults(func=cmd_check)

    graph = sub.add_parser("graph", help="draw the state machine, or an execution's path through it")
    target = graph.add_mutually_exclusive_group(required=True)
    target.add_argument("execution", nargs="?")
    target.add_argument("--definition", action="store_true")
    graph.add_argument("-o", "--output", required=True, help=".svg or .png")
    graph.add_argument("--json", action="store_true", help="print the file written as JSON on stdout")
    graph.set_defaults(func=cmd_graph)

    for plugin in entry_points(group="pg2rds.commands"):
        plugin.load()(sub)  # the emulator adds run --local, serve and demo when it is installed
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run one command. User errors are one line on stderr (exit 2), a failed migration or AWS call exit 1;
    a traceback only with ``--debug``."""
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except UsageError as error:
        if args.debug:
            raise
        say_error(f"pg2rds: {error}")
        return EXIT_USAGE
    except KeyboardInterrupt:
        if args.debug:
            raise
        console.print("[red]pg2rds: interrupted[/red]")
        return 130
    except (BotoCoreError, ClientError) as error:
        if args.debug:
            raise
        say_error(f"pg2rds: AWS said: {error}")
        return EXIT_FAILED
    except Exception as error:
        if args.debug:
            raise
        say_error(f"pg2rds: {type(error).__name__}: {error} (run with --debug for the traceback)")
        return EXIT_FAILED


#: Whether this process is the ``pg2rds`` command's alone (:func:`run`), not a caller of :func:`main`.
_COMMAND_PROCESS = False


def imports_done() -> None:
    """A command's heavy imports are done (moto, botocore's models, the handlers: about 270,000 objects
    that live as long as the process). In the command's own process they are moved out of the cyclic
    collector's sight (``gc.freeze``): every full collection during a local run traversed them all, 0.2-0.4 s
    of a cold start-up. Not when :func:`main` is called in a longer-lived process (tests), whose objects
    must stay collectable."""
    if _COMMAND_PROCESS:
        gc.freeze()


@contextmanager
def heavy_imports() -> Iterator[None]:
    """A local command's heavy imports (the emulator: moto, the handlers): loaded with the collector paused
    (:func:`~pg2rds_cli.collector.paused`), then out of its sight (:func:`imports_done`)."""
    with paused():
        yield
    imports_done()


def run() -> NoReturn:
    """The ``pg2rds`` command: :func:`main`, then the process ends. The collector is told first that
    nothing it holds will be freed before then (``gc.freeze``): finalizing what a local run had created
    (moto, botocore's models, about 270,000 objects) one by one took 1 s after the run had returned."""
    global _COMMAND_PROCESS
    _COMMAND_PROCESS = True
    code = main()
    gc.freeze()
    sys.exit(code)


if __name__ == "__main__":
    run()
