"""The real ASL definition, executed by moto's Step Functions interpreter, handlers in process.

DMS is moto's with the FakeEngine (nothing is copied), PostgreSQL is real: validate-source, prep-target,
finish-target and the slot cleanup talk to the test clusters. Each test asserts what a user would look
at: the execution's status, its Error and Cause, and what is left in the account and on the source.
"""

import json
import logging
import uuid
from collections.abc import Iterator

import boto3
import pytest
from conftest import REGION, Database, secret_for, spec_for
from judge import account_dms_resources, chunks_handed_to_the_map
from psycopg2 import sql

from pg2rds.naming import ResourceNames
from pg2rds_cli.executions import ExecutionView, history, watch
from pg2rds_emulator.embedded import EmbeddedAws
from pg2rds_emulator.moto_dms import FakeEngine

TABLE = 'CREATE TABLE "Order Items" (id int PRIMARY KEY, "Größe" text)'


@pytest.fixture
def engine() -> FakeEngine:
    return FakeEngine()


@pytest.fixture
def embedded(engine: FakeEngine) -> Iterator[EmbeddedAws]:
    with EmbeddedAws(engine, time_scale=0.01) as aws:
        yield aws


def run(aws: EmbeddedAws, execution_input: dict) -> ExecutionView:
    sfn = aws.client("stepfunctions")
    arn = sfn.start_execution(stateMachineArn=aws.state_machine_arn, input=json.dumps(execution_input))[
        "executionArn"
    ]
    return watch(sfn, arn, lambda view: None, interval_seconds=0.1, timeout_seconds=120)


def history_text(aws: EmbeddedAws, view: ExecutionView) -> str:
    events = aws.client("stepfunctions").get_execution_history(executionArn=view.arn, maxResults=1000)[
        "events"
    ]
    return json.dumps(events, default=str)


def slots(db: Database) -> list[str]:
    return [
        row[0]
        for row in db.execute("SELECT slot_name FROM pg_replication_slots WHERE database = %s", (db.name,))
    ]


@pytest.fixture
def databases(source_db: Database, target_db: Database) -> tuple[Database, Database]:
    source_db.execute(TABLE)
    target_db.execute(TABLE)
    return source_db, target_db


def test_full_load_succeeds_and_leaves_nothing_behind(embedded, databases) -> None:
    source, target = databases
    spec = spec_for(source, target, migration_id="happy")
    view = run(embedded, spec)

    assert view.status == "SUCCEEDED", view.cause
    output = view.output
    assert output["source_report"]["tables_selected"] == 1
    assert output["target_report"]["after_connect_script"].startswith("SET session_replication_role")
    assert output["progress"]["outcome"] == "full-load-complete"
    assert output["verification"]["tables_checked"] == 1 and output["verification"]["mismatch_count"] == 0
    assert output["cleanup"]["ready"] is True
    assert set(view.states) >= {
        "Validate source",
        "Prepare target",
        "Create replication instance",
        "Create endpoints",
        "Test connections",
        "Start replication task",
        "Check task progress",
        "Finish the target",
        "Clean up",
        "Migration complete",
    }
    assert account_dms_resources(embedded) == []
    assert slots(source) == []


@pytest.fixture
def own_logins(databases) -> Iterator[dict[str, str]]:
    """A superuser login with its own password on each side (the clusters' shared password would make a
    leak of one side's look like the other's), in the secrets of a spec; dropped afterwards."""
    passwords = {}
    for side, db in zip(("source", "target"), databases, strict=True):
        password = f"{side}-only-password-{uuid.uuid4().hex}"
        db.execute(
            sql.SQL("CREATE ROLE {} LOGIN SUPERUSER PASSWORD {}").format(
                sql.Identifier(f"pg2rds_{side}_login"), sql.Literal(password)
            )
        )
        passwords[side] = password
    yield passwords
    for side, db in zip(("source", "target"), databases, strict=True):
        db.execute(sql.SQL("DROP ROLE {}").format(sql.Identifier(f"pg2rds_{side}_login")))


