"""moto_dms through boto3 (botocore validation on): DMS's lifecycles, refusals and the engine seam."""

import json

import pytest
from botocore.exceptions import ClientError
from conftest import make_secret

from pg2rds_emulator import moto_dms
from pg2rds_emulator.dms_engine import TableStats


def code(raised: pytest.ExceptionInfo) -> str:
    return raised.value.response["Error"]["Code"]


def create_instance(dms, identifier: str = "ri") -> str:
    arn = dms.create_replication_instance(
        ReplicationInstanceIdentifier=identifier, ReplicationInstanceClass="dms.t3.medium"
    )["ReplicationInstance"]["ReplicationInstanceArn"]
    dms.describe_replication_instances()  # creating -> available
    return arn


def create_endpoint(dms, identifier: str, endpoint_type: str, secret_arn: str) -> str:
    return dms.create_endpoint(
        EndpointIdentifier=identifier,
        EndpointType=endpoint_type,
        EngineName="postgres",
        DatabaseName="app",
        PostgreSQLSettings={
            "SecretsManagerSecretId": secret_arn,
            "SecretsManagerAccessRoleArn": "arn:aws:iam::123456789012:role/dms-secrets",
            "SlotName": "pg2rds_x",
        },
    )["Endpoint"]["EndpointArn"]


@pytest.fixture
def wired(dms) -> dict[str, str]:
    secret = make_secret("alice", "s3cret", host="db.example", port=6543)
    return {
        "instance": create_instance(dms),
        "source": create_endpoint(dms, "src", "source", secret),
        "target": create_endpoint(dms, "tgt", "target", secret),
    }


def create_task(dms, wired: dict[str, str], migration_type: str = "full-load") -> str:
    created = dms.create_replication_task(
        ReplicationTaskIdentifier="task",
        SourceEndpointArn=wired["source"],
        TargetEndpointArn=wired["target"],
        ReplicationInstanceArn=wired["instance"],
        MigrationType=migration_type,
        TableMappings='{"rules": []}',
        ReplicationTaskSettings="{}",
    )["ReplicationTask"]
    assert created["Status"] == "creating"
    return created["ReplicationTaskArn"]


def describe_task(dms, arn: str) -> dict:
    return dms.describe_replication_tasks(Filters=[{"Name": "replication-task-arn", "Values": [arn]}])[
        "ReplicationTasks"
    ][0]


def test_install_is_idempotent_and_keeps_or_replaces_the_engine(engine) -> None:
    moto_dms.install()
    assert moto_dms.current_engine() is engine
    other = moto_dms.FakeEngine()
    moto_dms.install(other)
    assert moto_dms.current_engine() is other
    moto_dms.set_engine(engine)
    assert moto_dms.current_engine() is engine


def test_duplicates_are_refused_and_endpoints_are_active(dms, wired) -> None:
    with pytest.raises(ClientError) as raised:
        create_endpoint(dms, "src", "source", "arn:aws:secretsmanager:us-east-1:123456789012:secret:x")
    assert code(raised) == "ResourceAlreadyExistsFault"
    with pytest.raises(ClientError) as raised:
        create_instance(dms, "ri")
    assert code(raised) == "ResourceAlreadyExistsFault"
    assert {e["Status"] for e in dms.describe_endpoints()["Endpoints"]} == {"active"}
    assert len(dms.describe_endpoints()["Endpoints"]) == 2


def test_filters_matching_nothing_raise_not_found_like_dms(dms) -> None:
    for call, name in [
        (dms.describe_endpoints, "endpoint-id"),
        (dms.describe_replication_instances, "replication-instance-id"),
        (dms.describe_replication_tasks, "replication-task-id"),
    ]:
        with pytest.raises(ClientError) as raised:
            call(Filters=[{"Name": name, "Values": ["nope"]}])
        assert code(raised) == "ResourceNotFoundFault"
    assert dms.describe_endpoints()["Endpoints"] == []  # unfiltered: an empty list


