"""Full load and ongoing replication through the real state machine: cutover, abort, timeout, continuation.

The pagila test is the product's promise for a live database: the source keeps changing while DMS (the
stand-in, moving real data through a logical replication slot) loads and replicates, the operator cuts
over once the target has caught up, and then the target equals the source, sequences included, with
nothing left behind. The other tests use the fake engine, since they are about the workflow.
"""

import json
import random
import threading
import time
import uuid
from collections.abc import Callable, Iterator

import judge
import pytest
from conftest import Database, spec_for
from judge import account_dms_resources

from pg2rds.dms import progress
from pg2rds_cli import executions
from pg2rds_cli.cutover import WAITING_STATE, NotWaitingForCutover, pending_token, send_decision
from pg2rds_cli.executions import ExecutionReader, ExecutionView, read_execution, watch
from pg2rds_emulator.dms_engine import TableStats
from pg2rds_emulator.dms_standin import StandInEngine
from pg2rds_emulator.embedded import EmbeddedAws
from pg2rds_emulator.moto_dms import FakeEngine
from pg2rds_emulator.sample import load_pagila
from pg2rds_emulator.schema_copy import copy_schema

CDC_POLLING = {"initial_seconds": 2, "max_seconds": 4}


def start(aws: EmbeddedAws, spec: dict) -> str:
    sfn = aws.client("stepfunctions")
    return sfn.start_execution(stateMachineArn=aws.state_machine_arn, input=json.dumps(spec))["executionArn"]


def wait_for_state(aws: EmbeddedAws, arn: str, state: str, timeout: float = 120) -> ExecutionView:
    """The view once the execution is in ``state``; for the cutover wait, once its offer is out too: the
    wait's entry is recorded a moment before the task that publishes its token is scheduled, and a
    decision sent in between finds no token ("not waiting"), as the CLI would before the message came."""
    if state == WAITING_STATE:
        return wait_until(aws, arn, lambda v: v.current_state == state and offered(aws, arn), timeout,
                          what="offered the cutover")  # fmt: skip
    return wait_until(aws, arn, lambda v: v.current_state == state, timeout, what=f"reached {state!r}")


def offered(aws: EmbeddedAws, arn: str) -> bool:
    try:
        pending_token(aws.client("stepfunctions"), arn)
    except NotWaitingForCutover:
        return False
    return True


def finish(aws: EmbeddedAws, arn: str) -> ExecutionView:
    return watch(aws.client("stepfunctions"), arn, lambda v: None, interval_seconds=0.2, timeout_seconds=180)


def source_objects(db: Database) -> tuple[list, list]:
    slots = db.execute("SELECT slot_name FROM pg_replication_slots WHERE database = %s", (db.name,))
    publications = db.execute("SELECT pubname FROM pg_publication")
    return slots, publications


class Writer(threading.Thread):
    """The application: inserts, updates and deletes in several tables (a partitioned one too) until told
    to stop, each change its own transaction."""

    def __init__(self, db: Database) -> None:
        super().__init__(daemon=True)
        self.db = db
        self.stop = threading.Event()
        self.changes = 0
        self.error: Exception | None = None

    def run(self) -> None:
        rng = random.Random(7)
        try:
            conn = self.db.connect()  # autocommit, and no `with`: each change is its own transaction
            cur = conn.cursor()
            while not self.stop.is_set():
                step = self.changes % 5
                if step == 0:
                    cur.execute(
                        "INSERT INTO actor (first_name, last_name) VALUES ('NEW', %s)",
                        (f"A{self.changes}",),
                    )
                elif step == 1:
                    cur.execute(
                        "UPDATE film SET rental_rate = rental_rate + 0.01 WHERE film_id = %s",
                        (rng.randint(1, 1000),),
                    )
                elif step == 2:  # routed to a partition of the partitioned payment table
                    cur.execute(
                        "INSERT INTO payment (customer_id, staff_id, rental_id, amount, payment_date) "
                        "SELECT customer_id, staff_id, rental_id, 1.23, '2022-03-15 10:00+00' "
                        "FROM payment WHERE payment_date >= '2022-03-01' LIMIT 1"
                    )
                elif step == 3:
                    cur.execute(
                        "DELETE FROM payment WHERE payment_id = "
                        "(SELECT min(payment_id) FROM payment_p2022_05)"
                    )
                else:
                    cur.execute(
                        "UPDATE customer SET email = %s WHERE customer_id = %s",
                        (f"moved{self.changes}@example.com", rng.randint(1, 599)),
                    )
                self.changes += 1
                time.sleep(0.01)
            conn.close()
        except Exception as error:
            self.error = error


@pytest.fixture
def pagila_pair(source_db: Database, target_db: Database) -> tuple[Database, Database]:
    load_pagila(source_db.cluster, source_db.name)
    copy_schema(source_db.cluster.dsn(source_db.name), target_db.cluster.dsn(target_db.name))
    return source_db, target_db


