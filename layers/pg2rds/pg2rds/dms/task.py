"""The replication task: created with our table mappings and settings, then started exactly once."""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

from botocore.exceptions import ClientError

from pg2rds.aws import error_code
from pg2rds.dms.table_mappings import table_mappings
from pg2rds.dms.tags import find, require_owned, resource_tags
from pg2rds.errors import ResourceConflict, TaskFailed
from pg2rds.naming import ResourceNames
from pg2rds.polling import check_timeout, poll_fields
from pg2rds.spec import MigrationSpec
from pg2rds.state import EndpointsState, InstanceState, SlotState, TaskState

if TYPE_CHECKING:
    from mypy_boto3_dms import DatabaseMigrationServiceClient

#: Statuses in which the task has been started (a stopped one by a previous invocation: the poller decides).
STARTED_STATUSES = ("starting", "running", "stopping", "stopped")
#: Statuses that pass by themselves: wait.
TRANSIENT_STATUSES = ("creating", "modifying", "moving", "testing", "deleting")

_LOG_COMPONENTS = [
    "SOURCE_UNLOAD",
    "SOURCE_CAPTURE",
    "TARGET_LOAD",
    "TARGET_APPLY",
    "TASK_MANAGER",
    "TRANSFORMATION",
]


#: The target schema of DMS's control tables (User Guide, "Control table task settings"): named, so that
#: pg2rds finds the validation failures table there whatever the target's default.
CONTROL_SCHEMA = "awsdms_control"

#: LobMaxSize when neither the spec nor validate-source's measurement gives one.
DEFAULT_LOB_MAX_SIZE_KB = 32


