"""One live execution per migration id: a lease in a small DynamoDB table, taken by a conditional write.

The first state of an execution takes the lease for its migration id and lineage (the first execution of
its chain; continuations carry it). DynamoDB's conditional write makes two starts of the same spec race
safely: exactly one writes the item, the other is refused before it creates or deletes anything, with the
running execution named. The lease is given back by the cleanup once nothing of the lineage is left, so an
interrupted chain keeps it until its cleanup (the end-of-execution rule's, if the chain was stopped) is done.

The table's name comes from ``LEASE_TABLE_ENV`` (the template sets it); without it there is no lease.
"""

import os
from typing import Any

from botocore.exceptions import ClientError

from pg2rds.aws import client, error_code
from pg2rds.errors import MigrationAlreadyRunning
from pg2rds.polling import now_iso

LEASE_TABLE_ENV = "PG2RDS_LEASE_TABLE"
_CONDITION_FAILED = "ConditionalCheckFailedException"


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
    return {key: value["S"] for key, value in item.items()} if item else None


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
            ConditionExpression="attribute_not_exists(migration_id) OR lineage = :lineage",
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
