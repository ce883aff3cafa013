"""DMS data validation in the stand-in, against real PostgreSQL: what DescribeTableStatistics reports and
what lands in the failures table on the target.

Pages: "AWS DMS data validation" (User Guide, CHAP_Validating), "Data validation task settings" (User
Guide, CHAP_Tasks.CustomizingTasks.TaskSettings.DataValidation), "TableStatistics" and "ReloadTables"
(API Reference).
"""

import contextlib
import json
import threading
import time
from collections.abc import Iterator

import pytest
from judge import table_fingerprint as fingerprint
from test_dms_standin import engine as engine  # the fixture
from test_dms_standin import finished, make_task, until, wait_for

from pg2rds_emulator.dms_engine import TableStats, TaskInfo, TaskRuntime
from pg2rds_emulator.dms_standin import FULL_LOAD_ONLY_FINISHED, StandInEngine

DDL = """
CREATE SCHEMA shop;
CREATE TABLE shop.items (id integer PRIMARY KEY, name text NOT NULL, price numeric(10, 2),
                         added timestamptz, tags text[]);
CREATE TABLE shop.codes (code varchar(20) NOT NULL, region char(2) NOT NULL, label text,
                         UNIQUE (region, code));
CREATE TABLE shop.log (at timestamptz, what text);
CREATE TABLE shop.notes (title text PRIMARY KEY, body text);
"""

FAILURES = 'SELECT "TASK_NAME", "TABLE_OWNER", "TABLE_NAME", "KEY_TYPE", "KEY", "FAILURE_TYPE", "DETAILS" ' \
    "FROM awsdms_control.awsdms_validation_failures_v1 ORDER BY \"FAILURE_TYPE\", \"KEY\""  # fmt: skip


def validation(**settings) -> dict:
    return {"ValidationSettings": {"EnableValidation": True, **settings}}


def _shop(source_db, target_db, rows: int = 50) -> None:
    source_db.execute(DDL)
    target_db.execute(DDL)
    source_db.execute(
        "INSERT INTO shop.items SELECT g, 'item ' || g, g * 1.25, "
        "'2024-01-01 00:00:00+00'::timestamptz + g * interval '1 hour', ARRAY['a', g::text] "
        "FROM generate_series(1, %s) g",
        (rows,),
    )
    source_db.execute(
        "INSERT INTO shop.codes SELECT 'c' || g, CASE WHEN mod(g, 2) = 0 THEN 'EU' ELSE 'US' END, "
        "'label ' || g FROM generate_series(1, 20) g"
    )
    source_db.execute("INSERT INTO shop.log SELECT now(), 'x' || g FROM generate_series(1, 10) g")
    source_db.execute("INSERT INTO shop.notes VALUES ('a', 'first'), ('b', 'second')")


def stats(runtime: TaskRuntime) -> dict[str, TableStats]:
    return {f"{t.schema_name}.{t.table_name}": t for t in runtime.tables}


def validated(names: list[str]) -> "callable":
    def done(runtime: TaskRuntime) -> bool:
        tables = stats(runtime)
        return all(n in tables and tables[n].validation_state == "Validated" for n in names)

    return done


def state_of(name: str, state: str) -> "callable":
    return lambda runtime: name in stats(runtime) and stats(runtime)[name].validation_state == state


def failures(target_db) -> list[tuple]:
    return target_db.execute(FAILURES)


def task_name(task: TaskInfo) -> str:
    return task.arn.rsplit(":", 1)[-1]


@pytest.fixture
def shop(source_db, target_db) -> Iterator[None]:
    _shop(source_db, target_db)
    yield


# -- full load ----------------------------------------------------------------------------------------------