@pytest.mark.slow
def test_live_source_replicates_until_cutover_then_target_equals_source(pagila_pair) -> None:
    source, target = pagila_pair
    writer = Writer(source)
    engine = StandInEngine()
    with EmbeddedAws(engine, time_scale=0.05) as aws:
        spec = spec_for(
            source, target, migration_id="live", migration_type="full-load-and-cdc", polling=CDC_POLLING
        )
        writer.start()
        arn = start(aws, spec)
        try:
            view = wait_for_state(aws, arn, WAITING_STATE)
            assert view.current_state == WAITING_STATE, (view.status, view.error, view.cause)
            time.sleep(1)  # keep writing while replication is caught up
        finally:
            writer.stop.set()
            writer.join()
        assert writer.error is None and writer.changes > 20
        send_decision(aws.client("stepfunctions"), arn)
        view = finish(aws, arn)
        leftovers = account_dms_resources(aws)
    engine.shutdown()

    assert view.status == "SUCCEEDED", (view.error, view.cause)
    assert "Finish the target" in view.states and view.output["cutover"]["decision"] == "cutover"
    assert view.output["finish"]["mismatched"] == [] and view.output["finish"]["sequences_set"] > 0
    assert judge.differences(source, target) == []  # the test's own fingerprint of every table
    sequence = "SELECT last_value FROM actor_actor_id_seq"
    assert source.execute(sequence) == target.execute(sequence)
    assert target.execute("SELECT count(*) FROM actor WHERE first_name = 'NEW'")[0][0] > 0
    assert source_objects(source) == ([], [])
    assert leftovers == []


SHOP_DDL = """
CREATE TABLE items (id int PRIMARY KEY, name text, qty int, notes text);
CREATE TABLE ledger (at timestamptz, entry text, amount numeric);
ALTER TABLE ledger REPLICA IDENTITY FULL;
CREATE TABLE "Tags" ("Item" int, "Tag" text, PRIMARY KEY ("Item", "Tag"));
ALTER TABLE "Tags" REPLICA IDENTITY FULL;
"""
SHOP_ROWS = """
INSERT INTO items SELECT g, 'item ' || g, mod(g, 7), repeat(md5(g::text), 300)
  FROM generate_series(1, 3000) g;
INSERT INTO ledger SELECT '2026-01-01'::timestamptz + g * interval '1 minute', 'opening ' || g, g
  FROM generate_series(1, 2000) g;
INSERT INTO "Tags" SELECT g, 'tag ' || mod(g, 5) FROM generate_series(1, 1000) g;
"""


class ShopWriter(threading.Thread):
    """Inserts, updates (with and without the TOASTed column) and deletes on a keyed table and on two
    REPLICA IDENTITY FULL tables (one without any key), each change its own transaction."""

    def __init__(self, db: Database) -> None:
        super().__init__(daemon=True)
        self.db = db
        self.stop = threading.Event()
        self.changes = 0
        self.error: Exception | None = None

    def run(self) -> None:
        statements = [
            ("INSERT INTO items VALUES (%(n)s + 100000, 'new', 1, repeat('x', 5000))", {}),
            ("UPDATE items SET qty = qty + 1 WHERE id = %(r)s", {}),  # notes stays TOASTed, unchanged
            ("UPDATE items SET notes = 'short ' || %(n)s WHERE id = %(r)s + 1", {}),
            ("DELETE FROM items WHERE id = %(r)s + 2", {}),
            ("INSERT INTO ledger VALUES (now(), 'entry ' || %(n)s, %(n)s), (NULL, NULL, NULL)", {}),
            ("UPDATE ledger SET amount = amount * 2 WHERE entry = 'opening ' || %(r)s", {}),
            ("DELETE FROM ledger WHERE ctid = (SELECT ctid FROM ledger WHERE entry IS NULL LIMIT 1)", {}),
            ("DELETE FROM ledger WHERE entry = 'opening ' || (%(r)s + 1)", {}),
            ("""INSERT INTO "Tags" VALUES (%(r)s, 'new ' || %(n)s)""", {}),
            ("""DELETE FROM "Tags" WHERE "Item" = %(r)s + 3""", {}),
        ]
        rng = random.Random(11)
        try:
            conn = self.db.connect()
            cur = conn.cursor()
            while not self.stop.is_set():
                statement, _ = statements[self.changes % len(statements)]
                cur.execute(statement, {"n": self.changes, "r": rng.randint(1, 2990)})
                self.changes += 1
                time.sleep(0.005)
            conn.close()
        except Exception as error:
            self.error = error


@pytest.fixture
def shop_pair(source_db: Database, target_db: Database) -> tuple[Database, Database]:
    source_db.execute(SHOP_DDL + SHOP_ROWS)
    target_db.execute(SHOP_DDL)
    return source_db, target_db


def slot_plugins(db: Database) -> list[tuple[str, str]]:
    return db.execute("SELECT slot_name::text, plugin::text FROM pg_replication_slots WHERE database = %s",
                      (db.name,))  # fmt: skip


def run_cdc_with_writer(
    source: Database, target: Database, write_before_slot: bool = True, **spec_fields: object
) -> tuple[ExecutionView, dict]:
    """Start the migration with the writer writing (from the start, or once the slot exists); at the
    cutover wait, record what is on the source; keep writing a while, stop, cut over, follow to the end."""
    writer = ShopWriter(source)
    engine = StandInEngine()
    seen: dict = {}
    with EmbeddedAws(engine, time_scale=0.05) as aws:
        spec = spec_for(source, target, polling=CDC_POLLING, **spec_fields)
        if write_before_slot:
            writer.start()
        arn = start(aws, spec)
        try:
            if not write_before_slot:
                deadline = time.monotonic() + 120
                while not slot_plugins(source) and time.monotonic() < deadline:
                    time.sleep(0.05)
                writer.start()
            view = wait_for_state(aws, arn, WAITING_STATE)
            assert view.current_state == WAITING_STATE, (view.status, view.error, view.cause)
            seen["slots"] = slot_plugins(source)
            seen["publications"] = source.execute("SELECT pubname FROM pg_publication")
            seen["slot_state"] = view.record.get("slot")
            seen["task"] = aws.client("dms").describe_replication_tasks()["ReplicationTasks"][0]
            time.sleep(1)  # keep writing while replication is caught up
        finally:
            writer.stop.set()
            writer.join()
        assert writer.error is None and writer.changes > 20, writer.error
        send_decision(aws.client("stepfunctions"), arn)
        view = finish(aws, arn)
        seen["leftovers"] = account_dms_resources(aws)
    engine.shutdown()
    return view, seen


