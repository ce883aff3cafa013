"""``pg2rds run --local``: one migration through the embedded AWS, against real PostgreSQL servers.

Each DSN becomes a secret in the embedded Secrets Manager (host, port, dbname, username, password, as
RDS and DMS lay it out) and the spec names only the secret, exactly as in AWS; from there on the run is
the deployed application's: the ASL, the handlers, the DMS API.
"""

import json
import shutil
import subprocess
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from psycopg2.extensions import parse_dsn

from pg2rds.naming import ResourceNames
from pg2rds_cli.cutover import WAITING_STATE, send_decision
from pg2rds_cli.executions import ExecutionView, watch
from pg2rds_emulator.dms_engine import DmsEngine
from pg2rds_emulator.embedded import EmbeddedAws, database_secret
from pg2rds_emulator.pgcluster import find_bindir

#: Local polling: short intervals (the clock is compressed too), same backoff logic as in AWS.
LOCAL_POLLING = {"initial_seconds": 5, "max_seconds": 30, "backoff": 1.5}
LOCAL_TIME_SCALE = 0.01

#: Asked while a local CDC migration waits for the operator: "cutover", "abort", or None (not yet).
Decide = Callable[[ExecutionView], str | None]


def default_migration_id() -> str:
    return "local-" + datetime.now(UTC).strftime("%Y%m%d-%H%M%S")


def secret_of(dsn: str) -> dict[str, Any]:
    """What a DSN says about a database, as the secret RDS and DMS would hold for it."""
    parts = parse_dsn(dsn)
    user = parts.get("user", "postgres")
    return database_secret(
        host=parts.get("host", "127.0.0.1"),
        port=int(parts.get("port", 5432)),
        dbname=parts.get("dbname", user),
        username=user,
        password=parts.get("password", ""),
    )


def database_ref(dsn: str, secret_arn: str) -> dict[str, Any]:
    """The spec's view of a DSN: the secret that now holds its server and credentials, and its TLS mode."""
    sslmode = parse_dsn(dsn).get("sslmode", "disable")
    return {
        "secret_arn": secret_arn,
        "ssl_mode": "none" if sslmode in ("disable", "allow", "prefer") else sslmode,
    }


def build_spec(
    aws: EmbeddedAws, source_dsn: str, target_dsn: str, spec: dict[str, Any] | None
) -> dict[str, Any]:
    """Complete a (possibly empty) spec with the two DSNs' secrets and fast local polling."""
    spec = dict(spec or {})
    spec.setdefault("migration_id", default_migration_id())
    refs = {}
    for side, dsn in (("source", source_dsn), ("target", target_dsn)):
        arn = aws.put_secret(f"pg2rds/{spec['migration_id']}/{side}", secret_of(dsn))
        refs[side] = database_ref(dsn, arn)
    spec["source"], spec["target"] = refs["source"], refs["target"]
    spec.setdefault("polling", LOCAL_POLLING)
    return spec


def copy_schema(source_dsn: str, target_dsn: str) -> None:
    """``pg_dump --schema-only | psql``: the runbook's way to create the target schema before DMS loads."""
    bindir = find_bindir()
    pg_dump = shutil.which("pg_dump", path=str(bindir)) or "pg_dump"
    psql = shutil.which("psql", path=str(bindir)) or "psql"
    dump = subprocess.run(
        [pg_dump, "--schema-only", "--no-owner", "--no-privileges", "-d", source_dsn],
        capture_output=True,
        check=True,
    )
    subprocess.run(
        [psql, "-X", "-q", "-v", "ON_ERROR_STOP=1", "-d", target_dsn],
        input=dump.stdout,
        capture_output=True,
        check=True,
    )


def run_local(
    source_dsn: str,
    target_dsn: str,
    spec: dict[str, Any] | None,
    engine: DmsEngine | None = None,
    on_update: Callable[[ExecutionView], None] = lambda view: None,
    time_scale: float = LOCAL_TIME_SCALE,
    timeout_seconds: float | None = None,
    decide: Decide | None = None,
) -> tuple[ExecutionView, list[str]]:
    """Run one migration; returns the final view and what the embedded account still holds (should be []).

    ``decide`` is asked, while the execution waits for the cutover decision, for "cutover", "abort" or
    None (not yet); without it a CDC migration waits until its cutover timeout, as in AWS."""
    if engine is None:
        from pg2rds_emulator.dms_standin import StandInEngine

        engine = StandInEngine()
    try:
        with EmbeddedAws(engine, time_scale=time_scale) as aws:
            full_spec = build_spec(aws, source_dsn, target_dsn, spec)
            sfn = aws.client("stepfunctions")
            name = f"{full_spec['migration_id']}-{int(time.time())}"
            arn = sfn.start_execution(
                stateMachineArn=aws.state_machine_arn, name=name, input=json.dumps(full_spec)
            )["executionArn"]
            view = watch(
                sfn,
                arn,
                _deciding(sfn, arn, on_update, decide),
                interval_seconds=0.25,
                timeout_seconds=timeout_seconds,
            )
            leftovers = dms_leftovers(aws, full_spec["migration_id"])
            return view, leftovers
    finally:
        shutdown = getattr(engine, "shutdown", None)
        if shutdown:
            shutdown()


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
