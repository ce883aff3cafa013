"""Removing everything this migration owns, after success or failure.

Resources are found by their derived names (a failure may come before an ARN was recorded) and deleted
only if they carry our ownership tags: this migration id and this execution chain's lineage, so the cleanup
of a refused duplicate (or of any other chain of the same spec) removes nothing the live chain owns. The
slot carries no tag; it is dropped only by the lineage that holds the migration's lease (or when nobody
does), and the lease is given back once nothing is left.

The order is DMS's: stop the task, delete it, then the endpoints and the instance it used, then the
replication slot DMS left on the source. Each call does what it can now and returns; the state machine
calls again after ``wait_seconds`` until nothing remains.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from botocore.exceptions import ClientError

from pg2rds import lease
from pg2rds.aws import error_code, error_message
from pg2rds.dms.tags import NOT_FOUND, find, find_tasks_using, is_owned
from pg2rds.errors import AwsThrottled, ResourceBusy
from pg2rds.naming import ResourceNames
from pg2rds.polling import elapsed_seconds, poll_fields
from pg2rds.postgres.slots import drop_publication, drop_slot, drop_slot_statement
from pg2rds.secrets import get_credentials
from pg2rds.state import CleanupState, Failure, MigrationState

if TYPE_CHECKING:
    from mypy_boto3_dms import DatabaseMigrationServiceClient

_BUSY = "InvalidResourceStateFault"
_STOPPABLE = ("running", "starting")
_DELETABLE = ("ready", "stopped", "failed")


def readable_cause(cause: Any) -> str:
    """A Catch's Cause as the operator should read it: a Lambda error payload's ``errorMessage``."""
    if not isinstance(cause, str):
        return json.dumps(cause) if cause is not None else ""
    try:
        payload = json.loads(cause)
    except ValueError:
        return cause
    if isinstance(payload, dict) and isinstance(payload.get("errorMessage"), str):
        return payload["errorMessage"]
    return cause


class _Ledger:
    def __init__(self, previous: CleanupState | None) -> None:
        self.removed = list(previous.removed) if previous else []
        self.remaining: list[str] = []
        self.stuck: list[str] = []  # cannot be helped by waiting (unreachable source)
        self.kept: list[str] = []

    def removed_(self, item: str) -> None:
        if item not in self.removed:
            self.removed.append(item)


def _task(
    dms: DatabaseMigrationServiceClient, spec_id: str, lineage: str, names: ResourceNames, ledger: _Ledger
) -> bool:
    """Stop and delete our task; True when no task of ours is left."""
    task = find(dms, "task", "replication-task-id", names.task)
    label = f"task {names.task}"
    if task is None:
        return True
    arn = task["ReplicationTaskArn"]
    if not is_owned(dms, arn, spec_id, lineage):
        ledger.kept.append(f"{label} (not tagged for this migration)")
        return True
    status = task.get("Status", "")
    try:
        if status in _STOPPABLE:
            dms.stop_replication_task(ReplicationTaskArn=arn)
            ledger.remaining.append(f"{label} (stopping)")
            return False
        if status not in _DELETABLE:
            ledger.remaining.append(f"{label} ({status})")
            return False
        dms.delete_replication_task(ReplicationTaskArn=arn)
    except ClientError as error:
        if error_code(error) == NOT_FOUND:
            ledger.removed_(label)
            return True
        if error_code(error) != _BUSY:
            raise
        ledger.remaining.append(f"{label} ({status}: {error_message(error)})")
        return False
    if find(dms, "task", "replication-task-id", names.task) is None:
        ledger.removed_(label)
        return True
    ledger.remaining.append(f"{label} (deleting)")
    return False


def _endpoint(
    dms: DatabaseMigrationServiceClient, spec_id: str, lineage: str, identifier: str, ledger: _Ledger
) -> None:
    endpoint = find(dms, "endpoint", "endpoint-id", identifier)
    label = f"endpoint {identifier}"
    if endpoint is None:
        return
    arn = endpoint["EndpointArn"]
    if not is_owned(dms, arn, spec_id, lineage):
        ledger.kept.append(f"{label} (not tagged for this migration)")
        return
    users = [task["ReplicationTaskIdentifier"] for task in find_tasks_using(dms, "endpoint-arn", arn)]
    if users:
        ledger.remaining.append(f"{label} (used by task {', '.join(users)})")
        return
    if _delete(ledger, label, lambda: dms.delete_endpoint(EndpointArn=arn)):
        ledger.removed_(label)


def _delete(ledger: _Ledger, label: str, delete: Callable[[], Any], status: str = "") -> bool:
    """Ask DMS to delete; True when it accepted. Already gone counts as removed; "busy" (a state that
    forbids deleting yet) is left for the next pass, with DMS's reason."""
    try:
        delete()
    except ClientError as error:
        if error_code(error) == NOT_FOUND:
            ledger.removed_(label)
        elif error_code(error) == _BUSY:
            ledger.remaining.append(f"{label} ({status + ': ' if status else ''}{error_message(error)})")
        else:
            raise
        return False
    return True