def test_a_full_load_is_validated_table_by_table(source_db, target_db, shop, engine: StandInEngine) -> None:
    """Validation begins right after each table's full load and compares every row by its primary key or
    unique index; a table without one cannot be validated ("AWS DMS data validation"; ValidationState
    values: API Reference, TableStatistics). The rows are read in partitions of PartitionSize ("Data
    validation task settings"): 7 here, so 50 rows take several. The full-load task ends once validated."""
    task = make_task(source_db, target_db, task_settings=validation(PartitionSize=7))
    engine.start_task(task)
    runtime = wait_for(engine, task, finished)
    assert runtime.status == "stopped" and runtime.stop_reason == FULL_LOAD_ONLY_FINISHED
    tables = stats(runtime)
    for name in ("shop.items", "shop.codes"):
        assert tables[name].validation_state == "Validated", tables[name]
        assert tables[name].validation_pending_records == 0
        assert tables[name].validation_failed_records == 0
        assert tables[name].validation_suspended_records == 0
    assert tables["shop.log"].validation_state == "No primary key"
    # a key column DMS reads as a LOB (PostgreSQL text is one) cannot be validated by (limitations)
    assert tables["shop.notes"].validation_state == "No primary key"
    assert "'title' is a LOB" in tables["shop.notes"].validation_state_details
    assert failures(target_db) == []  # created on the target, and empty


def test_without_validation_settings_tables_are_not_enabled(
    source_db, target_db, shop, engine: StandInEngine
) -> None:
    """EnableValidation defaults to false ("Data validation task settings"): every table is "Not
    enabled" (TableStatistics), and no failures table is created."""
    task = make_task(source_db, target_db)
    engine.start_task(task)
    runtime = wait_for(engine, task, finished)
    assert {t.validation_state for t in runtime.tables} == {"Not enabled"}
    assert target_db.execute("SELECT to_regclass('awsdms_control.awsdms_validation_failures_v1')") == [
        (None,)
    ]


def _tampering_trigger(target_db) -> None:
    """On the target: the full load's row 2 gets another name and price, row 5 never lands, and a row 999
    the source does not have is there already."""
    target_db.execute(
        """
        CREATE FUNCTION shop.tamper() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
            IF NEW.id = 2 THEN NEW.name := 'tampered'; NEW.price := 0; END IF;
            IF NEW.id = 5 THEN RETURN NULL; END IF;
            RETURN NEW;
        END $$;
        CREATE TRIGGER tamper BEFORE INSERT ON shop.items FOR EACH ROW EXECUTE FUNCTION shop.tamper();
        INSERT INTO shop.items (id, name) VALUES (999, 'only on the target');
        """
    )


def test_differences_after_a_full_load_are_failures_in_the_failures_table(
    source_db, target_db, shop, engine: StandInEngine
) -> None:
    """A row missing on the target is MISSING_TARGET, one only on the target MISSING_SOURCE, a different
    one RECORD_DIFF with the columns that differ in DETAILS; each is a row of
    awsdms_control.awsdms_validation_failures_v1 on the target (TASK_NAME the last part of the task ARN,
    KEY_TYPE 'Row', KEY like {"key": ["3451491"]}), and the table is "Mismatched records" ("AWS DMS data
    validation", Troubleshooting; TableStatistics)."""
    _tampering_trigger(target_db)
    task = make_task(source_db, target_db, script=None, task_settings=validation(PartitionSize=7))
    engine.start_task(task)
    runtime = wait_for(engine, task, finished)
    items = stats(runtime)["shop.items"]
    assert items.validation_state == "Mismatched records"
    assert items.validation_failed_records == 3
    assert items.validation_pending_records == 0
    assert stats(runtime)["shop.codes"].validation_state == "Validated"
    name = task_name(task)
    rows = failures(target_db)
    assert [row[:6] for row in rows] == [
        (name, "shop", "items", "Row", '{"key": ["999"]}', "MISSING_SOURCE"),
        (name, "shop", "items", "Row", '{"key": ["5"]}', "MISSING_TARGET"),
        (name, "shop", "items", "Row", '{"key": ["2"]}', "RECORD_DIFF"),
    ]
    assert json.loads(rows[2][6]) == [
        [{"name": "item 2"}, {"name": "tampered"}],
        [{"price": "2.50"}, {"price": "0.00"}],
    ]


