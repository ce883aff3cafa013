"""One live execution per migration id, through the served embedded AWS as an operator meets it: a CDC
migration waits for its cutover; the same spec is started twice more (``pg2rds start`` and a raw
``StartExecution`` with another name). Both duplicates are refused, naming the live execution, and their
cleanup (the end-of-execution rule's) touches nothing of it; the live one then cuts over and ends
SUCCEEDED with the target equal and nothing left behind."""

import time
from pathlib import Path

import boto3
import pytest
from conftest import Database
from judge import dms_resources, slots
from served import eventually, operator_env, pg2rds, serve

from pg2rds_cli.cutover import WAITING_STATE
from pg2rds_cli.executions import ExecutionReader, read_execution


def ended(sfn, arn: str):
    view = read_execution(sfn, arn)
    return view if view.done else None


def finished(sfn, machine: str, count: int) -> list[dict] | None:
    runs = sfn.list_executions(stateMachineArn=machine)["executions"]
    done = [run for run in runs if run["status"] != "RUNNING"]
    return done if len(done) >= count else None


@pytest.mark.slow
def test_duplicate_starts_are_refused_and_leave_the_live_migration_alone(
    source_db: Database, target_db: Database, tmp_path: Path
) -> None:
    for db in (source_db, target_db):
        db.execute("CREATE TABLE items (id int PRIMARY KEY, name text)")
    source_db.execute("INSERT INTO items SELECT g, 'n' || g FROM generate_series(1, 1000) g")
    server, ready, spec_path = serve(
        source_db, target_db, tmp_path, {"migration_id": "dup", "migration_type": "full-load-and-cdc"}
    )
    try:
        env = operator_env(ready)
        client = {"endpoint_url": ready["endpoint_url"], "region_name": "us-east-1",
                  "aws_access_key_id": "local", "aws_secret_access_key": "local"}  # fmt: skip
        sfn, dms = boto3.client("stepfunctions", **client), boto3.client("dms", **client)
        cleanup_machine = ready["state_machine_arn"] + "-cleanup"

        started = pg2rds("start", str(spec_path), env=env)
        assert started.returncode == 0, started.stderr
        live = started.stdout.strip()
        reader = ExecutionReader(sfn, live)
        eventually(lambda: reader.read().current_state == WAITING_STATE, "the cutover wait")
        owned = sorted(dms_resources(dms))
        assert owned and slots(source_db) == [("pg2rds_dup",)]

        time.sleep(1.1)  # `pg2rds start` names executions to the second
        again = pg2rds("start", str(spec_path), env=env)
        assert again.returncode == 0, again.stderr
        raw = sfn.start_execution(
            stateMachineArn=ready["state_machine_arn"], name="dup-by-hand", input=spec_path.read_text()
        )["executionArn"]
        for duplicate in (again.stdout.strip(), raw):
            view = eventually(lambda d=duplicate: ended(sfn, d), f"{duplicate} to end")
            assert view.status == "FAILED"
            assert view.error == "MigrationAlreadyRunning", view.cause
            assert live in view.cause
            assert "Validate source" not in view.states and "Clean up after failure" not in view.states
        # the end-of-execution rule ran the cleanup of both duplicates' lineages
        cleanups = eventually(lambda: finished(sfn, cleanup_machine, 2), "the duplicates' cleanups")
        assert [e["status"] for e in cleanups] == ["SUCCEEDED", "SUCCEEDED"]
        assert read_execution(sfn, live).current_state == WAITING_STATE
        assert sorted(dms_resources(dms)) == owned
        assert slots(source_db) == [("pg2rds_dup",)]

        source_db.execute("INSERT INTO items VALUES (1001, 'after the duplicates')")
        time.sleep(2)
        decided = pg2rds("cutover", live, env=env)
        assert decided.returncode == 0, decided.stderr
        watched = pg2rds("watch", live, env=env)
        assert "Migration SUCCEEDED" in watched.stderr, watched.stderr
        assert dms_resources(dms) == []
    finally:
        server.terminate()
        assert server.wait(timeout=30) == 0
    assert target_db.execute("SELECT count(*), sum(id) FROM items") == [(1001, 501501)]
    assert slots(source_db) == []