def _instance(
    dms: DatabaseMigrationServiceClient, state: MigrationState, names: ResourceNames, ledger: _Ledger
) -> None:
    spec = state.spec
    if spec.instance.existing_arn:
        ledger.kept.append(f"instance {spec.instance.existing_arn} (existing, not created by pg2rds)")
        return
    label = f"instance {names.instance}"
    instance = find(dms, "instance", "replication-instance-id", names.instance)
    if instance is None:
        return
    arn = instance["ReplicationInstanceArn"]
    if not is_owned(dms, arn, spec.migration_id, state.lineage):
        ledger.kept.append(f"{label} (not tagged for this migration)")
        return
    status = instance.get("ReplicationInstanceStatus", "")
    if status == "deleting":
        ledger.remaining.append(f"{label} (deleting)")
        return
    users = [
        task["ReplicationTaskIdentifier"] for task in find_tasks_using(dms, "replication-instance-arn", arn)
    ]
    if users:
        ledger.remaining.append(f"{label} (used by task {', '.join(users)})")
        return
    if not _delete(
        ledger, label, lambda: dms.delete_replication_instance(ReplicationInstanceArn=arn), status
    ):
        return
    if find(dms, "instance", "replication-instance-id", names.instance) is None:
        ledger.removed_(label)
    else:
        ledger.remaining.append(f"{label} (deleting)")


def _slot(state: MigrationState, names: ResourceNames, ledger: _Ledger) -> None:
    spec = state.spec
    label = f"slot {names.slot} on source"
    if not lease.owned_by(spec.migration_id, state.lineage):
        ledger.kept.append(f"{label} (another execution of this migration holds its lease)")
        return
    try:
        outcome = drop_slot(spec.source, get_credentials(spec.source, "source"), names.slot)
    except (AwsThrottled, ResourceBusy):
        raise  # transient AWS errors: the state machine retries the whole (idempotent) pass
    except Exception as error:  # an unreachable source, an unusable secret: waiting will not help
        ledger.stuck.append(
            f"{label} (could not check it: {error}). While it exists the source keeps its WAL for it: drop "
            f"it by hand, connected to the source database: {drop_slot_statement(names.slot)}"
        )
        return
    if outcome == "dropped":
        ledger.removed_(label)
    elif outcome == "active":
        ledger.remaining.append(f"{label} (still active)")
        return
    if drop_publication(spec.source, get_credentials(spec.source, "source"), names.publication) == "dropped":
        ledger.removed_(f"publication {names.publication} on source")