def test_over_table_failure_max_count_validation_of_the_table_is_suspended(
    source_db, target_db, shop, engine: StandInEngine
) -> None:
    """TableFailureMaxCount: the number of rows in one table that can fail validation before validation
    is suspended for the table ("Data validation task settings"). The rows left unchecked are suspended
    records (TableStatistics: ValidationSuspendedRecords, "records that couldn't be validated")."""
    target_db.execute(
        "CREATE FUNCTION shop.drop_odd() RETURNS trigger LANGUAGE plpgsql AS "
        "$$ BEGIN IF mod(NEW.id, 2) = 1 THEN RETURN NULL; END IF; RETURN NEW; END $$; "
        "CREATE TRIGGER drop_odd BEFORE INSERT ON shop.items FOR EACH ROW EXECUTE FUNCTION shop.drop_odd()"
    )
    settings = validation(PartitionSize=10, TableFailureMaxCount=3)
    task = make_task(source_db, target_db, script=None, task_settings=settings)
    engine.start_task(task)
    runtime = wait_for(engine, task, finished)
    items = stats(runtime)["shop.items"]
    assert items.validation_failed_records == 4  # the fourth is more than 3
    assert "TableFailureMaxCount (3)" in items.validation_state_details
    assert items.validation_suspended_records > 0
    assert len(failures(target_db)) == 4


# -- during CDC ---------------------------------------------------------------------------------------------


def _running(engine: StandInEngine, source_db, target_db, **settings) -> TaskInfo:
    task = make_task(
        source_db, target_db, migration_type="full-load-and-cdc", task_settings=validation(**settings)
    )
    engine.start_task(task)
    wait_for(engine, task, validated(["shop.items", "shop.codes"]))
    return task


def test_revalidating_a_table_finds_what_was_done_to_the_target_and_its_fix(
    source_db, target_db, shop, engine: StandInEngine
) -> None:
    """ReloadTables with ReloadOption validate-only re-validates the table (API Reference, ReloadTables):
    a row changed and one deleted on the target after validation are then RECORD_DIFF and MISSING_TARGET
    failures ("Mismatched records"); once the target is fixed, validating again finds it "Validated"."""
    task = _running(engine, source_db, target_db)
    target_db.execute("UPDATE shop.items SET name = 'changed' WHERE id = 7")
    target_db.execute("DELETE FROM shop.items WHERE id = 8")

    engine.reload_tables(task.arn, [("shop", "items")], "validate-only")
    runtime = wait_for(engine, task, state_of("shop.items", "Mismatched records"))
    assert stats(runtime)["shop.items"].validation_failed_records == 2
    assert [(row[4], row[5]) for row in failures(target_db)] == [
        ('{"key": ["8"]}', "MISSING_TARGET"),
        ('{"key": ["7"]}', "RECORD_DIFF"),
    ]
    assert stats(runtime)["shop.codes"].validation_state == "Validated"  # not re-validated, still fine

    target_db.execute("UPDATE shop.items SET name = 'item 7' WHERE id = 7")
    target_db.execute("INSERT INTO shop.items SELECT * FROM (VALUES (8, 'item 8', 10.00, "
                      "'2024-01-01 08:00:00+00'::timestamptz, ARRAY['a', '8'])) v")  # fmt: skip
    engine.reload_tables(task.arn, [("shop", "items")], "validate-only")
    runtime = wait_for(engine, task, validated(["shop.items"]))
    items = stats(runtime)["shop.items"]
    assert (items.validation_failed_records, items.validation_pending_records) == (0, 0)
    engine.stop_task(task.arn)


def test_rows_changed_on_the_source_are_validated_again(
    source_db, target_db, shop, engine: StandInEngine
) -> None:
    """During CDC, DMS validates the changed rows again ("AWS DMS data validation"): each change makes its
    row pending (ValidationPendingRecords) until it is compared, ValidationQueryCdcDelaySeconds after the
    change (3 s here, "Data validation task settings"); then the table is "Validated" again."""
    task = _running(engine, source_db, target_db, ValidationQueryCdcDelaySeconds=3)
    # one transaction, so the six keys are pending together for the 3 s
    source_db.execute(
        "UPDATE shop.items SET price = price + 1 WHERE id <= 5; DELETE FROM shop.items WHERE id = 10"
    )
    source_db.execute("INSERT INTO shop.codes VALUES ('new', 'EU', 'added during CDC')")

    runtime = wait_for(engine, task, lambda r: stats(r)["shop.items"].validation_pending_records == 6)
    assert stats(runtime)["shop.items"].validation_state == "Pending records"
    runtime = wait_for(engine, task, validated(["shop.items", "shop.codes"]))
    assert stats(runtime)["shop.items"].validation_pending_records == 0
    assert stats(runtime)["shop.codes"].validation_pending_records == 0
    assert failures(target_db) == []
    engine.stop_task(task.arn)


