"""The keys DMS's validation found different, read from awsdms_validation_failures_v1 on a real target."""

import json
from contextlib import closing

from conftest import Database

from pg2rds.postgres.validation_failures import failing_keys, render_key

TABLE = "awsdms_control.awsdms_validation_failures_v1"


def _failures_table(db: Database) -> None:
    db.execute("CREATE SCHEMA awsdms_control")
    db.execute(
        f'CREATE TABLE {TABLE} ("TASK_NAME" varchar(128), "TABLE_OWNER" varchar(128), '
        '"TABLE_NAME" varchar(128), "FAILURE_TIME" timestamp, "KEY_TYPE" varchar(128), "KEY" text, '
        '"FAILURE_TYPE" varchar(128), "DETAILS" varchar(8000))'
    )


def _fail(db: Database, task: str, table: str, key: list[str], kind: str, seconds_ago: int) -> None:
    db.execute(
        f"INSERT INTO {TABLE} VALUES "
        "(%s, 'public', %s, now() - make_interval(secs => %s), 'Row', %s, %s, '{}')",
        (task, table, seconds_ago, json.dumps({"key": key}), kind),
    )


def test_the_last_keys_of_this_task_and_table_are_read_bounded_with_the_total(target_db: Database) -> None:
    _failures_table(target_db)
    for index in range(8):
        _fail(target_db, "task-a", "orders", [str(index)], "RECORD_DIFF", seconds_ago=100 - index)
    _fail(target_db, "task-a", "orders", ["7"], "RECORD_DIFF", seconds_ago=1)  # failed again: one key
    _fail(target_db, "task-a", "orders", ["a b", "2"], "MISSING_TARGET", seconds_ago=0)
    _fail(target_db, "task-b", "orders", ["99"], "RECORD_DIFF", seconds_ago=0)  # another task's
    _fail(target_db, "task-a", "customers", ["98"], "RECORD_DIFF", seconds_ago=0)  # another table's

    with closing(target_db.connect()) as conn:
        keys, total = failing_keys(conn, "awsdms_control", "task-a", "public", "orders", 3)
    assert keys == ["MISSING_TARGET a b,2", "RECORD_DIFF 7", "RECORD_DIFF 6"]
    assert total == 9


def test_no_failures_table_yet_means_no_keys(target_db: Database) -> None:
    with closing(target_db.connect()) as conn:
        assert failing_keys(conn, "awsdms_control", "task-a", "public", "orders", 5) == ([], 0)


def test_keys_are_rendered_from_dms_json() -> None:
    assert render_key('{"key": ["3451491"]}') == "3451491"
    assert render_key("not json") == "not json"