def test_neither_password_in_input_output_history_or_logs(
    embedded, databases, own_logins, capfd, caplog
) -> None:
    source, target = databases
    spec = spec_for(source, target)
    for side, db in (("source", source), ("target", target)):
        spec[side]["secret_arn"] = secret_for(db, f"pg2rds_{side}_login", own_logins[side])
    # the functions' own logs at their most verbose (in Lambda they go to CloudWatch Logs); botocore's
    # DEBUG logs, which print response bodies, are off in Lambda as here
    logging.getLogger("pg2rds").setLevel(logging.DEBUG)
    caplog.set_level(logging.INFO)
    view = run(embedded, spec)
    assert view.status == "SUCCEEDED", view.cause
    captured = capfd.readouterr()
    records = [json.dumps(record.__dict__, default=str) for record in caplog.records]  # with their extras
    logs = "\n".join([captured.out, captured.err, *records])
    assert caplog.text.count("phase finished") >= 9  # every handler's log was captured
    for side, password in own_logins.items():
        assert password not in history_text(embedded, view), side
        assert password not in json.dumps(view.output), side
        assert password not in logs, side


def test_invalid_spec_fails_at_once_naming_the_field(embedded, databases) -> None:
    source, target = databases
    spec = spec_for(source, target, migration_id="Not Valid!")
    spec["source"]["port"] = "five"
    view = run(embedded, spec)

    assert view.status == "FAILED"
    assert view.error == "SpecInvalid"
    assert "migration_id" in view.cause and "source.port" in view.cause
    assert "Clean up after failure" not in view.states
    assert boto3.client("dms", region_name=REGION).describe_replication_instances().get(
        "ReplicationInstances"
    ) in (None, [])


def assert_failed_and_clean(
    aws: EmbeddedAws, view: ExecutionView, error: str, state: str, migration_id: str
) -> None:
    assert view.status == "FAILED"
    assert view.error == error, view.cause
    assert view.failed_state == state
    assert "Clean up after failure" in view.states
    assert account_dms_resources(aws) == []


def test_source_not_ready_names_the_setting_and_fix(embedded, replica_source_db, target_db) -> None:
    replica_source_db.execute(TABLE)
    target_db.execute(TABLE)
    spec = spec_for(replica_source_db, target_db, migration_id="notready", migration_type="full-load-and-cdc")
    view = run(embedded, spec)
    assert_failed_and_clean(embedded, view, "SourceNotReady", "Validate source", "notready")
    assert "wal_level" in view.cause and "logical" in view.cause and "Fix:" in view.cause


def test_missing_target_table_fails_in_prep_target(embedded, source_db, target_db) -> None:
    source_db.execute(TABLE)
    view = run(embedded, spec_for(source_db, target_db, migration_id="notarget"))
    assert_failed_and_clean(embedded, view, "TargetNotReady", "Prepare target", "notarget")
    assert "Order Items" in view.cause


def test_foreign_instance_with_our_name_is_refused_and_kept(embedded, databases) -> None:
    source, target = databases
    names = ResourceNames("conflict")
    dms = embedded.client("dms")
    dms.create_replication_instance(
        ReplicationInstanceIdentifier=names.instance, ReplicationInstanceClass="dms.t3.micro"
    )
    view = run(embedded, spec_for(source, target, migration_id="conflict"))
    assert view.status == "FAILED" and view.error == "ResourceConflict", view.cause
    assert view.failed_state == "Create replication instance"
    instances = dms.describe_replication_instances()["ReplicationInstances"]
    assert [i["ReplicationInstanceIdentifier"] for i in instances] == [names.instance]


def test_foreign_endpoint_with_our_name_is_refused_and_kept(embedded, databases) -> None:
    source, target = databases
    names = ResourceNames("epconflict")
    dms = embedded.client("dms")
    dms.create_endpoint(
        EndpointIdentifier=names.source_endpoint,
        EndpointType="source",
        EngineName="postgres",
        ServerName="elsewhere",
        Port=5432,
        DatabaseName="x",
        Username="u",
        Password="p",
    )
    view = run(embedded, spec_for(source, target, migration_id="epconflict"))
    assert view.status == "FAILED" and view.error == "ResourceConflict", view.cause
    assert view.failed_state == "Create endpoints"
    remaining = [e["EndpointIdentifier"] for e in dms.describe_endpoints()["Endpoints"]]
    assert remaining == [names.source_endpoint]
    assert dms.describe_replication_instances().get("ReplicationInstances", []) == []