def test_connection_reports_testing_once_then_the_engines_verdict(dms, engine, wired) -> None:
    engine.fail_connection("tgt", "could not connect to server: Connection timed out")
    for side in ("source", "target"):
        tested = dms.test_connection(ReplicationInstanceArn=wired["instance"], EndpointArn=wired[side])
        assert tested["Connection"]["Status"] == "testing"

    def statuses() -> dict[str, tuple[str, str]]:
        connections = dms.describe_connections(
            Filters=[{"Name": "replication-instance-arn", "Values": [wired["instance"]]}]
        )["Connections"]
        return {c["EndpointIdentifier"]: (c["Status"], c["LastFailureMessage"]) for c in connections}

    assert statuses() == {"src": ("testing", ""), "tgt": ("testing", "")}
    assert statuses() == {
        "src": ("successful", ""),
        "tgt": ("failed", "could not connect to server: Connection timed out"),
    }
    [source_info, _] = engine.tested
    # the server, port and login are the secret's; the database is the endpoint's DatabaseName
    assert (source_info.server_name, source_info.port) == ("db.example", 6543)
    assert source_info.database_name == "app"
    assert (source_info.username, source_info.password) == ("alice", "s3cret")
    assert source_info.postgres_settings["SlotName"] == "pg2rds_x"


def test_unreadable_secret_fails_the_connection(dms, wired) -> None:
    missing = "arn:aws:secretsmanager:us-east-1:123456789012:secret:gone-AbCdEf"
    endpoint = create_endpoint(dms, "broken", "source", missing)
    dms.test_connection(ReplicationInstanceArn=wired["instance"], EndpointArn=endpoint)
    flt = [{"Name": "endpoint-arn", "Values": [endpoint]}]
    dms.describe_connections(Filters=flt)
    [connection] = dms.describe_connections(Filters=flt)["Connections"]
    assert connection["Status"] == "failed" and missing in connection["LastFailureMessage"]


def test_a_secret_without_host_and_port_fails_the_connection(dms, engine, wired) -> None:
    """An RDS-managed master user secret (username and password only) cannot be used by DMS."""
    import boto3

    managed = boto3.client("secretsmanager", region_name="us-east-1").create_secret(
        Name="rds!db-1234", SecretString=json.dumps({"username": "postgres", "password": "pw"})
    )["ARN"]
    endpoint = create_endpoint(dms, "managed", "source", managed)
    dms.test_connection(ReplicationInstanceArn=wired["instance"], EndpointArn=endpoint)
    flt = [{"Name": "endpoint-arn", "Values": [endpoint]}]
    dms.describe_connections(Filters=flt)
    [connection] = dms.describe_connections(Filters=flt)["Connections"]
    assert connection["Status"] == "failed" and "lacks host, port" in connection["LastFailureMessage"]
    assert engine.tested == []  # nothing was tried against any server


def test_task_lifecycle_full_load(dms, engine, wired) -> None:
    engine.tables = [TableStats("public", "a", full_load_rows=5), TableStats("public", "b", full_load_rows=7)]
    arn = create_task(dms, wired)
    task = describe_task(dms, arn)
    assert task["Status"] == "ready" and "ReplicationTaskStats" not in task
    assert engine.started == []
    started = dms.start_replication_task(ReplicationTaskArn=arn, StartReplicationTaskType="start-replication")
    assert started["ReplicationTask"]["Status"] == "starting"
    [info] = engine.started
    assert (info.identifier, info.migration_type, info.source.username) == ("task", "full-load", "alice")

    task = describe_task(dms, arn)
    assert (task["Status"], task["StopReason"]) == ("stopped", "Stop Reason FULL_LOAD_ONLY_FINISHED")
    stats = task["ReplicationTaskStats"]
    assert (stats["FullLoadProgressPercent"], stats["TablesLoaded"], stats["TablesErrored"]) == (100, 2, 0)
    assert "FullLoadFinishDate" in stats and "StopDate" in stats

    rows = dms.describe_table_statistics(ReplicationTaskArn=arn)["TableStatistics"]
    assert [(r["SchemaName"], r["TableName"], r["FullLoadRows"], r["TableState"]) for r in rows] == [
        ("public", "a", 5, "Table completed"),
        ("public", "b", 7, "Table completed"),
    ]


