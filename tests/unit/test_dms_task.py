"""ensure_task_started: creation parameters and settings, starting once, reuse, failures."""

import json

import pytest
from conftest import make_secret

from pg2rds.dms.endpoints import ensure_endpoints
from pg2rds.dms.instance import ensure_instance
from pg2rds.dms.table_mappings import table_mappings
from pg2rds.dms.task import ensure_task_started, task_settings
from pg2rds.errors import ResourceConflict, SpecInvalid, TaskFailed
from pg2rds.naming import OWNER_TAG
from pg2rds.spec import parse_spec
from pg2rds.state import SlotState, SourceReport, TargetReport

ROLE = "arn:aws:iam::123456789012:role/pg2rds-dms-secrets-access"


def make_spec(**overrides):
    data = {
        "migration_id": "orders",
        "source": {"host": "src.example", "database": "shop", "secret_arn": make_secret("u", "p")},
        "target": {"host": "tgt.example", "database": "shop", "secret_arn": make_secret("u", "p")},
        "tables": {
            "include": [{"schema": "sales", "table": "%"}],
            "exclude": [{"schema": "sales", "table": "tmp%"}],
        },
        "task": {
            "target_table_prep_mode": "TRUNCATE_BEFORE_LOAD",
            "lob_max_size_kb": 64,
            "max_full_load_subtasks": 4,
        },
        "tags": {"team": "data"},
    }
    data.update(overrides)
    return parse_spec(data)


def prepare(dms, spec):
    instance = ensure_instance(dms, spec, ensure_instance(dms, spec, None))
    found = {"database": "shop", "server_version": "16", "server_version_num": 160000}
    endpoints = ensure_endpoints(dms, spec, SourceReport(**found), TargetReport(**found), ROLE)
    return instance, endpoints


def test_creates_the_task_with_our_mappings_settings_and_tags(dms, engine) -> None:
    spec = make_spec(migration_type="full-load-and-cdc")
    instance, endpoints = prepare(dms, spec)
    state = ensure_task_started(dms, spec, instance, endpoints, None)
    assert (state.ready, state.status, state.identifier) == (False, "creating", "pg2rds-orders")

    [task] = dms.describe_replication_tasks()["ReplicationTasks"]
    assert task["MigrationType"] == "full-load-and-cdc"
    assert (task["SourceEndpointArn"], task["TargetEndpointArn"]) == (
        endpoints.source_arn,
        endpoints.target_arn,
    )
    assert task["ReplicationInstanceArn"] == instance.arn
    assert json.loads(task["TableMappings"]) == json.loads(table_mappings(spec.tables))
    settings = json.loads(task["ReplicationTaskSettings"])
    assert settings["FullLoadSettings"]["TargetTablePrepMode"] == "TRUNCATE_BEFORE_LOAD"
    assert settings["FullLoadSettings"]["MaxFullLoadSubTasks"] == 4
    assert settings["FullLoadSettings"]["CommitRate"] == 10000
    assert settings["TargetMetadata"]["LimitedSizeLobMode"] is True
    assert settings["TargetMetadata"]["FullLobMode"] is False
    assert settings["TargetMetadata"]["LobMaxSize"] == 64
    assert settings["Logging"]["EnableLogging"] is True
    tags = dms.list_tags_for_resource(ResourceArn=state.arn)["TagList"]
    assert {t["Key"]: t["Value"] for t in tags} == {OWNER_TAG: "orders", "team": "data"}
    assert engine.started == []  # not started while DMS is still creating it


SLOT = SlotState(name="pg2rds_orders", plugin="test_decoding", lsn="0/1A2B3C8", created=True)


def test_a_cdc_only_task_starts_at_the_slots_position(dms, engine) -> None:
    spec = make_spec(migration_type="cdc")
    instance, endpoints = prepare(dms, spec)
    state = ensure_task_started(dms, spec, instance, endpoints, None, slot=SLOT)
    ensure_task_started(dms, spec, instance, endpoints, state, slot=SLOT)

    [task] = dms.describe_replication_tasks()["ReplicationTasks"]
    assert task["CdcStartPosition"] == "0/1A2B3C8"
    [started] = engine.started
    assert started.cdc_start_position == "0/1A2B3C8"
    assert started.source.postgres_settings["SlotName"] == "pg2rds_orders"
    assert started.source.postgres_settings["PluginName"] == "test-decoding"


def test_a_full_load_and_cdc_task_reads_the_slot_from_its_start(dms) -> None:
    spec = make_spec(migration_type="full-load-and-cdc")
    instance, endpoints = prepare(dms, spec)
    ensure_task_started(dms, spec, instance, endpoints, None, slot=SLOT)
    [task] = dms.describe_replication_tasks()["ReplicationTasks"]
    assert "CdcStartPosition" not in task


def test_full_lob_mode_settings(aws) -> None:
    settings = task_settings(make_spec(task={"lob_mode": "full"}))["TargetMetadata"]
    assert (settings["FullLobMode"], settings["LimitedSizeLobMode"], settings["SupportLobs"]) == (
        True,
        False,
        True,
    )


def test_starts_once_when_ready_and_stays_started_on_retries(dms, engine) -> None:
    spec = make_spec()
    instance, endpoints = prepare(dms, spec)
    first = ensure_task_started(dms, spec, instance, endpoints, None)
    second = ensure_task_started(dms, spec, instance, endpoints, first)
    assert (second.ready, second.status, second.polls) == (True, "starting", 2)
    assert [task.identifier for task in engine.started] == ["pg2rds-orders"]
    assert engine.started[0].migration_type == "full-load"

    # a retried invocation (the full load has already finished: stopped) starts nothing again
    third = ensure_task_started(dms, spec, instance, endpoints, second)
    assert third.ready and third.status == "stopped" and third.arn == first.arn
    assert len(engine.started) == 1
    assert len(dms.describe_replication_tasks()["ReplicationTasks"]) == 1