def test_connection_failure_surfaces_dms_message(embedded, engine, databases) -> None:
    source, target = databases
    engine.fail_connection("target", 'FATAL:  password authentication failed for user "app"')
    view = run(embedded, spec_for(source, target, migration_id="badconn"))
    assert_failed_and_clean(embedded, view, "ConnectionTestFailed", "Test connections", "badconn")
    assert 'password authentication failed for user "app"' in view.cause
    assert "target" in view.cause


def test_foreign_task_with_our_name_is_refused(embedded, databases) -> None:
    source, target = databases
    names = ResourceNames("taskconflict")
    dms = embedded.client("dms")
    dms.create_replication_task(
        ReplicationTaskIdentifier=names.task,
        SourceEndpointArn="arn:aws:dms:us-east-1:123456789012:endpoint:A",
        TargetEndpointArn="arn:aws:dms:us-east-1:123456789012:endpoint:B",
        ReplicationInstanceArn="arn:aws:dms:us-east-1:123456789012:rep:C",
        MigrationType="full-load",
        TableMappings=json.dumps({"rules": []}),
    )
    view = run(embedded, spec_for(source, target, migration_id="taskconflict"))
    assert view.status == "FAILED" and view.error == "ResourceConflict", view.cause
    assert view.failed_state == "Start replication task"
    assert [t["ReplicationTaskIdentifier"] for t in dms.describe_replication_tasks()["ReplicationTasks"]] == [
        names.task
    ]
    assert dms.describe_endpoints().get("Endpoints", []) == []


def test_task_failure_surfaces_last_failure_message(embedded, engine, databases) -> None:
    source, target = databases
    engine.fail_task('Failed to load table "public"."Order Items": duplicate key value')
    view = run(embedded, spec_for(source, target, migration_id="badtask"))
    assert_failed_and_clean(embedded, view, "TaskFailed", "Check task progress", "badtask")
    assert "duplicate key value" in view.cause


def test_verification_failure_names_the_table(embedded, databases) -> None:
    source, target = databases
    source.execute("""INSERT INTO "Order Items" VALUES (1, 'XL')""")  # the fake engine copies nothing
    view = run(embedded, spec_for(source, target, migration_id="differs"))
    assert_failed_and_clean(embedded, view, "VerificationFailed", "Plan verification", "differs")
    assert "public.Order Items (id) in [-inf, +inf): 1 rows on the source, 0 on the target" in view.cause


def test_verification_runs_chunk_by_chunk_through_the_map_and_names_the_range(embedded, databases) -> None:
    source, target = databases
    # the fake engine copies nothing (nor truncates): the rows are on both sides already, as if loaded
    for db in (source, target):
        db.execute("""INSERT INTO "Order Items" SELECT g, 'M' FROM generate_series(1, 10) g""")
    target.execute("""UPDATE "Order Items" SET "Größe" = 'XL' WHERE id = 7""")
    spec = spec_for(
        source, target, migration_id="chunks", verification_chunk_rows=3, verification_concurrency=2,
        task={"target_table_prep_mode": "TRUNCATE_BEFORE_LOAD"},
    )  # fmt: skip
    view = run(embedded, spec)
    assert_failed_and_clean(embedded, view, "VerificationFailed", "Plan verification", "chunks")
    assert "public.Order Items (id) in [7, 10): same 3 rows, different content" in view.cause
    assert "[4, 7)" not in view.cause and "[10, +inf)" not in view.cause
    chunks = chunks_handed_to_the_map(embedded.client("stepfunctions"), view.arn)
    # read once in block ranges (one, for ten rows), then, its totals differing, again by key range
    assert [c["first_block"] for c in chunks[:1]] == [0] and len(chunks) == 5
    assert [c["lower"] for c in chunks[1:]] == [None, ["4"], ["7"], ["10"]]