def task_settings(spec: MigrationSpec) -> dict[str, Any]:
    """ReplicationTaskSettings: DMS's defaults made explicit, plus the choices pg2rds makes.

    - Full LOB mode copies LOBs of any size (slow); limited mode would truncate above ``lob_max_size_kb``,
      but the source endpoint sets ``FailTasksOnLobTruncation``, so the task fails instead (endpoints.py).
      Without ``lob_max_size_kb`` in the spec, start-task fills in what validate-source sized from the
      data (:func:`pg2rds.phases.start_task`); DMS's console default otherwise.
    - A table error stops the task (``TableErrorPolicy: STOP_TASK``): a migration with a missing table is
      not a migration, and suspending the table would let the task report success.
    - The full load never stops on cached changes (``StopTaskCachedChanges*``): cutover is the operator's.
    - Tables DMS creates (``DROP_AND_CREATE``) get their primary key once their rows are in
      (``CreatePkAfterFullLoad``, "Full-load task settings"), in a full load: one sort of the rows
      instead of an index entry per row (pgbench_accounts, 5 M rows, loaded locally: 15.1 s with the key
      in place, 6.2 s + 2.3 s for the key after). Not with CDC, where DMS applies the changes cached
      during the load to those tables, and the AWS pages do not say whether the key is there by then.
      In the other modes DMS creates no key, so the setting would change nothing.
    """
    options = spec.task
    # fail fast (spec task.on_error "stop"): an apply or data error stops the task with DMS's message
    # instead of a row logged and skipped (DMS's defaults, kept with "log")
    stop = options.on_error == "stop"
    row_error = "STOP_TASK" if stop else "LOG_ERROR"
    full_lob = options.lob_mode == "full"
    key_after_rows = options.target_table_prep_mode == "DROP_AND_CREATE" and not spec.uses_cdc
    return {
        "TargetMetadata": {
            "TargetSchema": "",
            "SupportLobs": True,
            "FullLobMode": full_lob,
            "LobChunkSize": 64 if full_lob else 0,
            "LimitedSizeLobMode": not full_lob,
            "LobMaxSize": 0 if full_lob else options.lob_max_size_kb or DEFAULT_LOB_MAX_SIZE_KB,
            "InlineLobMaxSize": 0,
            "LoadMaxFileSize": 0,
            "ParallelLoadThreads": 0,
            "ParallelLoadBufferSize": 0,
            "BatchApplyEnabled": False,
        },
        "FullLoadSettings": {
            "TargetTablePrepMode": options.target_table_prep_mode,
            "CreatePkAfterFullLoad": key_after_rows,
            "StopTaskCachedChangesApplied": False,
            "StopTaskCachedChangesNotApplied": False,
            "MaxFullLoadSubTasks": options.max_full_load_subtasks,
            "TransactionConsistencyTimeout": 600,
            "CommitRate": 10000,
        },
        "Logging": {
            "EnableLogging": True,
            "LogComponents": [
                {"Id": component, "Severity": "LOGGER_SEVERITY_DEFAULT"} for component in _LOG_COMPONENTS
            ],
        },
        "ControlTablesSettings": {
            # where DMS writes its control tables on the target, validation failures among them
            # (awsdms_validation_failures_v1), which pg2rds reads to name the keys that differ
            "ControlSchema": CONTROL_SCHEMA,
            "HistoryTimeslotInMinutes": 5,
            "HistoryTableEnabled": False,
            "SuspendedTablesTableEnabled": False,
            "StatusTableEnabled": False,
        },
        "StreamBufferSettings": {
            "StreamBufferCount": 3,
            "StreamBufferSizeInMB": 8,
            "CtrlStreamBufferSizeInMB": 5,
        },
        "ChangeProcessingTuning": {
            "BatchApplyPreserveTransaction": True,
            "BatchApplyTimeoutMin": 1,
            "BatchApplyTimeoutMax": 30,
            "BatchApplyMemoryLimit": 500,
            "BatchSplitSize": 0,
            "MinTransactionSize": 1000,
            "CommitTimeout": 1,
            "MemoryLimitTotal": 1024,
            "MemoryKeepTime": 60,
            "StatementCacheSize": 50,
        },
        "ChangeProcessingDdlHandlingPolicy": {
            "HandleSourceTableDropped": True,
            "HandleSourceTableTruncated": True,
            "HandleSourceTableAltered": True,
        },
        "ErrorBehavior": {
            "DataErrorPolicy": row_error,
            "DataTruncationErrorPolicy": row_error,
            "DataErrorEscalationPolicy": "STOP_TASK" if stop else "SUSPEND_TABLE",
            "DataErrorEscalationCount": 0,
            "TableErrorPolicy": "STOP_TASK",
            "TableErrorEscalationPolicy": "STOP_TASK",
            "TableErrorEscalationCount": 0,
            "RecoverableErrorCount": -1,
            "RecoverableErrorInterval": 5,
            "RecoverableErrorThrottling": True,
            "RecoverableErrorThrottlingMax": 1800,
            "ApplyErrorDeletePolicy": "STOP_TASK" if stop else "IGNORE_RECORD",
            "ApplyErrorInsertPolicy": row_error,
            "ApplyErrorUpdatePolicy": row_error,
            "ApplyErrorEscalationPolicy": row_error,
            "ApplyErrorEscalationCount": 0,
            "FullLoadIgnoreConflicts": True,
            "FailOnTransactionConsistencyBreached": False,
            "FailOnNoTablesCaptured": True,
        },
        **({"ValidationSettings": validation_settings()} if spec.verification == "dms" else {}),
    }


def validation_settings() -> dict[str, Any]:
    """DMS data validation (User Guide, "Data validation task settings"): each table is compared by primary
    key after its full load, and changed rows again during CDC, on the replication instance.

    - ``ThreadCount`` 5 and ``PartitionSize`` 10,000: DMS's defaults (threads per task; rows read from
      each side per comparison), sized for an instance that also replicates.
    - ``FailureMaxCount`` 10,000: a failed or suspended row count above it suspends validation (DMS's
      limit); ``TableFailureMaxCount`` 1,000 per table. pg2rds withholds the cutover at the first failed
      record anyway, and names the first keys.
    - ``ValidationOnly`` false: the task migrates as well; ``HandleCollationDiff`` false, as the target is
      PostgreSQL too; ``SkipLobColumns`` false: LOB columns are compared.
    - ``RecordFailureDelayLimitInMinutes`` 0: DMS delays a failure report by the task's latency, so a row
      not yet applied is not reported as different.
    """
    return {
        "EnableValidation": True,
        "ValidationMode": "ROW_LEVEL",
        "ThreadCount": 5,
        "PartitionSize": 10000,
        "FailureMaxCount": 10000,
        "TableFailureMaxCount": 1000,
        "RecordFailureDelayLimitInMinutes": 0,
        "RecordSuspendDelayInMinutes": 30,
        "ValidationOnly": False,
        "HandleCollationDiff": False,
        "SkipLobColumns": False,
        "ValidationPartialLobSize": 0,
        "ValidationQueryCdcDelaySeconds": 0,
    }