def test_a_change_that_did_not_reach_the_target_fails_validation(
    source_db, target_db, shop, engine: StandInEngine
) -> None:
    """A changed row compared again during CDC that still differs once the change is applied is a failure
    ("AWS DMS data validation": CDC differences are retried before they are reported). Here the target
    rejects the update (a CHECK constraint) and DMS's default error handling skips it (LOG_ERROR)."""
    task = _running(engine, source_db, target_db)
    target_db.execute("ALTER TABLE shop.items ADD CONSTRAINT cheap CHECK (price < 1000)")
    source_db.execute("UPDATE shop.items SET price = 5000 WHERE id = 3")

    runtime = wait_for(engine, task, state_of("shop.items", "Mismatched records"))
    assert stats(runtime)["shop.items"].validation_failed_records == 1
    assert [(row[4], row[5], json.loads(row[6])) for row in failures(target_db)] == [
        ('{"key": ["3"]}', "RECORD_DIFF", [[{"price": "5000.00"}, {"price": "3.75"}]]),
    ]
    engine.stop_task(task.arn)


@contextlib.contextmanager
def _failures_table_locked(target_db) -> Iterator[None]:
    """A session on the target holds the failures table (SHARE: DMS's INSERT waits) for the block, as a
    slow target would hold the stand-in's write of a failure."""
    conn = target_db.connect()
    try:
        conn.autocommit = False
        with conn.cursor() as cur:
            cur.execute("LOCK TABLE awsdms_control.awsdms_validation_failures_v1 IN SHARE MODE")
        yield
    finally:
        conn.close()


def _failure_write_waiting(target_db) -> bool:
    return target_db.execute(
        "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
        "AND application_name = 'pg2rds-dms-standin-validation-failures' AND wait_event_type = 'Lock'"
    ) == [(1,)]


def _items(engine: StandInEngine, task: TaskInfo) -> tuple[str, int, int]:
    runtime = engine.task_runtime(task.arn)
    assert runtime is not None
    items = stats(runtime)["shop.items"]
    return items.validation_state, items.validation_pending_records, items.validation_failed_records


def test_a_difference_is_pending_until_its_failure_is_recorded_never_validated(
    source_db, target_db, shop, engine: StandInEngine
) -> None:
    """A row that differs stays a pending record until its failure is counted: while the failure is being
    written the table reads "Pending records", never "Validated" with nothing failed, which a poll would
    take for a target proved equal (pg2rds offered the cutover again on such a read). Both for a change
    re-validated during CDC and for a re-validation requested by ReloadTables validate-only."""
    task = _running(engine, source_db, target_db)
    target_db.execute("DELETE FROM shop.items WHERE id = 9")  # the update below finds no row: skipped
    with _failures_table_locked(target_db):
        source_db.execute("UPDATE shop.items SET name = name || '!' WHERE id = 9")
        until(lambda: _failure_write_waiting(target_db))
        assert _items(engine, task) == ("Pending records", 1, 0)
    wait_for(engine, task, state_of("shop.items", "Mismatched records"))
    assert _items(engine, task) == ("Mismatched records", 0, 1)

    with _failures_table_locked(target_db):
        engine.reload_tables(task.arn, [("shop", "items")], "validate-only")  # forgets the failure
        until(lambda: _failure_write_waiting(target_db))
        assert _items(engine, task) == ("Pending records", 1, 0)
    wait_for(engine, task, state_of("shop.items", "Mismatched records"))
    assert [(row[4], row[5]) for row in failures(target_db)] == [('{"key": ["9"]}', "MISSING_TARGET")] * 2
    engine.stop_task(task.arn)