def test_table_statistics_paginate(dms, engine, wired) -> None:
    engine.tables = [TableStats("s", f"t{i:03}", full_load_rows=1) for i in range(45)]
    arn = create_task(dms, wired)
    describe_task(dms, arn)
    dms.start_replication_task(ReplicationTaskArn=arn, StartReplicationTaskType="start-replication")
    pages = list(
        dms.get_paginator("describe_table_statistics").paginate(
            ReplicationTaskArn=arn, PaginationConfig={"PageSize": 20}
        )
    )
    assert [len(p["TableStatistics"]) for p in pages] == [20, 20, 5]
    filtered = dms.describe_table_statistics(
        ReplicationTaskArn=arn, Filters=[{"Name": "table-name", "Values": ["t007"]}]
    )["TableStatistics"]
    assert [r["TableName"] for r in filtered] == ["t007"]


def test_refusals_while_in_use_then_deletion_in_order(dms, engine, wired) -> None:
    arn = create_task(dms, wired, "full-load-and-cdc")
    describe_task(dms, arn)
    dms.start_replication_task(ReplicationTaskArn=arn, StartReplicationTaskType="start-replication")
    assert describe_task(dms, arn)["Status"] == "running"

    for call, kwargs in [
        (dms.delete_replication_task, {"ReplicationTaskArn": arn}),
        (dms.delete_endpoint, {"EndpointArn": wired["source"]}),
        (dms.delete_replication_instance, {"ReplicationInstanceArn": wired["instance"]}),
        (
            dms.start_replication_task,
            {"ReplicationTaskArn": arn, "StartReplicationTaskType": "start-replication"},
        ),
    ]:
        with pytest.raises(ClientError) as raised:
            call(**kwargs)
        assert code(raised) == "InvalidResourceStateFault"

    dms.stop_replication_task(ReplicationTaskArn=arn)
    task = describe_task(dms, arn)
    assert (task["Status"], task["StopReason"]) == ("stopped", "Stop Reason NORMAL")
    dms.delete_replication_task(ReplicationTaskArn=arn)
    assert engine.task_runtime(arn) is None
    dms.delete_endpoint(EndpointArn=wired["source"])
    dms.delete_endpoint(EndpointArn=wired["target"])
    dms.delete_replication_instance(ReplicationInstanceArn=wired["instance"])
    assert dms.describe_replication_tasks()["ReplicationTasks"] == []
    assert dms.describe_endpoints()["Endpoints"] == []
    assert dms.describe_replication_instances()["ReplicationInstances"] == []


def test_scripted_task_failure(dms, engine, wired) -> None:
    engine.tables = [TableStats("public", "a"), TableStats("public", "b")]
    engine.fail_task("ERROR: permission denied for table b", ["public.b"])
    arn = create_task(dms, wired, "full-load-and-cdc")
    describe_task(dms, arn)
    dms.start_replication_task(ReplicationTaskArn=arn, StartReplicationTaskType="start-replication")
    task = describe_task(dms, arn)
    assert (task["Status"], task["LastFailureMessage"]) == ("failed", "ERROR: permission denied for table b")
    assert task["ReplicationTaskStats"]["TablesErrored"] == 1
    states = {
        r["TableName"]: r["TableState"]
        for r in dms.describe_table_statistics(ReplicationTaskArn=arn)["TableStatistics"]
    }
    assert states == {"a": "Table completed", "b": "Table error"}
    settings = json.loads(engine.started[0].settings)
    assert settings == {}
