"""Polling a started task: its status, per-table statistics and (for CDC) its latency.

CDC latency is not in DescribeReplicationTasks: DMS publishes it as CloudWatch metrics (namespace
``AWS/DMS``, ``CDCLatencySource``/``CDCLatencyTarget``, dimensions ``ReplicationInstanceIdentifier`` and
``ReplicationTaskIdentifier``, the latter being the last part of the task ARN). The Lambda's role needs
``cloudwatch:GetMetricStatistics``. When no data point exists yet (DMS publishes every minute or so),
latency is unknown and the task counts as caught up once its full load is complete: the cutover decision
rests with the operator anyway, and the verification phase compares the data.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from pg2rds.aws import client
from pg2rds.bounded import clipped, joined
from pg2rds.dms import validation, validation_progress
from pg2rds.dms.poll_outcome import PollDecision, PollFacts, decide_poll_outcome, needs_latency
from pg2rds.dms.tags import find
from pg2rds.dms.validation import TableValidation
from pg2rds.dms.validation_progress import FailureKeys
from pg2rds.errors import TaskFailed, VerificationFailed
from pg2rds.naming import ResourceNames
from pg2rds.polling import POLLS_PER_EXECUTION, check_timeout, cutover_wait, next_wait, now_iso, poll_fields
from pg2rds.spec import MigrationSpec
from pg2rds.state import Progress, TableProgress, TaskState, ValidationProgress

if TYPE_CHECKING:
    from mypy_boto3_cloudwatch import CloudWatchClient
    from mypy_boto3_cloudwatch.type_defs import DimensionTypeDef
    from mypy_boto3_dms import DatabaseMigrationServiceClient

#: At most this many tables in the state (errored ones first), whatever the database's size: 50 rows of
#: 63-character names are about 15 KB.
MAX_TABLES = 50
_ERRORED = {"Table error", "Error"}
#: DMS's LastFailureMessage in a TaskFailed cause: its first lines (the CloudWatch log has all of it), so
#: the tables in error still fit after it.
MAX_DMS_MESSAGE_CHARS = 2000


def table_statistics(dms: DatabaseMigrationServiceClient, task_arn: str) -> list[Mapping[str, Any]]:
    rows: list[Mapping[str, Any]] = []
    for page in dms.get_paginator("describe_table_statistics").paginate(ReplicationTaskArn=task_arn):
        rows.extend(page.get("TableStatistics", []))
    return rows


def _latest(cloudwatch: CloudWatchClient, metric: str, dimensions: list[DimensionTypeDef]) -> int | None:
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


def _instance_identifier(
    dms: DatabaseMigrationServiceClient, spec: MigrationSpec, instance_arn: str
) -> str | None:
    if not spec.instance.existing_arn:
        return ResourceNames(spec.migration_id).instance
    instance = find(dms, "instance", "replication-instance-arn", instance_arn)
    return instance["ReplicationInstanceIdentifier"] if instance else None


def cdc_latency(dms: DatabaseMigrationServiceClient, spec: MigrationSpec, task: Mapping[str, Any]) -> tuple:
    """(source, target) latency in seconds from CloudWatch; None where no data point exists yet."""
    instance_id = _instance_identifier(dms, spec, task["ReplicationInstanceArn"])
    if instance_id is None:
        return None, None
    cloudwatch = client("cloudwatch")
    dimensions: list[DimensionTypeDef] = [
        {"Name": "ReplicationInstanceIdentifier", "Value": instance_id},
        {"Name": "ReplicationTaskIdentifier", "Value": task["ReplicationTaskArn"].rsplit(":", 1)[-1]},
    ]
    return (
        _latest(cloudwatch, "CDCLatencySource", dimensions),
        _latest(cloudwatch, "CDCLatencyTarget", dimensions),
    )


def _tables(rows: Sequence[Mapping[str, Any]]) -> list[TableProgress]:
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


def _errored_names(rows: Sequence[Mapping[str, Any]]) -> str:
    names = [f"{row['SchemaName']}.{row['TableName']}" for row in rows if row.get("TableState") in _ERRORED]
    if not names:
        return ""
    return "; tables in error: " + joined(names)


@dataclass(frozen=True)
class TaskObservation:
    """One look at the task: DescribeReplicationTasks plus its table statistics."""

    identifier: str
    described: Mapping[str, Any]
    rows: Sequence[Mapping[str, Any]]

    @property
    def status(self) -> str:
        return self.described.get("Status", "")

    @property
    def stop_reason(self) -> str:
        return self.described.get("StopReason", "")

    @property
    def stats(self) -> dict[str, Any]:
        return self.described.get("ReplicationTaskStats", {})

    @property
    def tables_errored(self) -> int:
        return max(
            self.stats.get("TablesErrored", 0), sum(row.get("TableState") in _ERRORED for row in self.rows)
        )

    @property
    def validation(self) -> list[TableValidation]:
        return validation.read_tables(self.rows)

    def full_load_done(self, migration_type: str) -> bool:
        stats = self.stats
        return (
            migration_type == "cdc"
            or stats.get("FullLoadProgressPercent", 0) >= 100
            or bool(stats.get("FullLoadFinishDate"))
        )


def observe_task(dms: DatabaseMigrationServiceClient, task: TaskState) -> TaskObservation:
    described = find(dms, "task", "replication-task-arn", task.arn)
    if described is None:
        raise TaskFailed(
            f"replication task {task.identifier} ({task.arn}) no longer exists: it was deleted while the "
            "migration ran. Fix: run the migration again."
        )
    return TaskObservation(task.identifier, described, table_statistics(dms, task.arn))


def facts_of(
    observed: TaskObservation,
    spec: MigrationSpec,
    after_cutover: bool,
    execution_polls: int,
    rechecking: Collection[str] = (),
) -> PollFacts:
    validating = spec.verification == "dms"
    counts = (
        validation.counts(observed.validation, rechecking) if validating else validation.ValidationCounts()
    )
    return PollFacts(
        migration_type=spec.migration_type,
        status=observed.status,
        stop_reason=observed.stop_reason,
        tables_errored=observed.tables_errored,
        full_load_done=observed.full_load_done(spec.migration_type),
        max_latency_seconds=spec.cdc.max_latency_seconds,
        after_cutover=after_cutover,
        execution_polls=execution_polls,
        polls_per_execution=POLLS_PER_EXECUTION,
        validating=validating,
        validation_pending_tables=counts.pending_tables,
        validation_failing_tables=counts.failing_tables,
        validation_waiting_tables=counts.waiting_tables,
        validation_pending_records=counts.pending_records,
        max_pending_validation_records=spec.cdc.max_pending_validation_records,
    )


def failure_message(observed: TaskObservation, reason: str) -> str:
    status, stop_reason = observed.status, observed.stop_reason
    message = observed.described.get("LastFailureMessage") or "(DMS gave no failure message)"
    message = clipped(message, MAX_DMS_MESSAGE_CHARS)
    return (
        f"replication task {observed.identifier} is {status!r}"
        + (f" ({stop_reason})" if stop_reason else "")
        + f": {message}; {reason}"
        + _errored_names(observed.rows)
        + ". Fix: read the task's CloudWatch log (log group dms-tasks-<instance>) for the first error."
    )


def check_load_timeout(spec: MigrationSpec, observed: TaskObservation, previous: Progress | None) -> None:
    """The load's time limit (spec.polling.task_timeout_hours); stopping after a long cutover wait is not
    load, so the caller skips this after the decision."""
    check_timeout(
        previous,
        spec.polling.task_timeout_hours * 3600,
        f"replication task {observed.identifier} is still {observed.status!r} "
        f"({observed.stats.get('FullLoadProgressPercent', 0)}% loaded)",
        "look at the task's table statistics and CloudWatch log; raise spec.polling.task_timeout_hours "
        "for a larger database",
    )


def withheld_reason(facts: PollFacts, decision: PollDecision, checks: ValidationProgress) -> str:
    """Why the cutover is not offered now ("" when it is, or once decided): for status, watch, the SNS
    message that withdraws an offer."""
    if facts.after_cutover or decision.outcome == "cdc-caught-up" or facts.migration_type == "full-load":
        return ""
    if facts.status != "running" or not facts.full_load_done:
        return f"the task is {facts.status or 'starting'} and its full load is not complete"
    if decision.differs:
        return validation_progress.render_differences(checks.difference_count, checks.differences)
    known = [v for v in (facts.latency_source_seconds, facts.latency_target_seconds) if v is not None]
    if max(known, default=0) > facts.max_latency_seconds:
        limit = facts.max_latency_seconds
        return f"CDC latency {max(known)} s is above spec.cdc.max_latency_seconds ({limit} s)"
    if facts.validation_pending_tables:
        return (
            f"DMS is still validating {facts.validation_pending_tables} table(s) "
            f"({checks.pending_records:,} records pending, at most "
            f"{facts.max_pending_validation_records:,} by spec.cdc.max_pending_validation_records)"
        )
    return ""


def progress_of(
    observed: TaskObservation,
    facts: PollFacts,
    decision: PollDecision,
    spec: MigrationSpec,
    previous: Progress | None,
) -> Progress:
    stats = observed.stats
    fields = poll_fields(spec, previous, decision.ready)
    if decision.outcome == "cdc-caught-up":  # the cutover wait keeps watching the task, with the same backoff
        fields["wait_seconds"] = next_wait(spec.polling, fields["polls"] - 1)
    cutover_polls = (previous.cutover_polls if previous else 0) + 1 if facts.after_cutover else 0
    if facts.after_cutover and not decision.ready:
        # The application is stopped: the migration's backoff (long at its cap, 600 s by default) would be
        # downtime, so the decision starts short intervals of its own.
        fields["wait_seconds"] = cutover_wait(spec.polling, cutover_polls - 1)
    return Progress(
        outcome=decision.outcome,
        task_status="stopping" if decision.stop_task else observed.status,
        stop_reason=observed.stop_reason,
        full_load_percent=stats.get("FullLoadProgressPercent", 0),
        tables_loaded=stats.get("TablesLoaded", 0),
        tables_loading=stats.get("TablesLoading", 0),
        tables_queued=stats.get("TablesQueued", 0),
        tables_errored=observed.tables_errored,
        rows_loaded=sum(row.get("FullLoadRows", 0) for row in observed.rows),
        cdc_latency_source_seconds=facts.latency_source_seconds,
        cdc_latency_target_seconds=facts.latency_target_seconds,
        tables=_tables(observed.rows),
        tables_not_shown=max(0, len(observed.rows) - MAX_TABLES),
        execution_polls=facts.execution_polls,
        cutover_polls=cutover_polls,
        **fields,
    )


#: After the cutover decision: the source's WAL position at the decision, and whether the slot confirmed it.
CutoverPosition = Callable[[], tuple[str, bool]]


def _validation_failure(
    observed: TaskObservation, reason: str, checks: ValidationProgress
) -> VerificationFailed:
    named = " | ".join(checks.differences) or (
        f"{checks.pending_records:,} records still pending validation; tables by state: {checks.states}"
    )
    more = checks.difference_count - len(checks.differences)
    return VerificationFailed(
        f"{reason} (task {observed.identifier}): {named}"
        + (f"; and {more} more tables" if more > 0 else "")
        + ". Fix: compare those rows on the source and the target (the keys are in "
        "awsdms_control.awsdms_validation_failures_v1 on the target); then run the migration again."
    )


def poll_task(
    dms: DatabaseMigrationServiceClient,
    spec: MigrationSpec,
    task: TaskState,
    previous: Progress | None,
    cutover_position: CutoverPosition | None = None,
    failure_keys: FailureKeys | None = None,
) -> Progress:
    """Observe the task, gather what the decision needs, decide (:func:`decide_poll_outcome`), act.

    ``cutover_position`` is given once the operator decided to cut over: a stopped CDC task is then the
    expected end, and the task is stopped once every change before the decision is applied (and, with
    ``verification: dms``, validated). ``failure_keys`` reads the keys DMS's validation found different
    from the target.

    The slot is read before the task: a change applied and confirmed between the two reads would
    otherwise count as confirmed while the task's statistics, read earlier, do not yet show it pending
    validation, and the task would be stopped before DMS validated it. Read first, a confirmation can
    only be older than the statistics, never newer. A stopped task (no more changes) is judged on a
    fresh read of the slot, taken after the stop was seen."""
    slot_first = cutover_position() if cutover_position is not None else None
    observed = observe_task(dms, task)
    after_cutover = cutover_position is not None
    earlier = previous.validation if previous else None
    facts = facts_of(
        observed,
        spec,
        after_cutover,
        execution_polls=(previous.execution_polls if previous else 0) + 1,
        rechecking={r.table for r in earlier.revalidations} if earlier else set(),
    )
    facts = replace(facts, offered=bool(previous and previous.outcome == "cdc-caught-up"))
    if needs_latency(facts):
        source_latency, target_latency = cdc_latency(dms, spec, observed.described)
        facts = replace(facts, latency_source_seconds=source_latency, latency_target_seconds=target_latency)
    cutover_lsn = ""
    cutover_polled_at = (previous.cutover_polled_at if previous else "") or (
        now_iso() if after_cutover else ""
    )
    if cutover_position is not None and slot_first is not None and observed.status in ("running", "stopped"):
        cutover_lsn, applied = slot_first if observed.status == "running" else cutover_position()
        facts = replace(
            facts,
            cutover_position_applied=applied,
            validation_timed_out=validation_progress.timed_out(cutover_polled_at, spec),
        )

    decision = decide_poll_outcome(facts)
    if decision.failure:
        raise TaskFailed(failure_message(observed, decision.failure))
    checks = _checks(
        dms, spec, task, observed, decision, previous, failure_keys, after_cutover, facts.offered
    )
    if decision.verification_failure:
        raise _validation_failure(observed, decision.verification_failure, checks)
    if decision.stop_task:
        dms.stop_replication_task(ReplicationTaskArn=task.arn)
    if not decision.ready and not after_cutover:
        check_load_timeout(spec, observed, previous)
    progress = progress_of(observed, facts, decision, spec, previous)
    progress.cutover_lsn = cutover_lsn
    progress.cutover_polled_at = cutover_polled_at
    progress.validation = checks
    progress.withheld = withheld_reason(facts, decision, checks)
    return progress


_OWN_CHECKS = {
    "checksums": "pg2rds checksums every table after the {when} (verification: checksums)",
    "counts": "pg2rds counts every table's rows after the {when} (verification: counts)",
    "none": "no verification after the {when} (verification: none)",
}


def _checks(
    dms: DatabaseMigrationServiceClient,
    spec: MigrationSpec,
    task: TaskState,
    observed: TaskObservation,
    decision: PollDecision,
    previous: Progress | None,
    failure_keys: FailureKeys | None,
    after_cutover: bool,
    offered: bool,
) -> ValidationProgress:
    """DMS's validation as this poll saw it; before the decision, tables that differ are re-validated.

    Not by a poll made while the cutover stands offered (the watcher beside the wait, or the poll just
    after it withdrew the offer, which starts from the offer's record): a watcher that finds a difference
    withdraws the offer, and the state machine keeps only the error of the branch, not its record. A
    re-validation it requested would be forgotten, and the table DMS then reports with its failed records
    reset ("Pending records" while the pass runs) taken for merely pending: the cutover was offered again
    with the target still different. The poll loop requests it from its next poll, and remembers it."""
    if spec.verification != "dms":
        when = "cutover decision" if spec.uses_cdc else "load"
        return ValidationProgress(summary=_OWN_CHECKS[spec.verification].format(when=when))
    tables = observed.validation
    earlier = previous.validation if previous else None
    validated = {t.name for t in tables if t.kind == "validated"}
    revalidations = [r for r in (earlier.revalidations if earlier else []) if r.table not in validated]
    if decision.differs and observed.status == "running" and not offered:
        revalidations = validation_progress.revalidate(dms, spec, task.arn, tables, revalidations)
    return validation_progress.build(tables, earlier, failure_keys, revalidations, notify=not after_cutover)