def assert_equal_and_clean(source: Database, target: Database, view: ExecutionView, seen: dict) -> None:
    assert view.status == "SUCCEEDED", (view.error, view.cause)
    assert view.output["finish"]["mismatched"] == []
    assert len(judge.tables(source)) == 3
    assert judge.differences(source, target) == []  # the test's own fingerprint of every table
    assert source_objects(source) == ([], []) and seen["leftovers"] == []


@pytest.mark.slow
def test_cdc_reads_the_slot_pg2rds_created_and_creates_nothing_else(shop_pair) -> None:
    source, target = shop_pair
    view, seen = run_cdc_with_writer(
        source, target, migration_id="ownslot", migration_type="full-load-and-cdc"
    )

    assert "Create replication slot" in view.states
    # while replicating: our slot, made by pg2rds with test_decoding, and no publication (DMS with
    # test_decoding needs none; the stand-in used to create one for pgoutput)
    assert seen["slots"] == [("pg2rds_ownslot", "test_decoding")]
    assert seen["publications"] == []
    assert seen["slot_state"]["name"] == "pg2rds_ownslot" and seen["slot_state"]["created"] is True
    assert "CdcStartPosition" not in seen["task"]
    assert_equal_and_clean(source, target, view, seen)
    assert target.execute("SELECT count(*) FROM items WHERE name = 'new'")[0][0] > 0


@pytest.mark.slow
def test_cdc_only_starts_at_the_slots_position(shop_pair) -> None:
    source, target = shop_pair
    target.execute(SHOP_ROWS)  # a CDC-only migration starts from a target loaded by other means, and
    # replicates the changes made once its slot exists
    # (prep-target refuses non-empty tables with DO_NOTHING, even for a CDC-only migration, where they
    # are expected; a CDC-only task loads nothing, so the preparation mode changes nothing else)
    view, seen = run_cdc_with_writer(
        source, target, write_before_slot=False, migration_id="cdconly", migration_type="cdc",
        task={"target_table_prep_mode": "TRUNCATE_BEFORE_LOAD"},
    )  # fmt: skip

    assert seen["task"]["CdcStartPosition"] == seen["slot_state"]["lsn"]
    assert seen["publications"] == []
    assert_equal_and_clean(source, target, view, seen)


@pytest.fixture
def one_table(source_db: Database, target_db: Database) -> tuple[Database, Database]:
    for db in (source_db, target_db):
        db.execute("CREATE TABLE t (id int PRIMARY KEY)")
    return source_db, target_db


@pytest.fixture
def fake_aws() -> Iterator[tuple[EmbeddedAws, FakeEngine]]:
    engine = FakeEngine()
    with EmbeddedAws(engine, time_scale=0.01) as aws:
        yield aws, engine


def test_cutover_abort_cleans_up_and_fails_with_the_reason(fake_aws, one_table) -> None:
    aws, _ = fake_aws
    source, target = one_table
    arn = start(
        aws,
        spec_for(
            source, target, migration_id="abort", migration_type="full-load-and-cdc", polling=CDC_POLLING
        ),
    )
    assert wait_for_state(aws, arn, WAITING_STATE).current_state == WAITING_STATE
    send_decision(aws.client("stepfunctions"), arn, abort=True, reason="the weekend window closed")
    view = finish(aws, arn)
    assert view.status == "FAILED" and view.error == "CutoverAborted"
    assert "aborted the migration at the cutover decision: the weekend window closed" in view.cause
    assert "Clean up after failure" in view.states
    assert account_dms_resources(aws) == []


def test_cutover_timeout_cleans_up_and_says_so(fake_aws, one_table) -> None:
    aws, _ = fake_aws
    source, target = one_table
    spec = spec_for(
        source,
        target,
        migration_id="timeout",
        migration_type="full-load-and-cdc",
        polling=CDC_POLLING,
        cdc={"cutover_timeout_hours": 0.0003},
    )  # about one second
    view = finish(aws, start(aws, spec))
    assert view.status == "FAILED" and view.error == "CutoverTimedOut", view.cause
    assert "no cutover decision within 0.0003 h" in view.cause
    assert account_dms_resources(aws) == []


def test_decision_is_refused_when_not_waiting(fake_aws, one_table) -> None:
    from pg2rds_cli.cutover import NotWaitingForCutover

    aws, _ = fake_aws
    source, target = one_table
    view = finish(aws, start(aws, spec_for(source, target, migration_id="fl")))
    assert view.status == "SUCCEEDED"
    with pytest.raises(NotWaitingForCutover, match="SUCCEEDED"):
        send_decision(aws.client("stepfunctions"), view.arn)


