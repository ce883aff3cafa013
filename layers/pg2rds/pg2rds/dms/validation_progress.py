"""What a poll records about DMS's validation, and the re-validations it asks DMS for.

The state holds counts and a few names only (:class:`pg2rds.state.ValidationProgress`): the first tables
that differ with their first failing keys (read from DMS's failures table on the target), the tables
pg2rds will checksum itself after the decision, and a one-line summary of what the cutover will cost.

A table DMS found different stays so until DMS validates it again: after the operator fixes the target,
nothing tells DMS. pg2rds therefore asks for ``ReloadTables`` with ``ReloadOption=validate-only`` (DMS
API Reference: "re-validate the table"; only for a task that is running) for each such table, at most
once per ``spec.cdc.revalidate_minutes``, so a fixed target is seen equal and the cutover offered.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Sequence
from typing import TYPE_CHECKING

from botocore.exceptions import ClientError

from pg2rds.aws import error_code
from pg2rds.dms import validation
from pg2rds.dms.validation import TableValidation
from pg2rds.polling import elapsed_seconds, now_iso
from pg2rds.spec import MigrationSpec
from pg2rds.state import MAX_OBJECTS_PER_FINDING, Revalidation, ValidationProgress

if TYPE_CHECKING:
    from mypy_boto3_dms import DatabaseMigrationServiceClient

#: Tables whose failing keys one poll reads from the target, and keys named per table.
TABLES_WITH_KEYS = 5
KEYS_PER_TABLE = 5
#: Tables named in the summary and lists.
NAMED = MAX_OBJECTS_PER_FINDING

#: (schema, table, limit) → (the last failing keys, rendered; how many keys failed in all).
FailureKeys = Callable[[str, str, int], tuple[list[str], int]]


def _named_difference(
    table: TableValidation, failure_keys: FailureKeys | None, read: bool, rechecking: Collection[str]
) -> str:
    text = table.difference()
    if table.kind != "failing" and table.name in rechecking:
        text += ", re-validated at pg2rds's request after DMS found it different"
    if failure_keys is None or not read:
        return text
    keys, total = failure_keys(table.schema, table.table, KEYS_PER_TABLE)
    if not keys:
        return text
    more = f", and {total - len(keys)} more" if total > len(keys) else ""
    return f"{text}: {'; '.join(keys)}{more}"


def differing(tables: Sequence[TableValidation], rechecking: Collection[str] = ()) -> list[TableValidation]:
    return [t for t in tables if validation.differs(t, rechecking)]


def differences(
    tables: Sequence[TableValidation], failure_keys: FailureKeys | None, rechecking: Collection[str] = ()
) -> list[str]:
    """The first tables that differ, named with their counts and (for the first few) their failing keys
    (the failures table keeps them while DMS re-validates)."""
    return [
        _named_difference(table, failure_keys, index < TABLES_WITH_KEYS, rechecking)
        for index, table in enumerate(differing(tables, rechecking)[:NAMED])
    ]


def _signature(tables: Sequence[TableValidation], rechecking: Collection[str]) -> str:
    """Which tables differ, by name only: while DMS re-validates a table at pg2rds's request its state
    and counts go from "Mismatched records" to "Pending records" and back, and the topic would hear of
    the same difference at every cycle. A table that is validated in between, then differs again, is
    news."""
    return ";".join(t.name for t in differing(tables, rechecking))


def build(
    tables: Sequence[TableValidation],
    previous: ValidationProgress | None,
    failure_keys: FailureKeys | None,
    revalidations: list[Revalidation],
    notify: bool,
) -> ValidationProgress:
    """The poll's view of validation; ``notify`` (before the decision) fills ``notify`` when the tables
    that differ changed since the previous poll, so the topic hears of each change once."""
    unvalidated = [t for t in tables if t.kind == "unvalidated"]
    rechecking = {r.table for r in revalidations}
    named = differences(tables, failure_keys, rechecking)
    signature = _signature(tables, rechecking)
    changed = signature != (previous.signature if previous else "")
    failing = len(differing(tables, rechecking))
    return ValidationProgress(
        enabled=True,
        states=validation.states(tables),
        pending_records=sum(t.pending for t in tables),
        failed_records=sum(t.failed for t in tables),
        suspended_records=sum(t.suspended for t in tables),
        difference_count=failing,
        differences=named,
        unvalidated_count=len(unvalidated),
        unvalidated_rows=sum(t.rows for t in unvalidated),
        unvalidated=[f"{t.name} (~{t.rows:,} rows)" for t in unvalidated[:NAMED]],
        summary=validation.summary(tables, NAMED),
        notify=(render_differences(failing, named) if notify and changed and signature else ""),
        signature=signature,
        revalidations=revalidations,
    )


def render_differences(count: int, named: Sequence[str]) -> str:
    more = f"; and {count - len(named)} more tables" if count > len(named) else ""
    return f"DMS's validation found {count} table(s) different: " + " | ".join(named) + more


def _due(last: Revalidation | None, every_seconds: float) -> bool:
    return last is None or elapsed_seconds(last.at) >= every_seconds


def revalidate(
    dms: DatabaseMigrationServiceClient,
    spec: MigrationSpec,
    task_arn: str,
    tables: Sequence[TableValidation],
    previous: Sequence[Revalidation],
) -> list[Revalidation]:
    """Ask DMS to re-validate the tables that differ (at most once per ``spec.cdc.revalidate_minutes``
    each); the record of the last requests, kept for the tables still differing (at most ``NAMED``)."""
    last = {r.table: r for r in previous}
    kept: list[Revalidation] = []
    every = spec.cdc.revalidate_minutes * 60
    for table in [t for t in tables if t.kind == "failing"][:NAMED]:
        record = last.get(table.name)
        if _due(record, every) and _reload(dms, task_arn, table):
            record = Revalidation(table=table.name, at=now_iso())
        if record is not None:
            kept.append(record)
    failing = {r.table for r in kept}
    rechecking = [t for t in tables if t.name in last and t.name not in failing and t.kind != "validated"]
    kept += [last[t.name] for t in rechecking][: max(0, NAMED - len(kept))]  # not yet proved fixed
    return kept


def _reload(dms: DatabaseMigrationServiceClient, task_arn: str, table: TableValidation) -> bool:
    """Request one table's re-validation; False when DMS refuses it for the task's state (it is no longer
    running, e.g. stopping): the next poll tries again, or sees why."""
    try:
        dms.reload_tables(
            ReplicationTaskArn=task_arn,
            TablesToReload=[{"SchemaName": table.schema, "TableName": table.table}],
            ReloadOption="validate-only",
        )
    except ClientError as error:
        if error_code(error) != "InvalidResourceStateFault":
            raise
        return False
    return True


def timed_out(started_at: str, spec: MigrationSpec) -> bool:
    """Whether DMS has had longer than ``spec.cdc.validation_timeout_minutes`` since ``started_at``."""
    return bool(started_at) and elapsed_seconds(started_at) > spec.cdc.validation_timeout_minutes * 60