KEYED_TABLES = (
    "CREATE TABLE names (name text PRIMARY KEY, v int);"
    "INSERT INTO names SELECT 'n' || lpad(g::text, 3, '0'), g FROM generate_series(1, 30) g;"
    "CREATE TABLE ids (id uuid PRIMARY KEY, v int);"
    "INSERT INTO ids SELECT md5(g::text)::uuid, g FROM generate_series(1, 30) g;"
    "CREATE TABLE pairs (tenant text, n int, v int, PRIMARY KEY (tenant, n));"
    "INSERT INTO pairs SELECT chr(97 + g / 10), mod(g, 10), g FROM generate_series(0, 29) g;"
    "CREATE TABLE parent (code text PRIMARY KEY);"
    "INSERT INTO parent SELECT 'p' || g FROM generate_series(1, 30) g WHERE g <> 7;"
)


def test_any_key_is_verified_range_by_range_through_the_map_naming_ranges_and_constraints(
    embedded, databases
) -> None:
    """Text, uuid and composite keys cut into ranges of verification_chunk_rows, each range one Verify a
    chunk; a changed row names its table and range, a row whose parent is missing (the source has no such
    constraint) names the constraint, the referencing table's range and the row."""
    source, target = databases
    child = "CREATE TABLE child (id int PRIMARY KEY, parent text{});"
    for db, constraint in ((source, ""), (target, " CONSTRAINT child_parent_fk REFERENCES parent (code)")):
        db.execute(KEYED_TABLES + child.format(constraint))
        db.execute(
            "SET session_replication_role = replica;"
            "INSERT INTO child SELECT g, 'p' || g FROM generate_series(1, 30) g"
        )
    target.execute("UPDATE names SET v = -1 WHERE name = 'n015'")
    spec = spec_for(
        source, target, migration_id="keys", verification_chunk_rows=10, verification_concurrency=2,
        task={"target_table_prep_mode": "TRUNCATE_BEFORE_LOAD"},
    )  # fmt: skip
    view = run(embedded, spec)
    assert_failed_and_clean(embedded, view, "VerificationFailed", "Plan verification", "keys")
    assert "1 chunk(s) differ: public.names (name) in ['n011', 'n021'): same 10 rows, different content" in (
        view.cause
    )
    assert (
        "1 foreign key violation(s) on the target: child_parent_fk on public.child (blocks [0, +inf)): "
        "1 rows without a parent in public.parent, e.g. (id)=(7)" in view.cause
    )
    # "Order Items", names, ids, pairs, parent and child (whose foreign key is checked in the same range)
    # one block range each; then names, whose totals differ, three key ranges
    chunks = chunks_handed_to_the_map(embedded.client("stepfunctions"), view.arn)
    assert sorted(c["table_name"] for c in chunks if not c["key"]) == [
        "Order Items",
        "child",
        "ids",
        "names",
        "pairs",
        "parent",
    ]
    assert [c["table_name"] for c in chunks if c["key"]] == ["names"] * 3


def test_many_foreign_key_violations_fail_with_a_bounded_cause(embedded, source_db, target_db) -> None:
    """150 foreign keys violated on the target, each in its own table: the execution fails in Plan
    verification with a cause that names 20 of them and counts the rest."""
    children = 150
    source_db.execute(
        "CREATE TABLE parent (id int PRIMARY KEY);"
        + " ".join(f"CREATE TABLE child_{i:03} (id int PRIMARY KEY, parent_id int);" for i in range(children))
    )
    target_db.execute(
        "CREATE TABLE parent (id int PRIMARY KEY);"
        + " ".join(
            f"CREATE TABLE child_{i:03} (id int PRIMARY KEY, parent_id int REFERENCES parent (id));"
            for i in range(children)
        )
    )
    # as a load with session_replication_role = replica leaves them: rows whose parent is missing, on both
    # sides (the fake engine copies nothing), so only the foreign keys differ
    rows = " ".join(f"INSERT INTO child_{i:03} VALUES (1, 42);" for i in range(children))
    source_db.execute(rows)
    target_db.execute("SET session_replication_role = replica; " + rows)
    spec = spec_for(
        source_db, target_db, migration_id="orphans", task={"target_table_prep_mode": "TRUNCATE_BEFORE_LOAD"}
    )
    view = run(embedded, spec)
    assert_failed_and_clean(embedded, view, "VerificationFailed", "Plan verification", "orphans")
    assert f"{children} foreign key violation(s) on the target" in view.cause
    assert "child_000_parent_id_fkey on public.child_000" in view.cause
    assert f"and {children - 20} more" in view.cause
    assert len(view.cause) < 8_000