def test_long_migration_continues_in_a_new_execution(fake_aws, one_table, monkeypatch) -> None:
    aws, engine = fake_aws
    source, target = one_table
    monkeypatch.setattr(progress, "POLLS_PER_EXECUTION", 3)
    engine.cdc_full_load_percent = 50  # still loading: never caught up
    first = finish(
        aws,
        start(
            aws,
            spec_for(
                source, target, migration_id="long", migration_type="full-load-and-cdc", polling=CDC_POLLING
            ),
        ),
    )
    assert first.status == "SUCCEEDED", (first.error, first.cause)
    assert first.states[-1] == "Continued in a new execution"
    assert first.output["progress"]["outcome"] == "continue"
    second_arn = first.output["continuation"]["execution_arn"]

    engine.cdc_full_load_percent = 100
    # the hand-off is proven; a budget of 3 polls would also end the cutover wait (its watcher polls too)
    # before the decision arrives on a slow machine, so the rest of the chain gets the real budget
    monkeypatch.setattr(progress, "POLLS_PER_EXECUTION", 2500)
    second = wait_for_state(aws, second_arn, WAITING_STATE)
    while second.done:  # it may have continued again before the latency dropped: follow the chain
        assert second.status == "SUCCEEDED" and second.states[-1] == "Continued in a new execution"
        second_arn = second.output["continuation"]["execution_arn"]
        second = wait_for_state(aws, second_arn, WAITING_STATE)
    assert second.states[:4] == [
        "Is this a continuation?",
        "Resume polling",
        "Renew the migration lease",  # the chain keeps its lease and names its new live execution
        "Check task progress",
    ]
    assert "Create replication instance" not in second.states
    send_decision(aws.client("stepfunctions"), second_arn)
    second = finish(aws, second_arn)
    while second.states[-1] == "Continued in a new execution":  # stopping may span executions too
        second = finish(aws, second.output["continuation"]["execution_arn"])
    assert second.status == "SUCCEEDED", second.cause
    assert second.states[-1] == "Migration complete"
    assert second.output["progress"]["polls"] > first.output["progress"]["polls"]
    assert account_dms_resources(aws) == []


def polls_after_decision(aws: EmbeddedAws, arn: str, polls: int, timeout: float = 60) -> ExecutionView:
    """The execution once it has polled the task ``polls`` more times with the decision's WAL position
    noted (or ended)."""
    deadline, reader = time.monotonic() + timeout, ExecutionReader(aws.client("stepfunctions"), arn)
    first = None
    while time.monotonic() < deadline:
        view = reader.read()
        progress = view.record.get("progress") or {}
        if view.done:
            return view
        if progress.get("cutover_lsn"):
            first = progress["polls"] if first is None else first
            if progress["polls"] - first >= polls:
                return view
        time.sleep(0.1)
    raise TimeoutError(f"fewer than {polls} polls after the decision: {view.record.get('progress')}")


def path(view: ExecutionView) -> tuple:
    """What an assertion on a cutover execution prints: how it ended, its last states, its last progress."""
    return view.status, view.error, view.cause, view.states[-12:], view.record.get("progress")


def slot_confirmed(db: Database, lsn: str) -> bool:
    rows = db.execute(
        "SELECT confirmed_flush_lsn >= %s::pg_lsn FROM pg_replication_slots WHERE database = %s",
        (lsn, db.name),
    )
    return bool(rows and rows[0][0])


def test_cutover_waits_for_a_lagging_task_to_confirm_the_decisions_position(fake_aws, one_table) -> None:
    """DMS's latency metric says 0 while the slot is behind: the task must keep running until the slot has
    confirmed the source's position at the decision, whatever the latency says."""
    aws, engine = fake_aws
    source, target = one_table
    spec = spec_for(
        source, target, migration_id="lag", migration_type="full-load-and-cdc", polling=CDC_POLLING
    )
    arn = start(aws, spec)
    assert wait_for_state(aws, arn, WAITING_STATE).current_state == WAITING_STATE
    engine.hold_slot()
    source.execute("INSERT INTO t VALUES (1)")  # the application's last write (WAL the slot must pass)
    target.execute("INSERT INTO t VALUES (1)")  # what the fake would apply, so verification passes
    send_decision(aws.client("stepfunctions"), arn)

    view = polls_after_decision(aws, arn, 3)
    assert not view.done, path(view)
    cutover_lsn = view.record["progress"]["cutover_lsn"]
    assert view.record["progress"]["task_status"] == "running"
    assert not slot_confirmed(source, cutover_lsn)
    task = aws.client("dms").describe_replication_tasks()["ReplicationTasks"][0]
    assert task["Status"] == "running"

    engine.hold_slot(False)
    view = finish(aws, arn)
    assert view.status == "SUCCEEDED", (view.error, view.cause)
    assert view.output["progress"]["outcome"] == "stopped"


