"""``pg2rds run --local``: one migration through the embedded AWS, against real PostgreSQL servers.

Each DSN becomes a secret in the embedded Secrets Manager (host, port, dbname, username, password, as
RDS and DMS lay it out) and the spec names only the secret, exactly as in AWS; from there on the run is
the deployed application's: the ASL, the handlers, the DMS API.
"""

import json
import os
import shutil
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psycopg2
from botocore.exceptions import ClientError
from psycopg2.extensions import parse_dsn

from pg2rds.naming import ResourceNames
from pg2rds.postgres.slots import drop_slot_statement
from pg2rds.tls import SCRATCH_DIR_VARIABLE
from pg2rds_cli.cutover import WAITING_STATE, send_decision
from pg2rds_cli.errors import UsageError
from pg2rds_cli.executions import ExecutionView, watch
from pg2rds_cli.passwords import password_of
from pg2rds_emulator import LOCAL_TIME_SCALE
from pg2rds_emulator.dms_engine import DmsEngine
from pg2rds_emulator.embedded import EmbeddedAws, database_secret
from pg2rds_emulator.passfile import without_password

#: Local polling: short intervals (the clock is compressed too), same backoff logic as in AWS. The first
#: waits (the instance, the connection tests, the task's start: one each, as the stand-in reports each
#: asynchronous step once in progress) take 2 s of the compressed clock, 0.02 s here, instead of 5 s: 0.14 s
#: off every local run; the cap, which decides how soon a long load's end is seen, is unchanged.
LOCAL_POLLING = {"initial_seconds": 2, "max_seconds": 30, "backoff": 1.5}

#: How often a local run reads its execution (to show it, and to see the cutover offer). Each read is two
#: calls of the embedded account, about 13 ms of CPU taken from the databases the run shares the cores
#: with; its end is seen at once whatever the interval (``EmbeddedAws.sleep_until_an_end``).
LOCAL_WATCH_SECONDS = 0.5


#: Asked while a local CDC migration waits for the operator: "cutover", "abort", or None (not yet).
Decide = Callable[[ExecutionView], str | None]

#: How long an interrupted run may spend removing what it created before it gives up and says what is left.
ABORT_CLEANUP_SECONDS = 45


class Terminated(BaseException):
    """SIGTERM while a local migration runs; unwinds the run like Ctrl-C's ``KeyboardInterrupt`` does."""


class LocalRunAborted(Exception):
    """The local run was interrupted (Ctrl-C, SIGTERM, end of input, an error) and its cleanup has run."""

    def __init__(self, reason: str, removed: list[str], left: list[str]) -> None:
        super().__init__(reason)
        self.reason = reason
        self.removed = removed
        self.left = left