def test_rounds_without_chunks_go_round_the_map_until_every_table_is_planned(
    embedded, databases, monkeypatch
) -> None:
    """verification none with rounds of one table: "Order Items" has no foreign key, so its round hands
    the Map no chunk at all; the loop goes on and the next table's foreign key is checked."""
    from pg2rds import phases

    monkeypatch.setattr(phases, "MAX_CHUNKS_PER_ROUND", 1)
    source, target = databases
    for db, constraint in ((source, ""), (target, ' CONSTRAINT z_fk REFERENCES "Order Items" (id)')):
        db.execute(f"CREATE TABLE z (id int PRIMARY KEY, item int{constraint})")
        db.execute("SET session_replication_role = replica; INSERT INTO z VALUES (1, 5)")
    spec = spec_for(
        source, target, migration_id="emptyround", verification="none",
        task={"target_table_prep_mode": "TRUNCATE_BEFORE_LOAD"},
    )  # fmt: skip
    view = run(embedded, spec)
    assert_failed_and_clean(embedded, view, "VerificationFailed", "Plan verification", "emptyround")
    assert (
        "z_fk on public.z (blocks [0, +inf)): 1 rows without a parent in public.Order Items, e.g. (id)=(1)"
        in view.cause
    )
    assert view.states.count("Plan verification") == 3
    assert len(chunks_handed_to_the_map(embedded.client("stepfunctions"), view.arn)) == 1


def verification_events(aws: EmbeddedAws, view: ExecutionView) -> int:
    """Events the execution's history holds from the first Plan verification to the cleanup: what the
    verification rounds cost in the 25,000 events a Standard execution may hold."""
    names = [
        event["stateEnteredEventDetails"]["name"] if event["type"].endswith("StateEntered") else ""
        for event in history(aws.client("stepfunctions"), view.arn)
    ]
    start = names.index("Plan verification")
    return next(i for i, name in enumerate(names) if i > start and name.startswith("Clean up")) - start


def test_verification_history_does_not_grow_with_the_number_of_chunks(embedded, databases) -> None:
    """The same 2,000 rows verified in chunks of 400 and of 40: ten times the chunks, the same events in the
    execution's history (each chunk runs in a child execution of the Distributed Map, with its own
    history; an inline Map added 7 events per chunk, and a 1 TB database of ~7,700 chunks outgrew the
    25,000 events an execution may hold). A difference in one row still names its table and range."""
    source, target = databases
    for db in (source, target):  # the fake engine copies nothing: the rows are on both sides, as if loaded
        db.execute("""INSERT INTO "Order Items" SELECT g, 'M' FROM generate_series(1, 2000) g""")
    target.execute("""UPDATE "Order Items" SET "Größe" = 'XL' WHERE id = 1234""")
    sfn = embedded.client("stepfunctions")
    events, chunks = {}, {}
    for rows, expected_range in ((400, "[1201, 1601): same 400 rows"), (40, "[1201, 1241): same 40 rows")):
        spec = spec_for(
            source, target, migration_id=f"rows{rows}", verification_chunk_rows=rows,
            verification_concurrency=4, task={"target_table_prep_mode": "TRUNCATE_BEFORE_LOAD"},
        )  # fmt: skip
        view = run(embedded, spec)
        assert_failed_and_clean(embedded, view, "VerificationFailed", "Plan verification", f"rows{rows}")
        assert f"1 chunk(s) differ: public.Order Items (id) in {expected_range}, different content" in (
            view.cause
        )
        handed = chunks_handed_to_the_map(sfn, view.arn)  # block ranges, then key ranges (the difference)
        chunks[rows] = (len(handed), sum(1 for chunk in handed if chunk["key"]))
        events[rows] = verification_events(embedded, view)
    assert chunks[400][1] == 5 and chunks[40][1] == 50 and chunks[40][0] > chunks[400][0] + 45, chunks
    assert events[40] == events[400], events  # an inline Map: 45 chunks more, 315 events more