def test_a_task_stopped_by_someone_else_after_the_decision_fails_the_migration(fake_aws, one_table) -> None:
    """Someone stops the task (console, CLI) after the decision while it still lags: the migration must not
    end SUCCEEDED, since the writes the slot has not confirmed may be missing on the target. The table is
    one DMS reports validated, so pg2rds's own comparison after the stop would not look at it again."""
    aws, engine = fake_aws
    source, target = one_table
    engine.tables = [TableStats("public", "t")]
    spec = spec_for(
        source, target, migration_id="stopped", migration_type="full-load-and-cdc", polling=CDC_POLLING
    )
    arn = start(aws, spec)
    assert wait_for_state(aws, arn, WAITING_STATE).current_state == WAITING_STATE
    engine.hold_slot()
    source.execute("INSERT INTO t VALUES (1)")  # never applied: the task lags, then is stopped
    dms = aws.client("dms")
    send_decision(aws.client("stepfunctions"), arn)
    view = polls_after_decision(aws, arn, 1)
    assert not view.done, (view.status, view.error, view.cause, path(view))  # it must still wait for the slot
    dms.stop_replication_task(
        ReplicationTaskArn=dms.describe_replication_tasks()["ReplicationTasks"][0]["ReplicationTaskArn"]
    )
    view = finish(aws, arn)
    assert view.status == "FAILED" and view.error == "TaskFailed", path(view)
    assert "stopped after the cutover decision before the replication slot had confirmed" in view.cause
    assert account_dms_resources(aws) == [] and source_objects(source) == ([], [])


def test_a_write_just_before_the_decision_reaches_the_target_before_the_task_stops(one_table) -> None:
    """The stand-in, held up by a lock on the target (a slow target, as DMS meets one), still reports the
    latency of its last idle moment; the write made just before the decision must be on the target."""
    source, target = one_table
    engine = StandInEngine()
    with EmbeddedAws(engine, time_scale=0.01) as aws:
        spec = spec_for(
            source, target, migration_id="lastwrite", migration_type="full-load-and-cdc", polling=CDC_POLLING
        )
        arn = start(aws, spec)
        assert wait_for_state(aws, arn, WAITING_STATE).current_state == WAITING_STATE
        blocker = target.connect()
        blocker.autocommit = False
        blocker.cursor().execute("LOCK TABLE t IN ACCESS EXCLUSIVE MODE")  # the apply waits behind it
        try:
            source.execute("INSERT INTO t VALUES (42)")
            send_decision(aws.client("stepfunctions"), arn)
            view = polls_after_decision(aws, arn, 3)
            assert not view.done, path(view)
            assert view.record["progress"]["task_status"] == "running"
            assert not slot_confirmed(source, view.record["progress"]["cutover_lsn"])
        finally:
            blocker.rollback()
            blocker.close()
        view = finish(aws, arn)
        leftovers = account_dms_resources(aws)
    engine.shutdown()
    assert view.status == "SUCCEEDED", (view.error, view.cause)
    assert target.execute("SELECT id FROM t") == [(42,)]
    assert source_objects(source) == ([], []) and leftovers == []


def subscribe(aws: EmbeddedAws) -> str:
    """An SQS queue subscribed to the notification topic, as an operator's mailbox."""
    sqs = aws.client("sqs")
    url = sqs.create_queue(QueueName="operator")["QueueUrl"]
    queue = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    sns = aws.client("sns")
    sns.subscribe(TopicArn=sns.list_topics()["Topics"][0]["TopicArn"], Protocol="sqs", Endpoint=queue)
    return url


def notifications(aws: EmbeddedAws, url: str, expect: int = 0, timeout: float = 60) -> list[tuple[str, dict]]:
    """(subject, message) of everything the topic received so far; with ``expect``, waiting until that many
    have arrived (a state is entered in the history before its function or SNS task has published)."""
    sqs, received = aws.client("sqs"), []
    deadline = time.monotonic() + timeout
    while True:
        while messages := sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10).get("Messages", []):
            for message in messages:
                body = json.loads(message["Body"])
                received.append((body["Subject"], json.loads(body["Message"])))
                sqs.delete_message(QueueUrl=url, ReceiptHandle=message["ReceiptHandle"])
        if len(received) >= expect or time.monotonic() > deadline:
            return received
        time.sleep(0.2)


def wait_until(
    aws: EmbeddedAws,
    arn: str,
    condition,
    timeout: float = 120,
    interval: float = 0.2,
    what: str = "met the condition",
) -> ExecutionView:
    """The execution once ``condition`` holds for it, or it has ended; read through one incremental reader
    (a whole history at each look would compete with the run for the CPU)."""
    deadline, reader = time.monotonic() + timeout, ExecutionReader(aws.client("stepfunctions"), arn)
    while time.monotonic() < deadline:
        view = reader.read()
        if condition(view) or view.done:
            return view
        time.sleep(interval)
    raise TimeoutError(
        f"execution never {what}: in {view.current_state!r}, progress {view.record.get('progress')}"
    )


def test_a_task_failing_during_the_cutover_wait_ends_it_at_once_with_a_notification(
    fake_aws, one_table
) -> None:
    aws, engine = fake_aws
    source, target = one_table
    mailbox = subscribe(aws)
    spec = spec_for(
        source, target, migration_id="failwait", migration_type="full-load-and-cdc", polling=CDC_POLLING
    )
    arn = start(aws, spec)
    assert wait_for_state(aws, arn, WAITING_STATE).current_state == WAITING_STATE
    engine.fail_task("Last Error Replication task out of memory. Stop Reason FATAL_ERROR")

    view = finish(aws, arn)
    assert view.status == "FAILED" and view.error == "TaskFailed", (view.error, view.cause)
    assert "out of memory" in view.cause
    assert view.states.count(WAITING_STATE) == 1  # never offered again
    subjects = [subject for subject, _ in notifications(aws, mailbox)]
    assert subjects == ["pg2rds: ready for cutover", "pg2rds: migration failed, do not cut over"]
    assert account_dms_resources(aws) == [] and source_objects(source) == ([], [])