def _say(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def default_migration_id() -> str:
    return "local-" + datetime.now(UTC).strftime("%Y%m%d-%H%M%S")


def secret_of(dsn: str, side: str) -> dict[str, Any]:
    """What a DSN says about a database, as the secret RDS and DMS would hold for it. A DSN without its
    password is connected to, to learn the one libpq finds: if that fails (a wrong password, a server
    that is not there), the run ends here, before anything is created, with libpq's reason on one line."""
    parts = parse_dsn(dsn)
    user = parts.get("user", "postgres")
    where = {"host": parts.get("host", "127.0.0.1"), "port": int(parts.get("port", 5432))}
    dbname = parts.get("dbname", user)
    try:
        password = password_of(dsn)
    except psycopg2.OperationalError as error:
        raise UsageError(
            f"cannot connect to the {side} database {dbname!r} at {where['host']}:{where['port']} as "
            f"{user!r}: {' '.join(str(error).split())}"
        ) from None
    return database_secret(**where, dbname=dbname, username=user, password=password)


def database_ref(dsn: str, secret_arn: str) -> dict[str, Any]:
    """The spec's view of a DSN: the secret that now holds its server and credentials, and its TLS mode."""
    sslmode = parse_dsn(dsn).get("sslmode", "disable")
    return {
        "secret_arn": secret_arn,
        "ssl_mode": "none" if sslmode in ("disable", "allow", "prefer") else sslmode,
    }


def store_ca_bundle(aws: EmbeddedAws, dsn: str, name: str) -> dict[str, str]:
    """A verifying DSN's CA bundle (its ``sslrootcert``, else libpq's ``~/.postgresql/root.crt``) where
    the deployed app takes it: in a secret for the functions, imported into DMS for the endpoint."""
    path = Path(parse_dsn(dsn).get("sslrootcert") or Path.home() / ".postgresql" / "root.crt")
    pem = path.read_text()
    secret = aws.client("secretsmanager").create_secret(Name=f"pg2rds/{name}-ca", SecretString=pem)
    imported = aws.client("dms").import_certificate(CertificateIdentifier=f"{name}-ca", CertificatePem=pem)
    return {"ssl_root_cert": secret["ARN"], "certificate_arn": imported["Certificate"]["CertificateArn"]}


def secrets_of(source_dsn: str, target_dsn: str) -> dict[str, dict[str, Any]]:
    """Both DSNs' secrets, passwords resolved as libpq resolves them (``PGPASSWORD``, ``~/.pgpass``): to
    be read before the embedded account opens, which hides the shell's libpq settings from what runs in
    it (:class:`~pg2rds_emulator.embedded.EmbeddedAws`)."""
    return {"source": secret_of(source_dsn, "source"), "target": secret_of(target_dsn, "target")}


def build_spec(
    aws: EmbeddedAws,
    source_dsn: str,
    target_dsn: str,
    spec: dict[str, Any] | None,
    secrets: dict[str, dict[str, Any]],
) -> dict[str, Any]:
    """Complete a (possibly empty) spec with the two DSNs' secrets (``secrets``, read by :func:`secrets_of`
    before the account opened) and fast local polling."""
    spec = dict(spec or {})
    spec.setdefault("migration_id", default_migration_id())
    refs = {}
    for side, dsn in (("source", source_dsn), ("target", target_dsn)):
        arn = aws.put_secret(f"pg2rds/{spec['migration_id']}/{side}", secrets[side])
        refs[side] = database_ref(dsn, arn)
        if refs[side]["ssl_mode"] in ("verify-ca", "verify-full"):
            refs[side].update(store_ca_bundle(aws, dsn, f"{spec['migration_id']}-{side}"))
    spec["source"], spec["target"] = refs["source"], refs["target"]
    spec.setdefault("polling", LOCAL_POLLING)
    return spec


def run_local(
    source_dsn: str,
    target_dsn: str,
    spec: dict[str, Any] | None,
    engine: DmsEngine | None = None,
    on_update: Callable[[ExecutionView], None] = lambda view: None,
    time_scale: float = LOCAL_TIME_SCALE,
    timeout_seconds: float | None = None,
    decide: Decide | None = None,
    notify: Callable[[str], None] = _say,
    before_start: Callable[[], None] = lambda: None,
) -> tuple[ExecutionView, list[str]]:
    """Run one migration; returns the final view and what the embedded account still holds (should be []).

    ``before_start`` is called once the account is up, before the execution starts: what the execution
    needs in place (the target's tables) can be made ready meanwhile, and an error it raises ends the run
    before anything is created.

    ``decide`` is asked, while the execution waits for the cutover decision, for "cutover", "abort" or
    None (not yet); without it a CDC migration waits until its cutover timeout, as in AWS.

    Whatever ends the run early (Ctrl-C, SIGTERM, end of input at the prompt, an error) stops the execution
    and runs its cleanup, then raises :class:`LocalRunAborted`; ``notify`` says what is being removed."""
    if engine is None:
        from pg2rds_emulator.dms_standin import StandInEngine

        engine = StandInEngine()
    try:
        secrets = secrets_of(source_dsn, target_dsn)
        with EmbeddedAws(engine, time_scale=time_scale) as aws, sigterm_interrupts():
            full_spec = build_spec(aws, source_dsn, target_dsn, spec, secrets)
            before_start()
            sfn = aws.client("stepfunctions")
            name = f"{full_spec['migration_id']}-{int(time.time())}"
            arn = sfn.start_execution(
                stateMachineArn=aws.state_machine_arn, name=name, input=json.dumps(full_spec)
            )["executionArn"]
            try:
                view = watch(
                    sfn,
                    arn,
                    _deciding(sfn, arn, on_update, decide),
                    interval_seconds=LOCAL_WATCH_SECONDS,
                    timeout_seconds=timeout_seconds,
                    sleep=aws.sleep_until_an_end,
                )
            except (KeyboardInterrupt, Terminated, EOFError, Exception) as error:
                reason = interruption_reason(error)
                names = ResourceNames(full_spec["migration_id"])
                notify(
                    f"{reason}: aborting the migration and removing what it created (DMS task "
                    f"{names.task}, endpoints, instance, slot {names.slot} and publication "
                    f"{names.publication} on the source). Ctrl-C again to exit at once."
                )
                with _second_interrupt_exits(full_spec, source_dsn, notify):
                    removed, left = abort_and_clean(aws, arn, full_spec, reason, time_scale)
                raise LocalRunAborted(reason, removed, left) from None
            leftovers = dms_leftovers(aws, full_spec["migration_id"])
            return view, leftovers
    finally:
        shutdown = getattr(engine, "shutdown", None)
        if shutdown:
            shutdown()


def interruption_reason(error: BaseException) -> str:
    """What ended the run, in the operator's words."""
    if isinstance(error, KeyboardInterrupt):
        return "Interrupted (Ctrl-C)"
    if isinstance(error, Terminated):
        return "Terminated (SIGTERM)"
    if isinstance(error, EOFError):
        return "End of input at the cutover prompt"
    return f"Stopped by an error ({type(error).__name__}: {error})"


@contextmanager
def sigterm_interrupts() -> Iterator[None]:
    """SIGTERM unwinds the run (and so runs its cleanup) instead of killing the process mid-migration."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def terminate(signum: int, frame: Any) -> None:
        raise Terminated()

    previous = signal.signal(signal.SIGTERM, terminate)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def drop_statements(spec: dict[str, Any]) -> list[str]:
    """The SQL that removes from the source what a local run may have left there (run it as the source's
    owner of the slot, in its database)."""
    names = ResourceNames(spec["migration_id"])
    return [drop_slot_statement(names.slot), f"DROP PUBLICATION IF EXISTS {names.publication};"]


@contextmanager
def _second_interrupt_exits(
    spec: dict[str, Any], source_dsn: str, notify: Callable[[str], None]
) -> Iterator[None]:
    """While the cleanup runs, a second Ctrl-C (or SIGTERM) exits at once, saying how to finish by hand.

    The message is composed before the handler is installed: a handler that failed would raise inside the
    cleanup it interrupts (the spec's source is a secret's ARN, not a server), leaving the slot behind with
    nobody told. The source is named by its DSN without the password."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    where, _ = without_password(source_dsn)
    message = (
        "Exiting without finishing the cleanup. Remove what may be left on the source "
        f"(psql '{where}'; if the slot is still active, wait for its reader to go and run it again) with:\n  "
        + "\n  ".join(drop_statements(spec))
    )

    def exit_now(signum: int, frame: Any) -> None:
        notify(message)
        scratch = os.environ.get(SCRATCH_DIR_VARIABLE)  # the account's files (CA bundles): nothing else waits
        if scratch:
            shutil.rmtree(scratch, ignore_errors=True)
        os._exit(130)

    previous = {sig: signal.signal(sig, exit_now) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def abort_and_clean(
    aws: EmbeddedAws, arn: str, spec: dict[str, Any], reason: str, time_scale: float
) -> tuple[list[str], list[str]]:
    """Stop the execution, then run the template's cleanup function until nothing of this migration is
    left (or ``ABORT_CLEANUP_SECONDS`` pass). Returns (removed, left)."""
    with suppress(ClientError):  # it may have ended already
        aws.client("stepfunctions").stop_execution(executionArn=arn, error="Interrupted", cause=reason)
    # the execution is the first of its chain: its ARN is the lineage its resources are tagged with
    state: dict[str, Any] = {
        "spec": spec,
        "lineage": arn,
        "error": {"Error": "Interrupted", "Cause": reason},
    }
    lam = aws.client("lambda")
    deadline = time.monotonic() + ABORT_CLEANUP_SECONDS
    while True:
        response = lam.invoke(
            FunctionName=aws.function_arns["CleanupFunction"], Payload=json.dumps(state).encode()
        )
        result = json.loads(response["Payload"].read())
        if response.get("FunctionError"):
            removed = (state.get("cleanup") or {}).get("removed", [])
            return removed, [f"cleanup failed: {result.get('errorMessage', result)}"]
        state["cleanup"] = result
        if result["ready"] or time.monotonic() > deadline:
            return result["removed"], result["remaining"]
        time.sleep(max(0.1, result["wait_seconds"] * time_scale))


def _deciding(
    sfn: Any, arn: str, on_update: Callable[[ExecutionView], None], decide: Decide | None
) -> Callable[[ExecutionView], None]:
    """``on_update``, plus: ask ``decide`` while the execution waits for cutover, and send its answer once."""
    sent: list[str] = []

    def update(view: ExecutionView) -> None:
        on_update(view)
        if decide is None or sent or view.done or view.current_state != WAITING_STATE:
            return
        decision = decide(view)
        if decision:
            sent.append(send_decision(sfn, arn, abort=decision == "abort", reason="decided locally"))

    return update


def dms_leftovers(aws: EmbeddedAws, migration_id: str) -> list[str]:
    """DMS resources of this migration still in the (embedded) account."""
    names = ResourceNames(migration_id)
    dms = aws.client("dms")
    left = [
        f"task {t['ReplicationTaskIdentifier']}"
        for t in dms.describe_replication_tasks()["ReplicationTasks"]
        if t["ReplicationTaskIdentifier"] == names.task
    ]
    left += [
        f"endpoint {e['EndpointIdentifier']}"
        for e in dms.describe_endpoints()["Endpoints"]
        if e["EndpointIdentifier"] in (names.source_endpoint, names.target_endpoint)
    ]
    left += [
        f"instance {i['ReplicationInstanceIdentifier']}"
        for i in dms.describe_replication_instances()["ReplicationInstances"]
        if i["ReplicationInstanceIdentifier"] == names.instance
    ]
    return left
