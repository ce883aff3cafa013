"""Starting a migration by event, end to end: `aws events put-events` on the stack's start bus, against
`pg2rds serve --local`, starts an execution that runs to the end; an event the rule does not match (another
detail-type, or the default bus) starts nothing."""

import json
import os
import subprocess
import time
from pathlib import Path

import boto3
import pytest
from conftest import Database
from served import PG2RDS, serve

ROWS = 300


def executions(sfn, state_machine_arn: str) -> list[dict]:
    return sfn.list_executions(stateMachineArn=state_machine_arn)["executions"]


@pytest.mark.slow
def test_a_start_event_on_the_start_bus_runs_a_migration_and_nothing_else_starts_one(
    source_db: Database, target_db: Database, tmp_path: Path
) -> None:
    for db in (source_db, target_db):
        db.execute("CREATE TABLE items (id int PRIMARY KEY, name text)")
    source_db.execute(f"INSERT INTO items SELECT g, 'n' || g FROM generate_series(1, {ROWS}) g")
    server, ready, spec_path = serve(
        source_db, target_db, tmp_path, {"migration_id": "by-event", "migration_type": "full-load"}
    )
    try:
        session = boto3.Session(
            aws_access_key_id="local", aws_secret_access_key="local", region_name="us-east-1"
        )
        events = session.client("events", endpoint_url=ready["endpoint_url"])
        sfn = session.client("stepfunctions", endpoint_url=ready["endpoint_url"])
        machine = ready["state_machine_arn"]
        [bus] = [b["Name"] for b in events.list_event_buses()["EventBuses"] if b["Name"] != "default"]
        detail = spec_path.read_text()
        start = {"Source": "pg2rds", "DetailType": "Start migration", "Detail": detail}

        unmatched = [
            {**start, "EventBusName": bus, "DetailType": "Stop migration"},
            {**start, "Source": "someone-else", "EventBusName": bus},
            start,  # the default bus: the rule is not there
        ]
        assert events.put_events(Entries=unmatched)["FailedEntryCount"] == 0
        time.sleep(2)  # delivery is asynchronous, as in AWS
        assert executions(sfn, machine) == []

        assert events.put_events(Entries=[{**start, "EventBusName": bus}])["FailedEntryCount"] == 0
        deadline = time.monotonic() + 30
        while not executions(sfn, machine) and time.monotonic() < deadline:
            time.sleep(0.2)
        [execution] = executions(sfn, machine)
        assert json.loads(
            sfn.describe_execution(executionArn=execution["executionArn"])["input"]
        ) == json.loads(detail)
        env = {
            **os.environ, "AWS_ENDPOINT_URL": ready["endpoint_url"], "AWS_DEFAULT_REGION": "us-east-1",
            "AWS_ACCESS_KEY_ID": "local", "AWS_SECRET_ACCESS_KEY": "local",
        }  # fmt: skip
        watched = subprocess.run(
            [*PG2RDS, "watch", execution["executionArn"]],
            env=env,
            capture_output=True,
            text=True,
            timeout=180,
        )
        assert "Migration SUCCEEDED" in watched.stderr, watched.stderr
        assert len(executions(sfn, machine)) == 1
    finally:
        server.terminate()
        assert server.wait(timeout=30) == 0
    assert target_db.execute("SELECT count(*), sum(id) FROM items") == [(ROWS, ROWS * (ROWS + 1) // 2)]