def test_falling_behind_during_the_wait_withdraws_the_offer_until_caught_up_again(
    fake_aws, one_table
) -> None:
    from pg2rds_cli.cutover import NotWaitingForCutover

    aws, engine = fake_aws
    source, target = one_table
    mailbox = subscribe(aws)
    spec = spec_for(
        source, target, migration_id="behind", migration_type="full-load-and-cdc", polling=CDC_POLLING,
        cdc={"max_latency_seconds": 30},
    )  # fmt: skip
    arn = start(aws, spec)
    assert wait_for_state(aws, arn, WAITING_STATE).current_state == WAITING_STATE
    engine.set_latency(600)
    view = wait_until(aws, arn, lambda v: "Withdraw the cutover offer" in v.states)
    assert not view.done and view.current_state != WAITING_STATE, (view.status, view.cause)
    with pytest.raises(NotWaitingForCutover):
        send_decision(aws.client("stepfunctions"), arn)
    # either order: the watcher may end the wait before the offer's own publish has gone out (the two
    # branches run at once), and SNS to a standard queue keeps no order anyway
    subjects = sorted(subject for subject, _ in notifications(aws, mailbox, expect=2))
    assert subjects == ["pg2rds: cutover no longer offered", "pg2rds: ready for cutover"]

    engine.set_latency(0)  # CloudWatch's per-minute maximum drops in the next minute
    view = wait_until(
        aws,
        arn,
        lambda v: (
            v.states.count(WAITING_STATE) == 2 and v.current_state == WAITING_STATE and offered(aws, arn)
        ),
    )
    send_decision(aws.client("stepfunctions"), arn)
    view = finish(aws, arn)
    assert view.status == "SUCCEEDED", (view.error, view.cause)
    assert [subject for subject, _ in notifications(aws, mailbox)] == ["pg2rds: ready for cutover"]


def cut_over_when_offered(aws: EmbeddedAws, arn: str) -> tuple[ExecutionView, list]:
    """Wait for the offer, decide, and wait for the end: the final view and the DMS resources left."""
    view = wait_for_state(aws, arn, WAITING_STATE)
    assert view.current_state == WAITING_STATE, (view.status, view.error, view.cause)
    send_decision(aws.client("stepfunctions"), arn)
    return finish(aws, arn), account_dms_resources(aws)


def test_a_source_restart_during_the_cutover_wait_is_ridden_out(one_table) -> None:
    """pg_ctl restart -m fast while the cutover is offered (a maintenance reboot): the stand-in retries as
    the task's ErrorBehavior says and resumes from the slot; the cutover then ends with the target equal."""
    source, target = one_table
    engine = StandInEngine()
    with EmbeddedAws(engine, time_scale=0.01) as aws:
        spec = spec_for(
            source, target, migration_id="restart", migration_type="full-load-and-cdc", polling=CDC_POLLING
        )
        arn = start(aws, spec)
        assert wait_for_state(aws, arn, WAITING_STATE).current_state == WAITING_STATE
        source.execute("INSERT INTO t VALUES (1)")
        source.cluster.restart()
        source.execute("INSERT INTO t VALUES (2)")
        deadline = time.monotonic() + 60
        while target.execute("SELECT count(*) FROM t") != [(2,)] and time.monotonic() < deadline:
            time.sleep(0.2)
        view, leftovers = cut_over_when_offered(aws, arn)
    engine.shutdown()
    assert view.status == "SUCCEEDED", (view.error, view.cause)
    assert target.execute("SELECT id FROM t ORDER BY id") == [(1,), (2,)]
    assert source_objects(source) == ([], []) and leftovers == []


def test_a_source_restart_before_the_catch_up_is_ridden_out(one_table, caplog) -> None:
    """The same reboot right after the full load, before any poll has seen DMS caught up (real time, the
    first CDC poll 5 s after the task starts): the stand-in retries and resumes from the slot, the cutover
    is offered once it has caught up again, and it ends with the target equal and nothing left behind."""
    source, target = one_table
    source.execute("INSERT INTO t SELECT generate_series(1, 100)")
    engine = StandInEngine()
    with EmbeddedAws(engine, time_scale=1.0) as aws:
        spec = spec_for(
            source, target, migration_id="restartearly", migration_type="full-load-and-cdc",
            polling={"initial_seconds": 5, "max_seconds": 5},
        )  # fmt: skip
        arn = start(aws, spec)
        dms = aws.client("dms")
        deadline = time.monotonic() + 60
        runtime = None
        while (runtime is None or not runtime.full_load_finished) and time.monotonic() < deadline:
            tasks = dms.describe_replication_tasks().get("ReplicationTasks", [])
            runtime = engine.task_runtime(tasks[0]["ReplicationTaskArn"]) if tasks else None
            time.sleep(0.1)
        assert runtime is not None and runtime.full_load_finished, runtime
        source.execute("INSERT INTO t VALUES (101)")
        before = read_execution(aws.client("stepfunctions"), arn)
        source.cluster.restart()
        source.execute("INSERT INTO t VALUES (102)")
        view, leftovers = cut_over_when_offered(aws, arn)
    engine.shutdown()
    assert WAITING_STATE not in before.states and not before.done, path(before)  # restarted before the offer
    assert "recoverable error (retry 1" in caplog.text  # the task lost its source and retried
    assert view.status == "SUCCEEDED", (view.error, view.cause)
    assert target.execute("SELECT count(*), max(id) FROM t") == [(102, 102)]
    assert source_objects(source) == ([], []) and leftovers == []


