"""Cleanup after every kind of end: an execution stopped with StopExecution while the data moves, and one
that runs into the state machine's own time-out, skip every Catch; the end-of-execution rule (EventBridge,
delivered by the embedded AWS as in AWS) starts the cleanup state machine, which removes the slot and the
DMS resources of that execution's lineage and gives its lease back."""

import json

import psycopg2
import pytest
from conftest import Database, spec_for
from judge import slots
from served import eventually

from pg2rds_cli.executions import ExecutionReader, read_execution
from pg2rds_emulator.dms_standin import StandInEngine
from pg2rds_emulator.embedded import DEFINITION, EmbeddedAws
from pg2rds_emulator.local_run import dms_leftovers

EXECUTION_TIMEOUT = json.loads(DEFINITION.read_text())["TimeoutSeconds"]


def leases(aws: EmbeddedAws) -> list[dict]:
    return aws.client("dynamodb").scan(TableName=aws.resource_names["MigrationLeaseTable"])["Items"]


def cleanup_runs(aws: EmbeddedAws) -> list[dict]:
    sfn = aws.client("stepfunctions")
    return sfn.list_executions(stateMachineArn=aws.resource_arns["CleanupStateMachine"])["executions"]


def run_until(aws: EmbeddedAws, spec: dict, ended) -> tuple[str, dict]:
    """Start the migration, call ``ended(arn)`` to end it abnormally; returns its ARN and its cleanup run."""
    sfn = aws.client("stepfunctions")
    arn = sfn.start_execution(stateMachineArn=aws.state_machine_arn, name="abnormal", input=json.dumps(spec))[
        "executionArn"
    ]
    ended(arn)
    run = eventually(lambda: [r for r in cleanup_runs(aws) if r["status"] != "RUNNING"], "the cleanup run")
    return arn, run[0]


@pytest.fixture
def databases(source_db: Database, target_db: Database) -> tuple[Database, Database]:
    for db in (source_db, target_db):
        db.execute("CREATE TABLE items (id int PRIMARY KEY, name text)")
    source_db.execute("INSERT INTO items SELECT g, repeat('x', 200) FROM generate_series(1, 50000) g")
    return source_db, target_db


def cdc_spec(databases: tuple[Database, Database]) -> dict:
    """Needs the embedded account (the secrets go there)."""
    return spec_for(*databases, migration_id="ended", migration_type="full-load-and-cdc")


@pytest.mark.slow
def test_stop_execution_during_the_load_is_cleaned_up(databases: tuple[Database, Database]) -> None:
    source_db = databases[0]
    engine = StandInEngine()
    try:
        with EmbeddedAws(engine, time_scale=0.01) as aws:

            def stop(arn: str) -> None:
                eventually(lambda: slots(source_db), "the task's slot")
                aws.client("stepfunctions").stop_execution(
                    executionArn=arn, error="Operator", cause="stopped"
                )

            arn, run = run_until(aws, cdc_spec(databases), stop)
            view = read_execution(aws.client("stepfunctions"), arn)
            assert view.status == "ABORTED", (view.status, view.error, view.cause, view.states[-8:])
            assert run["status"] == "SUCCEEDED"
            assert dms_leftovers(aws, "ended") == []
            assert leases(aws) == []
    finally:
        engine.shutdown()
    assert slots(source_db) == []


@pytest.mark.slow
def test_an_execution_time_out_is_cleaned_up(databases: tuple[Database, Database]) -> None:
    source_db = databases[0]
    engine = StandInEngine()
    try:
        # the state machine's time-out on a clock compressed to about 20 s; the cutover wait is not compressed
        with EmbeddedAws(engine, time_scale=20 / EXECUTION_TIMEOUT) as aws:
            sfn = aws.client("stepfunctions")

            def time_out(arn: str) -> None:
                reader = ExecutionReader(sfn, arn)
                eventually(lambda: reader.read().done, "the time-out", timeout=90)

            arn, run = run_until(aws, cdc_spec(databases), time_out)
            view = read_execution(sfn, arn)
            assert view.status == "TIMED_OUT", (view.states, view.cause)
            assert "Clean up after failure" not in view.states
            assert run["status"] == "SUCCEEDED"
            assert dms_leftovers(aws, "ended") == []
            assert leases(aws) == []
    finally:
        engine.shutdown()
    assert slots(source_db) == []


def slot_creation_sessions(db: Database, waiting: bool) -> int:
    """Sessions of the create-slot Lambda on the source (only those waiting for a lock, if ``waiting``)."""
    rows = db.execute(
        "SELECT count(*) FROM pg_stat_activity "
        "WHERE datname = %s AND application_name = 'pg2rds-create-slot' "
        "AND (NOT %s OR wait_event_type = 'Lock')",
        (db.name, waiting),
    )
    return rows[0][0]


@pytest.mark.slow
def test_stop_execution_while_the_slot_is_being_created_removes_the_slot_created_after_the_stop(
    databases: tuple[Database, Database],
) -> None:
    """StopExecution does not stop a Lambda that is running: "Create replication slot", waiting for a
    transaction open on the source, goes on after the stop and creates the slot once that transaction ends,
    after the end-of-execution cleanup has begun. That slot is removed too."""
    source_db = databases[0]
    open_transaction = psycopg2.connect(source_db.cluster.dsn(source_db.name))
    open_transaction.cursor().execute("SELECT txid_current()")  # creating a slot waits for it to end
    engine = StandInEngine()
    try:
        with EmbeddedAws(engine, time_scale=0.01) as aws:

            def cleanup_has_looked() -> bool:
                ended = [r for r in cleanup_runs(aws) if r["status"] != "RUNNING"]
                return bool(ended) or any("ended_at" in item for item in leases(aws))

            def stop_while_creating_the_slot(arn: str) -> None:
                eventually(lambda: slot_creation_sessions(source_db, waiting=True), "slot creation waiting")
                aws.client("stepfunctions").stop_execution(
                    executionArn=arn, error="Operator", cause="stopped"
                )
                eventually(cleanup_has_looked, "the cleanup's first look at what is left")
                open_transaction.commit()  # the stopped execution's Lambda now creates the slot

            arn, run = run_until(aws, cdc_spec(databases), stop_while_creating_the_slot)
            eventually(lambda: not slot_creation_sessions(source_db, waiting=False), "the Lambda's end")
            view = read_execution(aws.client("stepfunctions"), arn)
            assert view.status == "ABORTED", (view.states, view.error, view.cause, run)
            assert run["status"] == "SUCCEEDED"
            assert dms_leftovers(aws, "ended") == []
            assert leases(aws) == []
    finally:
        engine.shutdown()
        open_transaction.close()
    assert slots(source_db) == []
