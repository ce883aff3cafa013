"""Polling a started task: its status, per-table statistics and (for CDC) its latency.

CDC latency is not in DescribeReplicationTasks: DMS publishes it as CloudWatch metrics (namespace
``AWS/DMS``, ``CDCLatencySource``/``CDCLatencyTarget``, dimensions ``ReplicationInstanceIdentifier`` and
``ReplicationTaskIdentifier``, the latter being the last part of the task ARN). The Lambda's role needs
``cloudwatch:GetMetricStatistics``. When no data point exists yet (DMS publishes every minute or so),
latency is unknown and the task counts as caught up once its full load is complete: the cutover decision
rests with the operator anyway, and the verification phase compares the data.
"""

from datetime import UTC, datetime, timedelta
from typing import Any

from pg2rds.aws import client
from pg2rds.dms.tags import check_timeout, find, poll_fields
from pg2rds.errors import TaskFailed
from pg2rds.naming import ResourceNames
from pg2rds.spec import MigrationSpec
from pg2rds.state import MAX_OBJECTS_PER_FINDING, Progress, TableProgress, TaskState

FULL_LOAD_FINISHED = "FULL_LOAD_ONLY_FINISHED"
#: At most this many tables in the state (errored ones first), whatever the database's size.
MAX_TABLES = 200
_ERRORED = {"Table error", "Error"}


def _table_statistics(dms: Any, task_arn: str) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    for page in dms.get_paginator("describe_table_statistics").paginate(ReplicationTaskArn=task_arn):
        rows.extend(page.get("TableStatistics", []))
    return rows


def _latest(cloudwatch: Any, metric: str, dimensions: list[dict[str, str]]) -> int | None:
    now = datetime.now(UTC)
    response = cloudwatch.get_metric_statistics(
        Namespace="AWS/DMS",
        MetricName=metric,
        Dimensions=dimensions,
        StartTime=now - timedelta(minutes=10),
        EndTime=now + timedelta(minutes=1),
        Period=60,
        Statistics=["Maximum"],
    )
    points = response.get("Datapoints", [])
    if not points:
        return None
    return int(max(points, key=lambda point: point["Timestamp"])["Maximum"])


def _instance_identifier(dms: Any, spec: MigrationSpec, instance_arn: str) -> str | None:
    if not spec.instance.existing_arn:
        return ResourceNames(spec.migration_id).instance
    instance = find(dms, "instance", "replication-instance-arn", instance_arn)
    return instance["ReplicationInstanceIdentifier"] if instance else None


def cdc_latency(dms: Any, spec: MigrationSpec, task: dict[str, Any]) -> tuple:
    """(source, target) latency in seconds from CloudWatch; None where no data point exists yet."""
    instance_id = _instance_identifier(dms, spec, task["ReplicationInstanceArn"])
    if instance_id is None:
        return None, None
    cloudwatch = client("cloudwatch")
    dimensions = [
        {"Name": "ReplicationInstanceIdentifier", "Value": instance_id},
        {"Name": "ReplicationTaskIdentifier", "Value": task["ReplicationTaskArn"].rsplit(":", 1)[-1]},
    ]
    return (
        _latest(cloudwatch, "CDCLatencySource", dimensions),
        _latest(cloudwatch, "CDCLatencyTarget", dimensions),
    )


def _tables(rows: list[dict[str, Any]]) -> list[TableProgress]:
    ordered = sorted(rows, key=lambda row: (row.get("TableState") not in _ERRORED,))
    return [
        TableProgress(
            schema_name=row.get("SchemaName", ""),
            table_name=row.get("TableName", ""),
            state=row.get("TableState", ""),
            full_load_rows=row.get("FullLoadRows", 0),
            inserts=row.get("Inserts", 0),
            updates=row.get("Updates", 0),
            deletes=row.get("Deletes", 0),
        )
        for row in ordered[:MAX_TABLES]
    ]