def test_cli_cutover_command_sends_the_decision(fake_aws, one_table, capsys) -> None:
    from pg2rds_cli import main as cli

    aws, _ = fake_aws
    source, target = one_table
    arn = start(aws, spec_for(source, target, migration_id="clicut", migration_type="full-load-and-cdc",
                              polling=CDC_POLLING))  # fmt: skip
    assert wait_for_state(aws, arn, WAITING_STATE).current_state == WAITING_STATE
    capsys.readouterr()
    assert cli.main(["status", arn, "--json"]) == 0  # running: JSON on stdout, not the panel
    status = json.loads(capsys.readouterr().out)
    assert (status["status"], status["current_state"]) == ("RUNNING", WAITING_STATE)
    assert status["progress"]["outcome"] == "cdc-caught-up"
    assert cli.main(["cutover", arn]) == 0
    view = finish(aws, arn)
    assert view.status == "SUCCEEDED" and view.output["cutover"]["decision"] == "cutover"
    assert cli.main(["cutover", arn]) == 1  # nothing to decide any more


def test_local_run_asks_for_the_decision_and_sends_it(one_table) -> None:
    from pg2rds_emulator.local_run import run_local

    source, target = one_table
    asked = []

    def decide(view: ExecutionView) -> str | None:
        asked.append(view.current_state)
        return "abort" if len(asked) >= 2 else None  # "not yet" once, then abort

    view, leftovers = run_local(
        source.cluster.dsn(source.name), target.cluster.dsn(target.name),
        {"migration_id": "localabort", "migration_type": "full-load-and-cdc"},
        engine=FakeEngine(), decide=decide, timeout_seconds=120,
    )  # fmt: skip
    assert asked == [WAITING_STATE, WAITING_STATE]
    assert view.status == "FAILED" and view.error == "CutoverAborted" and "decided locally" in view.cause
    assert leftovers == [] and source_objects(source) == ([], [])


def test_an_apply_error_during_cdc_fails_the_migration_with_the_targets_message(one_table) -> None:
    """A constraint the target has and the source lacks: pg2rds's task settings stop the task (STOP_TASK)
    instead of DMS's default of logging the row and going on without it."""
    source, target = one_table
    target.execute("ALTER TABLE t ADD CONSTRAINT small_ids CHECK (id < 1000)")
    engine = StandInEngine()
    with EmbeddedAws(engine, time_scale=0.01) as aws:
        spec = spec_for(
            source,
            target,
            migration_id="apply-error",
            migration_type="full-load-and-cdc",
            polling=CDC_POLLING,
        )
        arn = start(aws, spec)
        assert wait_for_state(aws, arn, WAITING_STATE).current_state == WAITING_STATE
        source.execute("INSERT INTO t VALUES (5000)")
        view = finish(aws, arn)
        leftovers = account_dms_resources(aws)
    engine.shutdown()
    assert view.status == "FAILED" and view.error == "TaskFailed", (view.error, view.cause)
    assert "'public'.'t'" in view.cause and "small_ids" in view.cause
    assert source_objects(source) == ([], []) and leftovers == []


def test_the_cutover_reads_the_history_only_back_to_the_wait(fake_aws, one_table, monkeypatch) -> None:
    """The application is stopped while `pg2rds cutover` looks for the wait's token: it reads the history
    newest first and stops at the wait's entry, not the whole history of every poll since the start (a
    long CDC's history is thousands of events), in pages of ``DECISION_PAGE`` (100), not the API's 1,000
    (each event carries its state: a page of them is slow to send). Pages of 10 here, so reading
    everything would take many calls."""
    from pg2rds_cli import cutover

    assert cutover.DECISION_PAGE == 100 < executions.HISTORY_PAGE
    aws, _ = fake_aws
    source, target = one_table
    spec = spec_for(
        source, target, migration_id="page", migration_type="full-load-and-cdc", polling=CDC_POLLING
    )
    arn = start(aws, spec)
    assert wait_for_state(aws, arn, WAITING_STATE).current_state == WAITING_STATE
    sfn = aws.client("stepfunctions")
    monkeypatch.setattr(executions, "HISTORY_PAGE", 10)
    monkeypatch.setattr(cutover, "DECISION_PAGE", 10)
    whole = executions.history(sfn, arn)  # the emulator pages as Step Functions does: oldest first, all
    assert [event["id"] for event in whole] == list(range(1, len(whole) + 1)) and len(whole) > 80
    calls: list[dict] = []
    sfn.meta.events.register(
        "provide-client-params.states.GetExecutionHistory", lambda params, **_: calls.append(params)
    )
    send_decision(sfn, arn)
    read = list(calls)
    assert read and all(call.get("reverseOrder") and call["maxResults"] == 10 for call in read), read
    after = executions.history(sfn, arn)
    entered = max(
        event["id"]
        for event in after
        if event["type"] == "TaskStateEntered" and event["stateEnteredEventDetails"]["name"] == WAITING_STATE
    )
    oldest_read = int(read[-1].get("nextToken", after[-1]["id"] + 1)) - 10
    assert entered - 10 < oldest_read <= entered  # the last page read is the one holding the wait's entry
    view = finish(aws, arn)
    assert view.status == "SUCCEEDED", (view.error, view.cause)


