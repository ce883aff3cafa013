"""One live execution per migration id: a lease in a small DynamoDB table, taken by a conditional write.

The first state of an execution takes the lease for its migration id and lineage (the first execution of
its chain; continuations carry it). DynamoDB's conditional write makes two starts of the same spec race
safely: exactly one writes the item, the other is refused before it creates or deletes anything, with the
running execution named. The lease is given back by the cleanup once nothing of the lineage is left, so an
interrupted chain keeps it until its cleanup (the end-of-execution rule's, if the chain was stopped) is done.

The lease also fences an ended chain. A phase that creates something (instance, endpoints, slot, task)
registers itself in the lease item while it runs, and only while its lineage holds the lease and has not
ended. Every cleanup pass first marks the lineage ended (``ended_at``) and reads, in the same atomic
update, which phases are still running: an execution stopped (``StopExecution``, its time-out) while such
a Lambda runs leaves that Lambda running, and what it creates after the stop would otherwise be created
after the cleanup has looked, and never removed. The cleanup waits for them; a phase that starts after the
mark refuses to (:class:`MigrationEnded`). A Lambda killed by its own timeout never deregisters, so a
registration older than :data:`IN_FLIGHT_STALE_SECONDS` is not waited for.

The table's name comes from ``LEASE_TABLE_ENV`` (the template sets it); without it there is no lease.
"""

import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from botocore.exceptions import ClientError

from pg2rds.aws import client, error_code
from pg2rds.errors import MigrationAlreadyRunning, MigrationEnded
from pg2rds.polling import elapsed_seconds, now_iso

LEASE_TABLE_ENV = "PG2RDS_LEASE_TABLE"
_CONDITION_FAILED = "ConditionalCheckFailedException"
#: The attributes of the lease item that register a running phase: ``phase:<name>:<id>`` = its start.
_PHASE_PREFIX = "phase:"
#: A registration older than this is a Lambda that was killed (its timeout, 120 s in template.yaml, plus
#: the slot creation's 60 s statement timeout, after which the source gives up on its statement too).
IN_FLIGHT_STALE_SECONDS = 300


def _table() -> str | None:
    return os.environ.get(LEASE_TABLE_ENV) or None


def holder(migration_id: str) -> dict[str, Any] | None:
    """The lease of ``migration_id`` (``lineage``, ``execution_arn``, ``taken_at``), or None."""
    table = _table()
    if table is None:
        return None
    item = (
        client("dynamodb")
        .get_item(TableName=table, Key={"migration_id": {"S": migration_id}}, ConsistentRead=True)
        .get("Item")
    )
    if not item:
        return None
    return {
        key: value["S"] for key, value in item.items() if "S" in value and not key.startswith(_PHASE_PREFIX)
    }


def take(migration_id: str, lineage: str, execution_arn: str) -> None:
    """Take (or, for the same lineage, renew) the lease; :class:`MigrationAlreadyRunning` if another
    lineage holds it."""
    table = _table()
    if table is None:
        return
    item = {
        "migration_id": {"S": migration_id},
        "lineage": {"S": lineage},
        "execution_arn": {"S": execution_arn},
        "taken_at": {"S": now_iso()},
    }
    try:
        client("dynamodb").put_item(
            TableName=table,
            Item=item,
            # a lineage whose cleanup has begun (ended_at) is never revived
            ConditionExpression=(
                "attribute_not_exists(migration_id) "
                "OR (lineage = :lineage AND attribute_not_exists(ended_at))"
            ),
            ExpressionAttributeValues={":lineage": {"S": lineage}},
        )
    except ClientError as error:
        if error_code(error) != _CONDITION_FAILED:
            raise
        raise MigrationAlreadyRunning(_refusal(migration_id, table)) from None