def test_a_failed_task_surfaces_dms_failure_message(dms, engine) -> None:
    spec = make_spec(migration_type="full-load-and-cdc")
    instance, endpoints = prepare(dms, spec)
    state = ensure_task_started(dms, spec, instance, endpoints, None)
    state = ensure_task_started(dms, spec, instance, endpoints, state)
    engine.fail_task("Error executing source loop; Stream component failed at subtask 0")
    with pytest.raises(TaskFailed, match="Stream component failed at subtask 0"):
        ensure_task_started(dms, spec, instance, endpoints, state)


def test_refuses_a_same_named_task_we_did_not_create(dms, engine) -> None:
    spec = make_spec()
    instance, endpoints = prepare(dms, spec)
    dms.create_replication_task(
        ReplicationTaskIdentifier="pg2rds-orders",
        SourceEndpointArn=endpoints.source_arn,
        TargetEndpointArn=endpoints.target_arn,
        ReplicationInstanceArn=instance.arn,
        MigrationType="full-load",
        TableMappings=table_mappings(spec.tables),
    )
    with pytest.raises(ResourceConflict, match="replication task pg2rds-orders already exists"):
        ensure_task_started(dms, spec, instance, endpoints, None)
    assert engine.started == []


@pytest.mark.parametrize(
    ("spec_kb", "measured_kb", "expected"),
    [(None, 130, 130), (64, 130, 64), (None, 0, 32)],
)
def test_lob_max_size_is_the_specs_or_the_one_validation_sized(aws, spec_kb, measured_kb, expected) -> None:
    """start-task hands DMS the limit validate-source sized from the data when the spec sets none."""
    from pg2rds.phases import _with_sized_lobs
    from pg2rds.state import MigrationState

    task = {"lob_mode": "limited"} | ({} if spec_kb is None else {"lob_max_size_kb": spec_kb})
    report = SourceReport(server_version="16", server_version_num=160000, lob_max_size_kb=measured_kb)
    state = MigrationState(spec=make_spec(task=task), source_report=report)
    assert task_settings(_with_sized_lobs(state))["TargetMetadata"]["LobMaxSize"] == expected


def test_apply_and_data_errors_stop_the_task_unless_the_spec_asks_for_dms_defaults(aws) -> None:
    policies = (
        "DataErrorPolicy", "DataTruncationErrorPolicy", "ApplyErrorInsertPolicy", "ApplyErrorUpdatePolicy",
        "ApplyErrorDeletePolicy", "ApplyErrorEscalationPolicy", "TableErrorPolicy",
    )  # fmt: skip
    stop = task_settings(make_spec())["ErrorBehavior"]
    assert {name: stop[name] for name in policies} == dict.fromkeys(policies, "STOP_TASK")
    logged = task_settings(make_spec(task={"on_error": "log"}))["ErrorBehavior"]
    assert (logged["ApplyErrorInsertPolicy"], logged["ApplyErrorDeletePolicy"]) == (
        "LOG_ERROR",
        "IGNORE_RECORD",
    )
    with pytest.raises(SpecInvalid, match="on_error"):
        make_spec(task={"on_error": "ignore"})


@pytest.mark.parametrize(
    ("migration_type", "verification", "validates"),
    [
        ("full-load-and-cdc", None, True),  # the default with CDC
        ("cdc", None, True),
        ("full-load-and-cdc", "checksums", False),
        ("full-load", None, False),  # the full load's default: pg2rds's own checksums
    ],
)
def test_dms_validation_is_on_with_verification_dms_the_default_with_cdc(
    aws, migration_type: str, verification: str | None, validates: bool
) -> None:
    spec = make_spec(
        migration_type=migration_type, **({"verification": verification} if verification else {})
    )
    assert spec.verification == ("dms" if validates else verification or "checksums")
    settings = task_settings(spec)
    assert ("ValidationSettings" in settings) is validates
    if validates:
        validation = settings["ValidationSettings"]
        assert validation["EnableValidation"] is True and validation["ValidationOnly"] is False
        assert validation["ThreadCount"] >= 1 and validation["PartitionSize"] > 0
        assert validation["FailureMaxCount"] > 0
    assert settings["ControlTablesSettings"]["ControlSchema"] == "awsdms_control"


def test_verification_dms_needs_cdc(aws) -> None:
    with pytest.raises(SpecInvalid, match="verification dms needs CDC"):
        make_spec(migration_type="full-load", verification="dms")


@pytest.mark.parametrize(
    ("prep_mode", "migration_type", "key_after_rows"),
    [
        ("DROP_AND_CREATE", "full-load", True),
        ("DROP_AND_CREATE", "full-load-and-cdc", False),
        ("DO_NOTHING", "full-load", False),
        ("TRUNCATE_BEFORE_LOAD", "full-load", False),
    ],
)
def test_tables_dms_creates_in_a_full_load_get_their_key_after_their_rows(
    aws, prep_mode, migration_type, key_after_rows
) -> None:
    spec = make_spec(migration_type=migration_type)
    spec = spec.model_copy(
        update={"task": spec.task.model_copy(update={"target_table_prep_mode": prep_mode})}
    )
    assert task_settings(spec)["FullLoadSettings"]["CreatePkAfterFullLoad"] is key_after_rows