#: Builds the task's TableMappings; called only when the task is created (it may read the source).
MappingsBuilder = Callable[[], str]


def _create(
    dms: DatabaseMigrationServiceClient,
    spec: MigrationSpec,
    identifier: str,
    instance: InstanceState,
    endpoints: EndpointsState,
    mappings: MappingsBuilder,
    slot: SlotState | None,
    lineage: str,
):
    """A CDC-only task starts where our slot begins (``CdcStartPosition``, DMS's native start point: DMS
    then checks that the endpoint's slot exists). A full load with CDC reads the slot from its start."""
    start = {"CdcStartPosition": slot.lsn} if spec.migration_type == "cdc" and slot else {}
    return dms.create_replication_task(
        ReplicationTaskIdentifier=identifier,
        SourceEndpointArn=endpoints.source_arn,
        TargetEndpointArn=endpoints.target_arn,
        ReplicationInstanceArn=instance.arn,
        MigrationType=spec.migration_type,
        TableMappings=mappings(),
        ReplicationTaskSettings=json.dumps(task_settings(spec)),
        Tags=resource_tags(spec, lineage),
        **start,
    )["ReplicationTask"]


def _own_task(
    dms: DatabaseMigrationServiceClient,
    spec: MigrationSpec,
    instance: InstanceState,
    endpoints: EndpointsState,
    mappings: MappingsBuilder,
    slot: SlotState | None,
    lineage: str,
) -> Mapping[str, Any]:
    identifier = ResourceNames(spec.migration_id).task
    task = find(dms, "task", "replication-task-id", identifier)
    if task is None:
        try:
            return _create(dms, spec, identifier, instance, endpoints, mappings, slot, lineage)
        except ClientError as error:
            if error_code(error) != "ResourceAlreadyExistsFault":
                raise
            task = find(dms, "task", "replication-task-id", identifier)
            if task is None:
                raise
    require_owned(dms, task["ReplicationTaskArn"], spec, f"replication task {identifier}", lineage)
    wired = (task.get("SourceEndpointArn"), task.get("TargetEndpointArn"), task.get("ReplicationInstanceArn"))
    if wired != (endpoints.source_arn, endpoints.target_arn, instance.arn):
        raise ResourceConflict(
            f"replication task {identifier} exists but uses other endpoints or another instance than this "
            "execution's (left over from an earlier run). Fix: run cleanup for this migration_id, then "
            "start the migration again."
        )
    return task


def ensure_task_started(
    dms: DatabaseMigrationServiceClient,
    spec: MigrationSpec,
    instance: InstanceState,
    endpoints: EndpointsState,
    previous: TaskState | None,
    mappings: MappingsBuilder | None = None,
    *,
    slot: SlotState | None = None,
    lineage: str = "",
) -> TaskState:
    """Create (or find) the task and start it once it is ``ready``; ``ready`` once it has been started.

    ``mappings`` builds the TableMappings when the task is created; by default from the spec alone (no
    partitioned parents to exclude, see :func:`pg2rds.dms.table_mappings.table_mappings`). ``slot`` is the
    slot create-slot made (CDC): a ``cdc`` task starts at its position. What it creates is tagged with
    ``lineage``.
    """
    mappings = mappings or (lambda: table_mappings(spec.tables))
    task = _own_task(dms, spec, instance, endpoints, mappings, slot, lineage)
    identifier, arn = task["ReplicationTaskIdentifier"], task["ReplicationTaskArn"]
    status = task.get("Status", "")
    if status == "failed":
        raise TaskFailed(
            f"replication task {identifier} failed: {task.get('LastFailureMessage') or '(no message)'}"
            + (f" ({task['StopReason']})" if task.get("StopReason") else "")
        )
    if status == "ready":
        task = dms.start_replication_task(
            ReplicationTaskArn=arn, StartReplicationTaskType="start-replication"
        )["ReplicationTask"]
        status = task.get("Status", "starting")
    ready = status in STARTED_STATUSES
    if not ready:
        check_timeout(
            previous,
            spec.polling.instance_timeout_minutes * 60,
            f"replication task {identifier} is still {status!r} and was not started",
            "look at the task's DMS events; raise spec.polling.instance_timeout_minutes if DMS is slow",
        )
    return TaskState(arn=arn, identifier=identifier, status=status, **poll_fields(spec, previous, ready))
