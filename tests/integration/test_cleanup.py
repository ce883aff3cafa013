"""cleanup: removes exactly what this migration owns (DMS resources by name and tag, the source slot)."""

import json

import boto3
import pytest
from conftest import make_secret, spec_for

from pg2rds import lease, phases
from pg2rds.dms.cleanup import cleanup
from pg2rds.dms.endpoints import ensure_endpoints
from pg2rds.dms.instance import ensure_instance
from pg2rds.dms.task import ensure_task_started
from pg2rds.errors import MigrationEnded
from pg2rds.naming import ResourceNames
from pg2rds.postgres.slots import ensure_slot
from pg2rds.secrets import get_credentials
from pg2rds.spec import parse_spec
from pg2rds.state import CleanupState, MigrationState, SourceReport, TargetReport

ROLE = "arn:aws:iam::123456789012:role/pg2rds-dms-secrets-access"


def migrate(dms, data: dict) -> MigrationState:
    """Create and start everything a migration owns, as the state machine's phases would."""
    spec = parse_spec(data)
    instance = ensure_instance(dms, spec, ensure_instance(dms, spec, None))
    found = {"server_version": "16", "server_version_num": 160000}
    source = SourceReport(database=get_credentials(spec.source, "source").database, **found)
    target = TargetReport(database=get_credentials(spec.target, "target").database, **found)
    endpoints = ensure_endpoints(dms, spec, source, target, ROLE)
    slot = None
    if spec.uses_cdc:
        slot = ensure_slot(spec.source, get_credentials(spec.source, "source"), endpoints.slot_name)
    task = ensure_task_started(dms, spec, instance, endpoints, None, slot=slot)
    task = ensure_task_started(dms, spec, instance, endpoints, task, slot=slot)
    return MigrationState(spec=spec, instance=instance, endpoints=endpoints, slot=slot, task=task)


def run_cleanup(dms, state: MigrationState, max_passes: int = 10) -> list[CleanupState]:
    passes: list[CleanupState] = []
    for _ in range(max_passes):
        result = cleanup(dms, state)
        passes.append(result)
        if result.ready:
            return passes
        state = state.model_copy(update={"cleanup": result})
    raise AssertionError(f"cleanup not done after {max_passes} passes: {passes[-1]}")


def identifiers(dms) -> dict[str, set[str]]:
    return {
        "instances": {
            i["ReplicationInstanceIdentifier"]
            for i in dms.describe_replication_instances()["ReplicationInstances"]
        },
        "endpoints": {e["EndpointIdentifier"] for e in dms.describe_endpoints()["Endpoints"]},
        "tasks": {
            t["ReplicationTaskIdentifier"] for t in dms.describe_replication_tasks()["ReplicationTasks"]
        },
    }


def slots(db) -> set[str]:
    return {
        row[0]
        for row in db.execute(
            "SELECT slot_name FROM pg_replication_slots WHERE database = current_database()"
        )
    }


def test_removes_ours_and_leaves_another_migrations_resources_and_slot(dms, source_db, target_db) -> None:
    ours = migrate(dms, spec_for(source_db, target_db, "orders", migration_type="full-load-and-cdc"))
    migrate(dms, spec_for(source_db, target_db, "billing", migration_type="full-load-and-cdc"))
    names = ResourceNames("orders")
    # each migration created its slot on the source before its task
    assert slots(source_db) == {names.slot, ResourceNames("billing").slot}

    passes = run_cleanup(dms, ours)

    assert passes[0].ready is False and passes[0].remaining == [
        "task pg2rds-orders (stopping)",
        "endpoint pg2rds-orders-source, endpoint pg2rds-orders-target, instance and slot (after the task)",
    ]
    assert 0 < passes[0].wait_seconds <= 2
    done = passes[-1]
    assert done.ready and done.remaining == [] and done.failure is None
    assert done.removed == [
        "task pg2rds-orders",
        "endpoint pg2rds-orders-source",
        "endpoint pg2rds-orders-target",
        "instance pg2rds-orders",
        "slot pg2rds_orders on source",
    ]
    assert identifiers(dms) == {
        "instances": {"pg2rds-billing"},
        "endpoints": {"pg2rds-billing-source", "pg2rds-billing-target"},
        "tasks": {"pg2rds-billing"},
    }
    assert slots(source_db) == {"pg2rds_billing"}

    # a second cleanup (a re-run, a retried Lambda) has nothing left to do
    again = run_cleanup(dms, ours)
    assert len(again) == 1
    assert (again[0].ready, again[0].removed, again[0].remaining) == (True, [], [])
    assert slots(source_db) == {"pg2rds_billing"}