def test_a_validation_only_task_validates_the_target_as_it_is(source_db, target_db, shop, engine) -> None:
    """ValidationOnly previews validation without migrating or replicating data ("Data validation task
    settings"; "AWS DMS data validation", Validation only tasks): nothing is copied, and the target's
    differences are reported."""
    target_db.execute(
        "INSERT INTO shop.items SELECT g, 'item ' || g, g * 1.25, "
        "'2024-01-01 00:00:00+00'::timestamptz + g * interval '1 hour', ARRAY['a', g::text] "
        "FROM generate_series(1, 48) g"
    )  # rows 49 and 50 were never migrated
    task = make_task(source_db, target_db, task_settings=validation(ValidationOnly=True))
    engine.start_task(task)
    runtime = wait_for(engine, task, finished)
    tables = stats(runtime)
    assert tables["shop.items"].validation_state == "Mismatched records"
    assert [(row[4], row[5]) for row in failures(target_db)] == [
        ('{"key": ["49"]}', "MISSING_TARGET"),
        ('{"key": ["50"]}', "MISSING_TARGET"),
    ] + [(json.dumps({"key": [region, code]}), "MISSING_TARGET") for region, code in _codes()]
    assert target_db.execute("SELECT count(*) FROM shop.items") == [(48,)]  # nothing copied


def _codes() -> list[tuple[str, str]]:
    """shop.codes' keys (region, code) in the order of the failures query (its KEY text)."""
    keys = [("EU" if g % 2 == 0 else "US", f"c{g}") for g in range(1, 21)]
    return sorted(keys, key=lambda k: json.dumps({"key": list(k)}))


def test_a_cdc_task_validates_the_rows_already_there_first(source_db, target_db, shop, engine) -> None:
    """ "For a CDC only task with validation enabled, all pre-existing data in a table is validated before
    starting validation of new data" ("AWS DMS data validation"). The target already holds the rows (as
    after pg2rds's own load), but one differs."""
    for table in ("items", "codes"):
        rows = source_db.execute(f"SELECT * FROM shop.{table}")
        conn = target_db.connect()
        with conn.cursor() as cur:
            cur.executemany(
                f"INSERT INTO shop.{table} VALUES ({', '.join(['%s'] * len(rows[0]))})", rows
            )  # fmt: skip
        conn.close()
    target_db.execute("UPDATE shop.items SET price = 1 WHERE id = 4")
    task = make_task(source_db, target_db, migration_type="cdc", task_settings=validation())
    engine.start_task(task)
    runtime = wait_for(engine, task, state_of("shop.items", "Mismatched records"))
    assert stats(runtime)["shop.items"].validation_failed_records == 1
    wait_for(engine, task, validated(["shop.codes"]))
    assert [(row[4], row[5]) for row in failures(target_db)] == [('{"key": ["4"]}', "RECORD_DIFF")]
    engine.stop_task(task.arn)


def test_a_resumed_task_validates_the_changes_made_while_it_was_stopped(
    source_db, target_db, shop, engine
) -> None:
    """A stopped CDC task resumed keeps its validation (it does not validate the tables all over again)
    and validates the rows changed meanwhile once it applies them ("AWS DMS data validation": changes are
    validated as they are replicated)."""
    task = _running(engine, source_db, target_db, ValidationQueryCdcDelaySeconds=2)
    engine.stop_task(task.arn)
    source_db.execute("UPDATE shop.items SET name = 'renamed' WHERE id IN (11, 12)")
    engine.start_task(task)
    runtime = wait_for(engine, task, lambda r: stats(r)["shop.items"].validation_pending_records == 2)
    assert stats(runtime)["shop.items"].validation_state == "Pending records"
    assert stats(runtime)["shop.codes"].validation_state == "Validated"  # not validated again
    wait_for(engine, task, validated(["shop.items"]))
    assert target_db.execute("SELECT name FROM shop.items WHERE id = 11") == [("renamed",)]
    assert failures(target_db) == []
    engine.stop_task(task.arn)