def test_a_chunk_that_fails_fails_the_migration_with_the_functions_message(
    embedded, databases, monkeypatch
) -> None:
    """A chunk's function error, once its retries are spent, fails the migration with the function's error
    name and message (a failed child execution would fail the Map Run with a generic cause): here the
    source's table z is locked ACCESS EXCLUSIVE once the chunks start, so its chunk gives up waiting
    (SourceBusy, retried, then for good) and the cause names the session holding the lock."""
    from pg2rds.postgres import connection
    from pg2rds_emulator import embedded as embedded_module

    monkeypatch.setattr(connection, "SOURCE_LOCK_TIMEOUT_MS", 1_000)
    source, target = databases
    for db in (source, target):
        db.execute("CREATE TABLE z (id int PRIMARY KEY); INSERT INTO z VALUES (1)")
    locker = source.connect()
    locker.autocommit = False
    name = "pg2rds-VerifyChunkFunction"
    verify_chunk = embedded_module._handlers[name]

    def lock_then_verify(event: dict, context: object) -> dict:
        with locker.cursor() as cur:  # a no-op once the transaction holds the lock
            cur.execute("LOCK TABLE z IN ACCESS EXCLUSIVE MODE")
        return verify_chunk(event, context)

    monkeypatch.setitem(embedded_module._handlers, name, lock_then_verify)
    try:
        spec = spec_for(
            source, target, migration_id="chunkfails", task={"target_table_prep_mode": "TRUNCATE_BEFORE_LOAD"}
        )
        view = run(embedded, spec)
        pid = locker.get_backend_pid()
    finally:
        locker.close()
    assert_failed_and_clean(embedded, view, "SourceBusy", "Verify chunks", "chunkfails")
    assert view.cause.startswith("the source was busy: table "), view.cause
    assert (
        f"z is locked ACCESS EXCLUSIVE by pid {pid}" in view.cause
        and "\n" not in view.cause
        and "Traceback" not in view.cause
    )


def test_a_chunk_that_times_out_fails_the_migration_with_the_error_step_functions_gives(
    embedded, databases, monkeypatch
) -> None:
    """An error that is not the function's own (here the Lambda invocation times out: Step Functions'
    States.Timeout, with no function message to read) takes the child's other path, "Return the chunk's
    error", and still fails the migration under that name, after cleanup, instead of being lost."""
    from moto.awslambda_simple.models import LambdaSimpleBackend

    invoke = LambdaSimpleBackend.invoke

    def timing_out(self, function_name: str, *args, **kwargs):
        if function_name.endswith("VerifyChunkFunction"):
            raise TimeoutError("the invocation timed out")
        return invoke(self, function_name, *args, **kwargs)

    monkeypatch.setattr(LambdaSimpleBackend, "invoke", timing_out)
    source, target = databases
    view = run(embedded, spec_for(source, target, migration_id="chunktimeout"))
    # a Fail state cannot raise a States.* name: cleanup says it as StepFunctionsTimeout
    assert_failed_and_clean(embedded, view, "StepFunctionsTimeout", "Verify chunks", "chunktimeout")
    assert view.cause == (
        "verify-chunk ended with States.Timeout on public.Order Items (blocks [0, +inf)), without a "
        "message: see the child executions of the VerifyChunk Map Run"
    )


def test_cleanup_drops_our_slot_after_failure_and_keeps_others(embedded, engine, databases) -> None:
    source, target = databases
    names = ResourceNames("slots")
    source.execute("SELECT pg_create_logical_replication_slot(%s, 'pgoutput')", (names.slot,))
    source.execute("SELECT pg_create_logical_replication_slot('someone_elses', 'pgoutput')")
    engine.fail_task("boom")
    view = run(embedded, spec_for(source, target, migration_id="slots"))
    assert view.status == "FAILED" and view.error == "TaskFailed"
    assert slots(source) == ["someone_elses"]
