"""The secret is the server: a spec cannot send a stored secret (and then the data) anywhere else.

The whole state machine runs with the DMS stand-in that really moves data, so a redirect that got through
would copy rows. A bystander cluster with ``log_connections = on`` and the same superuser password as the
test clusters (as a server an attacker controls could have) records every connection attempt it receives.
"""

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import Database, spec_for
from judge import account_dms_resources

from pg2rds_cli.executions import ExecutionView, watch
from pg2rds_emulator.dms_standin import StandInEngine
from pg2rds_emulator.embedded import EmbeddedAws
from pg2rds_emulator.pgcluster import Cluster, start_cluster

TABLE = "CREATE TABLE crown_jewels (id int PRIMARY KEY, what text)"


@pytest.fixture(scope="module")
def bystander() -> Iterator[Cluster]:
    """Another server holding a ``crown`` database, logging every connection it receives."""
    cluster = start_cluster("bystander", {"log_connections": "on"})
    cluster.create_database("crown")
    cluster.execute("crown", TABLE)
    cluster.execute("crown", "INSERT INTO crown_jewels SELECT g, 'jewel ' || g FROM generate_series(1, 5) g")
    yield cluster
    cluster.destroy()


def connections_logged(log: Path, since: int) -> list[str]:
    with open(log, errors="replace") as file:
        file.seek(since)
        return [line for line in file if "connection received" in line or "connection authorized" in line]


def run(aws: EmbeddedAws, spec: dict) -> ExecutionView:
    sfn = aws.client("stepfunctions")
    arn = sfn.start_execution(stateMachineArn=aws.state_machine_arn, input=json.dumps(spec))["executionArn"]
    return watch(sfn, arn, lambda view: None, interval_seconds=0.1, timeout_seconds=120)


@pytest.mark.parametrize("side", ["source", "target"])
def test_a_spec_pointing_a_secret_at_another_server_is_refused_before_any_connection(
    side: str, bystander: Cluster, source_db: Database, target_db: Database
) -> None:
    source_db.execute(TABLE)
    source_db.execute("INSERT INTO crown_jewels VALUES (1, 'the source row')")
    target_db.execute(TABLE)
    log_offset = bystander.log_file.stat().st_size

    with EmbeddedAws(StandInEngine(), time_scale=0.01) as aws:
        spec = spec_for(source_db, target_db, migration_id=f"redirect-{side}")
        for name, db in (("source", source_db), ("target", target_db)):
            spec[name].update(host="127.0.0.1", port=db.cluster.port, database=db.name)
        # keep the side's secret, name the bystander's server and database instead of the secret's
        spec[side].update(port=bystander.port, database="crown")
        view = run(aws, spec)
        leftovers = account_dms_resources(aws)

    assert view.status == "FAILED"
    assert (view.failed_state, view.error) == ("Validate source", "SpecInvalid"), view.cause
    assert f"{side}.port is {bystander.port}" in view.cause and f"{side}.database is 'crown'" in view.cause
    assert "leave host, port and database out of the spec" in view.cause
    assert connections_logged(bystander.log_file, log_offset) == []  # the bystander saw nobody
    assert target_db.execute("SELECT count(*) FROM crown_jewels") == [(0,)]
    assert bystander.execute("crown", "SELECT count(*) FROM crown_jewels") == [(5,)]
    assert leftovers == []


def test_the_same_server_named_in_the_spec_is_accepted(source_db: Database, target_db: Database) -> None:
    """Repeating what the secret says is allowed: the spec may confirm the server, not choose it."""
    source_db.execute(TABLE)
    source_db.execute("INSERT INTO crown_jewels VALUES (1, 'the source row')")
    target_db.execute(TABLE)

    with EmbeddedAws(StandInEngine(), time_scale=0.01) as aws:
        spec = spec_for(source_db, target_db, migration_id="confirmed")
        spec["source"].update(host="127.0.0.1", port=source_db.cluster.port, database=source_db.name)
        view = run(aws, spec)

    assert view.status == "SUCCEEDED", view.cause
    assert target_db.execute("SELECT what FROM crown_jewels") == [("the source row",)]