def _errored_names(rows: list[dict[str, Any]]) -> str:
    names = [f"{row['SchemaName']}.{row['TableName']}" for row in rows if row.get("TableState") in _ERRORED]
    if not names:
        return ""
    shown = names[:MAX_OBJECTS_PER_FINDING]
    more = f", and {len(names) - len(shown)} more" if len(names) > len(shown) else ""
    return "; tables in error: " + ", ".join(shown) + more


def poll_task(
    dms: Any,
    spec: MigrationSpec,
    task: TaskState,
    previous: Progress | None,
    after_cutover: bool = False,
) -> Progress:
    """``after_cutover``: the operator decided to cut over and pg2rds stops the task, so a CDC task that is
    ``stopped`` is the expected end (outcome ``stopped``), not a failure."""
    described = find(dms, "task", "replication-task-arn", task.arn)
    if described is None:
        raise TaskFailed(
            f"replication task {task.identifier} ({task.arn}) no longer exists: it was deleted while the "
            "migration ran. Fix: run the migration again."
        )
    status = described.get("Status", "")
    stop_reason = described.get("StopReason", "")
    stats = described.get("ReplicationTaskStats", {})
    rows = _table_statistics(dms, task.arn)
    errored = max(stats.get("TablesErrored", 0), sum(row.get("TableState") in _ERRORED for row in rows))
    full_load_percent = stats.get("FullLoadProgressPercent", 0)
    full_load_done = (
        spec.migration_type == "cdc" or full_load_percent >= 100 or bool(stats.get("FullLoadFinishDate"))
    )

    finished_full_load = (
        spec.migration_type == "full-load" and status == "stopped" and FULL_LOAD_FINISHED in stop_reason
    )
    stopped_for_cutover = after_cutover and spec.uses_cdc and status == "stopped"
    if (
        status == "failed"
        or (status == "stopped" and not (finished_full_load or stopped_for_cutover))
        or errored
    ):
        message = described.get("LastFailureMessage") or "(DMS gave no failure message)"
        raise TaskFailed(
            f"replication task {task.identifier} is {status!r}"
            + (f" ({stop_reason})" if stop_reason else "")
            + f": {message}"
            + (f"; {errored} table(s) errored" if errored else "")
            + _errored_names(rows)
            + ". Fix: read the task's CloudWatch log (log group dms-tasks-<instance>) for the first error."
        )

    latency_source = latency_target = None
    if spec.migration_type == "full-load":
        outcome = "full-load-complete" if finished_full_load else "running"
    elif stopped_for_cutover:
        outcome = "stopped"
    else:
        if status == "running" and full_load_done:
            latency_source, latency_target = cdc_latency(dms, spec, described)
        known = [value for value in (latency_source, latency_target) if value is not None]
        caught_up = (
            status == "running" and full_load_done and max(known, default=0) <= spec.cdc.max_latency_seconds
        )
        outcome = "cdc-caught-up" if caught_up else "running"

    ready = outcome != "running"
    if not ready and not after_cutover:  # the load's limit; stopping after a (long) cutover wait is not load
        check_timeout(
            previous,
            spec.polling.task_timeout_hours * 3600,
            f"replication task {task.identifier} is still {status!r} ({full_load_percent}% loaded)",
            "look at the task's table statistics and CloudWatch log; raise spec.polling.task_timeout_hours "
            "for a larger database",
        )
    return Progress(
        outcome=outcome,
        task_status=status,
        stop_reason=stop_reason,
        full_load_percent=full_load_percent,
        tables_loaded=stats.get("TablesLoaded", 0),
        tables_loading=stats.get("TablesLoading", 0),
        tables_queued=stats.get("TablesQueued", 0),
        tables_errored=errored,
        rows_loaded=sum(row.get("FullLoadRows", 0) for row in rows),
        cdc_latency_source_seconds=latency_source,
        cdc_latency_target_seconds=latency_target,
        tables=_tables(rows),
        **poll_fields(spec, previous, ready),
    )