def cut_over_after(
    source: Database, target: Database, migration_id: str, writes: Callable[[], None], **spec_fields: object
) -> ExecutionView:
    """A full-load-and-cdc migration (DMS creating the tables) with the stand-in: once the cutover is
    offered, ``writes`` changes the source; then the decision, and the execution followed to its end."""
    engine = StandInEngine()
    try:
        with EmbeddedAws(engine, time_scale=0.05) as aws:
            spec = spec_for(source, target, migration_id=migration_id, polling=CDC_POLLING,
                            migration_type="full-load-and-cdc",
                            task={"target_table_prep_mode": "DROP_AND_CREATE"}, **spec_fields)  # fmt: skip
            arn = start(aws, spec)
            view = wait_for_state(aws, arn, WAITING_STATE)
            assert view.current_state == WAITING_STATE, (view.status, view.error, view.cause)
            writes()
            send_decision(aws.client("stepfunctions"), arn)
            return finish(aws, arn)
    finally:
        engine.shutdown()


@pytest.mark.slow
def test_a_latin1_source_replicates_its_characters_to_a_utf8_target(
    source_db: Database, target_db: Database
) -> None:
    """A LATIN1 source in CDC: the changes made while replicating ('é' as the byte 0xe9 on the source)
    reach the UTF8 target as the same characters, and the report compares them equal."""
    latin1 = Database(source_db.cluster, "latin1_" + uuid.uuid4().hex[:8])
    source_db.cluster.execute(
        "postgres",
        f"CREATE DATABASE {latin1.name} ENCODING 'LATIN1' LC_COLLATE 'C' LC_CTYPE 'C' TEMPLATE template0",
    )

    def write(statement: str, params: tuple = ()) -> None:
        with latin1.connect() as conn, conn.cursor() as cur:
            conn.set_client_encoding("UTF8")
            cur.execute(statement, params)

    def replicated() -> None:
        write("INSERT INTO t VALUES (3, 'naïve'), (4, 'über')")
        write("UPDATE t SET word = 'crème brûlée' WHERE id = 2")
        write("DELETE FROM t WHERE id = 1")

    try:
        write("CREATE TABLE t (id int PRIMARY KEY, word text)")
        write("INSERT INTO t VALUES (1, 'café'), (2, 'plain')")
        view = cut_over_after(latin1, target_db, "latin1cdc", replicated)
    finally:
        source_db.cluster.execute(
            "postgres",
            "SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots WHERE database = %s",
            (latin1.name,),
        )
        source_db.cluster.drop_database(latin1.name)

    assert view.status == "SUCCEEDED", (view.error, view.cause)
    assert view.output["finish"]["mismatched"] == []
    with target_db.connect() as conn, conn.cursor() as cur:
        conn.set_client_encoding("UTF8")
        cur.execute("SELECT id, word FROM t ORDER BY id")
        assert cur.fetchall() == [(2, "crème brûlée"), (3, "naïve"), (4, "über")]


@pytest.mark.slow
@pytest.mark.parametrize("verification", ["dms", "checksums"])
def test_a_primary_key_moved_during_cdc_is_left_behind_as_by_dms_and_the_report_says_so(
    source_db: Database, target_db: Database, verification: str
) -> None:
    """DMS ignores an UPDATE that changes a primary key (User Guide, PostgreSQL as a source, limitations):
    the target keeps the row under its old key. The stand-in applied it, so the local run SUCCEEDED with
    all tables equal where the same migration in AWS ends with them different."""
    source_db.execute("CREATE TABLE t (id int PRIMARY KEY, v text)")
    source_db.execute("INSERT INTO t SELECT g, 'v' || g FROM generate_series(1, 10) g")

    def replicated() -> None:
        source_db.execute("UPDATE t SET id = 100 WHERE id = 1")
        source_db.execute("UPDATE t SET v = 'changed' WHERE id = 2")  # an ordinary update still applies

    view = cut_over_after(source_db, target_db, "movedkey", replicated, verification=verification)

    assert view.status == "FAILED", view.states
    assert "public.t" in (view.cause or ""), view.cause
    assert target_db.execute("SELECT id, v FROM t WHERE id IN (1, 2, 100) ORDER BY id") == [
        (1, "v1"),
        (2, "changed"),
    ]
    assert source_objects(source_db) == ([], [])


@pytest.mark.slow
def test_a_timestamp_infinity_replicated_arrives_as_dms_writes_it(
    source_db: Database, target_db: Database
) -> None:
    """The same for a change replicated during CDC: the row arrives with '9999-12-31 23:59:59', and the
    report names the table."""
    source_db.execute("CREATE TABLE t (id int PRIMARY KEY, at timestamp)")
    source_db.execute("INSERT INTO t VALUES (1, '2024-05-01 10:00')")

    def replicated() -> None:
        source_db.execute("INSERT INTO t VALUES (2, 'infinity')")
        source_db.execute("UPDATE t SET at = '-infinity' WHERE id = 1")

    view = cut_over_after(source_db, target_db, "cdcinfinity", replicated)

    assert view.status == "FAILED", view.states
    assert "public.t" in (view.cause or ""), view.cause
    assert target_db.execute("SELECT id, at::text FROM t ORDER BY id") == [
        (1, "4713-01-01 00:00:00 BC"),
        (2, "9999-12-31 23:59:59"),
    ]
    assert source_objects(source_db) == ([], [])