def test_a_changed_row_is_found_by_its_key_whatever_the_source_sessions_time_zone(
    source_db, target_db, shop, engine
) -> None:
    """The slot prints a timestamptz key in the source's TimeZone (Tokyo here); the row changed is still
    compared, and a difference reported by its key ("AWS DMS data validation": changed rows validated
    during CDC; a failure's KEY names the row)."""
    for db in (source_db, target_db):
        db.execute("CREATE TABLE shop.readings (at timestamptz PRIMARY KEY, n integer)")
    source_db.execute("INSERT INTO shop.readings VALUES ('2024-01-01 00:00:00+00', 1)")
    source_db.execute(f"ALTER DATABASE {source_db.name} SET timezone = 'Asia/Tokyo'")
    task = _running(engine, source_db, target_db)
    wait_for(engine, task, validated(["shop.readings"]))
    target_db.execute("ALTER TABLE shop.readings ADD CONSTRAINT small CHECK (n < 100)")
    source_db.execute("UPDATE shop.readings SET n = 500")  # the target refuses it: the change is skipped

    wait_for(engine, task, state_of("shop.readings", "Mismatched records"))
    assert [(row[4], row[5], json.loads(row[6])) for row in failures(target_db)] == [
        ('{"key": ["2024-01-01 00:00:00+00"]}', "RECORD_DIFF", [[{"n": "500"}, {"n": "1"}]]),
    ]
    engine.stop_task(task.arn)


def test_rows_changing_during_the_load_and_validation_are_no_failures(source_db, target_db, engine) -> None:
    """While the source keeps changing during the full load and its validation, nothing the stand-in
    applied correctly is reported: DMS delays and retries CDC differences "so that a row not yet applied
    is not one" ("AWS DMS data validation"; "Data validation task settings",
    RecordFailureDelayLimitInMinutes). Once the writes stop, every table is "Validated" with no failure."""
    _shop(source_db, target_db, rows=5000)
    # without a replica identity DMS would drop the updates (and validation would rightly report them)
    source_db.execute("ALTER TABLE shop.codes REPLICA IDENTITY USING INDEX codes_region_code_key")
    stop = threading.Event()

    def write() -> None:
        conn = source_db.connect()  # autocommit: each statement its own transaction
        cur = conn.cursor()
        n = 0
        while not stop.is_set():
            n += 1
            cur.execute(
                "UPDATE shop.items SET price = price + 1, name = name || '+' WHERE id = %s", (n % 5000 + 1,)
            )
            cur.execute("INSERT INTO shop.items (id, name) VALUES (%s, 'new')", (100000 + n,))
            cur.execute("DELETE FROM shop.items WHERE id = %s", (100000 + n - 3,))
            cur.execute("UPDATE shop.codes SET label = label || '+' WHERE code = %s", (f"c{n % 20 + 1}",))
            time.sleep(0.002)
        conn.close()

    writer = threading.Thread(target=write)
    task = make_task(
        source_db, target_db, migration_type="full-load-and-cdc", task_settings=validation(PartitionSize=500)
    )
    writer.start()
    try:
        engine.start_task(task)
        wait_for(engine, task, lambda r: r.full_load_finished or finished(r))
        time.sleep(3)  # validation under way while the writes go on
    finally:
        stop.set()
        writer.join()
    runtime = wait_for(engine, task, validated(["shop.items", "shop.codes"]), timeout=120)
    assert runtime.status == "running"
    assert stats(runtime)["shop.items"].inserts > 0  # changes did arrive through CDC
    assert failures(target_db) == []
    assert fingerprint(source_db, "shop", "items") == fingerprint(target_db, "shop", "items")
    engine.stop_task(task.arn)


def test_updates_dms_drops_for_want_of_a_replica_identity_are_reported(
    source_db, target_db, shop, engine
) -> None:
    """DMS ignores UPDATE and DELETE on a table without a replica identity ("Using a PostgreSQL database as
    an AWS DMS source", limitations), but validates it by its unique index ("AWS DMS data validation"):
    validated again (ReloadTables validate-only), the row it did not update is a RECORD_DIFF failure."""
    task = _running(engine, source_db, target_db)
    source_db.execute("UPDATE shop.codes SET label = 'relabelled' WHERE code = 'c3'")
    engine.reload_tables(task.arn, [("shop", "codes")], "validate-only")

    wait_for(engine, task, state_of("shop.codes", "Mismatched records"))
    assert [(row[2], row[4], row[5], json.loads(row[6])) for row in failures(target_db)] == [
        ("codes", '{"key": ["US", "c3"]}', "RECORD_DIFF", [[{"label": "relabelled"}, {"label": "label 3"}]]),
    ]
    engine.stop_task(task.arn)