def cleanup(dms: DatabaseMigrationServiceClient, state: MigrationState) -> CleanupState:
    """One cleanup pass. ``ready`` when nothing waitable remains; ``remaining`` names what is left.

    Anything left after ``spec.polling.instance_timeout_minutes`` (or that waiting cannot help, such as
    an unreachable source) ends the loop and is reported in ``failure``."""
    spec = state.spec
    names = ResourceNames(spec.migration_id)
    previous = state.cleanup
    ledger = _Ledger(previous)
    if spec.mode == "check":
        # a check created nothing, and a migration with the same id may be running: touch nothing
        return CleanupState(failure=_failure(state, ledger, False), **poll_fields(spec, previous, True))

    lineage = state.lineage
    running = lease.end_lineage(spec.migration_id, lineage)
    if running:
        # a stopped execution's Lambda may still be creating something: look only once it has finished
        ledger.remaining += [f"{phase} of the ended execution" for phase in running]
        return CleanupState(
            removed=ledger.removed,
            remaining=ledger.remaining,
            **poll_fields(spec, previous, False),
        )
    task_gone = _task(dms, spec.migration_id, lineage, names, ledger)
    if task_gone:
        _endpoint(dms, spec.migration_id, lineage, names.source_endpoint, ledger)
        _endpoint(dms, spec.migration_id, lineage, names.target_endpoint, ledger)
        _instance(dms, state, names, ledger)
        _slot(state, names, ledger)
    else:
        ledger.remaining += [
            f"endpoint {names.source_endpoint}, endpoint {names.target_endpoint}, instance and slot "
            "(after the task)"
        ]

    timed_out = bool(
        ledger.remaining
        and previous is not None
        and previous.started_at
        and elapsed_seconds(previous.started_at) > spec.polling.instance_timeout_minutes * 60
    )
    ready = not ledger.remaining or timed_out
    if not ledger.remaining and not ledger.stuck:
        lease.release(spec.migration_id, lineage)
    failure = _failure(state, ledger, timed_out)
    return CleanupState(
        removed=ledger.removed,
        remaining=ledger.remaining + ledger.stuck,
        kept=ledger.kept,
        failure=failure,
        **poll_fields(spec, previous, ready),
    )


def _timed_out_at_cutover(state: MigrationState) -> bool:
    error = state.error or {}
    progress = state.progress
    return (
        error.get("Error") in ("States.Timeout", "CutoverTimedOut")
        and state.cutover is None
        and progress is not None
        and progress.outcome == "cdc-caught-up"
    )


def _error_name(state: MigrationState) -> str:
    """The original error's name, as a Fail state may raise it (no ``States.`` prefix)."""
    if _timed_out_at_cutover(state):
        return "CutoverTimedOut"
    name = str((state.error or {}).get("Error", "Error"))
    return "StepFunctions" + name.removeprefix("States.") if name.startswith("States.") else name


def _silent_cause(state: MigrationState) -> str:
    """Errors that carry no Cause of their own (Step Functions' timeouts), said in the migration's terms."""
    if _timed_out_at_cutover(state):
        hours = state.spec.cdc.cutover_timeout_hours
        return (
            f"no cutover decision within {hours:g} h (spec.cdc.cutover_timeout_hours); replication was "
            "stopped and cleaned up. Fix: run the migration again and send `pg2rds cutover EXECUTION` in "
            "time, or raise the timeout"
        )
    return f"{_error_name(state)}: the migration failed without a message; see the execution history"


def _failure(state: MigrationState, ledger: _Ledger, timed_out: bool) -> Failure | None:
    notes = []
    if timed_out:
        notes.append(
            f"cleanup gave up after {state.spec.polling.instance_timeout_minutes} min; still left: "
            + "; ".join(ledger.remaining)
        )
    if ledger.stuck:
        notes.append("cleanup could not finish: " + "; ".join(ledger.stuck))
    if state.error:
        cause = readable_cause(state.error.get("Cause")) or _silent_cause(state)
        if notes:
            cause += " | " + " | ".join(notes)
        return Failure(error=_error_name(state), cause=cause)
    if notes:
        return Failure(error="CleanupIncomplete", cause=" | ".join(notes))
    return None