def _refusal(migration_id: str, table: str) -> str:
    live = holder(migration_id) or {}
    running = live.get("execution_arn", "another execution")
    return (
        f"migration {migration_id!r} is already run by {running} (since {live.get('taken_at', '?')}); this "
        "execution was refused before creating or deleting anything, and leaves that one untouched. Fix: "
        f"follow it (pg2rds watch {running}) or abort it (pg2rds cutover {running} --abort); to run the "
        "migration again, start it once that execution has ended and cleaned up. Its lease is the item "
        f"{migration_id!r} of the DynamoDB table {table}."
    )


def owned_by(migration_id: str, lineage: str) -> bool:
    """Whether ``lineage`` may remove what only the lease tells apart (the source's slot): it holds the
    lease, or nobody does. Without a lineage (a state from before lineages) only "nobody" counts."""
    live = holder(migration_id)
    return live is None or (bool(lineage) and live.get("lineage") == lineage)


def release(migration_id: str, lineage: str) -> None:
    """Give the lease back, if this lineage holds it (a duplicate's cleanup never frees the live one's)."""
    table = _table()
    if table is None or not lineage:
        return
    try:
        client("dynamodb").delete_item(
            TableName=table,
            Key={"migration_id": {"S": migration_id}},
            ConditionExpression="lineage = :lineage",
            ExpressionAttributeValues={":lineage": {"S": lineage}},
        )
    except ClientError as error:
        if error_code(error) != _CONDITION_FAILED:
            raise


@contextmanager
def running_phase(migration_id: str, lineage: str, phase: str) -> Iterator[None]:
    """Register ``phase`` as running for ``lineage`` while the block runs, so that the lineage's cleanup
    waits for what it creates; :class:`MigrationEnded` (nothing done) if the lineage has ended."""
    table = _table()
    if table is None or not lineage:
        yield
        return
    key = f"{_PHASE_PREFIX}{phase}:{uuid.uuid4().hex[:12]}"
    dynamodb = client("dynamodb")
    try:
        dynamodb.update_item(
            TableName=table,
            Key={"migration_id": {"S": migration_id}},
            UpdateExpression="SET #phase = :started",
            ConditionExpression="lineage = :lineage AND attribute_not_exists(ended_at)",
            ExpressionAttributeNames={"#phase": key},
            ExpressionAttributeValues={":started": {"S": now_iso()}, ":lineage": {"S": lineage}},
        )
    except ClientError as error:
        if error_code(error) != _CONDITION_FAILED:
            raise
        raise MigrationEnded(
            f"{phase} did nothing: the execution chain {lineage} of migration {migration_id!r} has ended "
            "(its cleanup has begun, or its lease is gone), so nothing may be created for it any more"
        ) from None
    try:
        yield
    finally:
        try:
            dynamodb.update_item(
                TableName=table,
                Key={"migration_id": {"S": migration_id}},
                UpdateExpression="REMOVE #phase",
                ConditionExpression="attribute_exists(migration_id)",  # never recreate a released lease
                ExpressionAttributeNames={"#phase": key},
            )
        except ClientError as error:
            if error_code(error) != _CONDITION_FAILED:
                raise


def end_lineage(migration_id: str, lineage: str) -> list[str]:
    """Mark ``lineage`` ended (once; later calls keep the first mark) and return the phases still
    running for it, as "phase (running since ...)". Nothing if it does not hold the lease."""
    table = _table()
    if table is None or not lineage:
        return []
    try:
        item = client("dynamodb").update_item(
            TableName=table,
            Key={"migration_id": {"S": migration_id}},
            UpdateExpression="SET ended_at = if_not_exists(ended_at, :now)",
            ConditionExpression="lineage = :lineage",
            ExpressionAttributeValues={":now": {"S": now_iso()}, ":lineage": {"S": lineage}},
            ReturnValues="ALL_NEW",
        )["Attributes"]
    except ClientError as error:
        if error_code(error) != _CONDITION_FAILED:
            raise
        return []
    return [
        f"{key.split(':')[1]} (running since {value['S']})"
        for key, value in sorted(item.items())
        if key.startswith(_PHASE_PREFIX) and elapsed_seconds(value["S"]) < IN_FLIGHT_STALE_SECONDS
    ]