def test_never_deletes_a_reused_instance_or_untagged_same_named_resources(dms, source_db, target_db) -> None:
    shared = dms.create_replication_instance(
        ReplicationInstanceIdentifier="shared-dms", ReplicationInstanceClass="dms.t3.large"
    )["ReplicationInstance"]["ReplicationInstanceArn"]
    data = spec_for(source_db, target_db, "orders", instance={"existing_arn": shared})
    state = migrate(dms, data)
    # an endpoint named like ours by someone else, for a migration that failed before creating endpoints
    foreign = dms.create_endpoint(
        EndpointIdentifier="pg2rds-other-source", EndpointType="source", EngineName="postgres"
    )["Endpoint"]["EndpointArn"]
    other = MigrationState(spec=parse_spec(spec_for(source_db, target_db, "other")))

    done = run_cleanup(dms, state)[-1]
    assert done.kept == [f"instance {shared} (existing, not created by pg2rds)"]
    assert identifiers(dms)["instances"] == {"shared-dms"}
    assert identifiers(dms)["tasks"] == set() and identifiers(dms)["endpoints"] == {"pg2rds-other-source"}

    result = run_cleanup(dms, other)[-1]
    assert result.ready and result.kept == ["endpoint pg2rds-other-source (not tagged for this migration)"]
    assert [e["EndpointArn"] for e in dms.describe_endpoints()["Endpoints"]] == [foreign]


def test_failure_carries_the_lambda_error_message(dms, source_db, target_db) -> None:
    state = MigrationState(
        spec=parse_spec(spec_for(source_db, target_db, "orders")),
        error={
            "Error": "ConnectionTestFailed",
            "Cause": json.dumps(
                {
                    "errorMessage": "DMS could not connect to the target endpoint pg2rds-orders-target",
                    "errorType": "ConnectionTestFailed",
                    "requestId": "4f1c",
                    "stackTrace": ['  File "/var/task/handler.py", line 12'],
                }
            ),
        },
    )
    [result] = run_cleanup(dms, state)
    assert result.ready
    assert result.failure is not None
    assert result.failure.error == "ConnectionTestFailed"
    assert result.failure.cause == "DMS could not connect to the target endpoint pg2rds-orders-target"


def test_a_plain_cause_is_kept_as_is(dms, source_db, target_db) -> None:
    state = MigrationState(
        spec=parse_spec(spec_for(source_db, target_db, "orders")),
        error={"Error": "States.Timeout", "Cause": "Task timed out after 900.00 seconds"},
    )
    [result] = run_cleanup(dms, state)
    # a Fail state may not raise a "States." error: the name keeps its meaning without the prefix
    assert (result.failure.error, result.failure.cause) == (
        "StepFunctionsTimeout",
        "Task timed out after 900.00 seconds",
    )


def test_an_unreachable_source_is_reported_not_fatal(dms) -> None:
    spec = parse_spec(
        {
            "migration_id": "orders",
            "source": {
                "host": "127.0.0.1",
                "port": 1,
                "database": "x",
                "secret_arn": make_secret("u", "p", port=1, dbname="x"),
                "ssl_mode": "none",
            },
            "target": {
                "host": "127.0.0.1",
                "port": 1,
                "database": "x",
                "secret_arn": make_secret("u", "p", port=1, dbname="x"),
                "ssl_mode": "none",
            },
        }
    )
    [result] = run_cleanup(dms, MigrationState(spec=spec))
    assert result.ready
    [left] = result.remaining
    assert left.startswith("slot pg2rds_orders on source (could not check it:")
    assert result.failure is not None and result.failure.error == "CleanupIncomplete"
    assert "pg2rds_orders" in result.failure.cause


def test_a_phase_still_running_when_its_chain_ended_is_waited_for(
    dms, source_db, target_db, monkeypatch
) -> None:
    """StopExecution does not stop a Lambda under way: "Create replication slot" may issue its statement
    after the end-of-execution cleanup has looked. The phase registers in the lease while it runs, the
    cleanup waits for it, and so removes the slot it created; a phase starting later creates nothing."""
    boto3.client("dynamodb").create_table(
        TableName="pg2rds-lease",
        AttributeDefinitions=[{"AttributeName": "migration_id", "AttributeType": "S"}],
        KeySchema=[{"AttributeName": "migration_id", "KeyType": "HASH"}],
        BillingMode="PAY_PER_REQUEST",
    )
    monkeypatch.setenv(lease.LEASE_TABLE_ENV, "pg2rds-lease")
    lineage = "arn:aws:states:us-east-1:123456789012:execution:pg2rds-migration:first"
    spec = parse_spec(spec_for(source_db, target_db, migration_type="full-load-and-cdc"))
    state = MigrationState(spec=spec, lineage=lineage, execution_arn=lineage)
    phases.take_lease(state)
    slot = ResourceNames(spec.migration_id).slot

    with lease.running_phase(spec.migration_id, lineage, "create-slot"):  # the Lambda has started...
        first = cleanup(dms, state)  # ...the execution is stopped, and its cleanup looks...
        ensure_slot(spec.source, get_credentials(spec.source, "source"), slot)  # ...then the slot comes
    assert not first.ready
    assert first.remaining[0].startswith("create-slot (running since ")
    assert lease.holder(spec.migration_id) is not None  # kept while something may still appear

    passes = run_cleanup(dms, state.model_copy(update={"cleanup": first}))
    assert f"slot {slot} on source" in passes[-1].removed
    assert slots(source_db) == set()
    assert lease.holder(spec.migration_id) is None

    with pytest.raises(MigrationEnded):  # a Lambda of that chain starting only now
        phases.create_slot(state)
    assert slots(source_db) == set()
