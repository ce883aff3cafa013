"""DMS data validation as DescribeTableStatistics reports it, read table by table (no I/O here).

With ``verification: dms`` the task's ``ValidationSettings`` make DMS compare each table by primary key
after its full load and re-compare changed rows during CDC (User Guide, "AWS DMS data validation"). Each
table's row carries ``ValidationState`` and the pending, failed and suspended record counts; a table is
proved equal when it is "Validated" with nothing pending, failed or suspended. Tables DMS cannot validate
("No primary key", or "Not enabled" for tables it leaves out) are pg2rds's to checksum after the decision.

Why DMS's validation rather than pg2rds's own chunk re-checks: DMS re-validates exactly the rows that
changed, while DescribeTableStatistics only counts changes per table and never says which keys, so
pg2rds could only re-check whole tables that changed.
"""

from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

Kind = Literal["validated", "pending", "failing", "unvalidated"]

VALIDATED = "Validated"
#: States in which DMS does not validate the table at all: pg2rds checksums it itself.
UNVALIDATED_STATES = frozenset({"No primary key", "Not enabled"})
#: States that mean a difference, or a table DMS could not validate because of an error.
FAILING_STATES = frozenset({"Mismatched records", "Suspended records", "Table error", "Error"})
#: States of a table whose full validation pass has not started yet.
WAITING_STATES = frozenset({"Pending validation", "Pending revalidation", "Preparing table"})


@dataclass(frozen=True)
class TableValidation:
    """One table's validation, from its DescribeTableStatistics row."""

    schema: str
    table: str
    state: str
    pending: int = 0
    failed: int = 0
    suspended: int = 0
    details: str = ""
    #: Rows DMS counted for it (full load plus inserts minus deletes): the size of a checksum after the
    #: decision, for tables DMS does not validate.
    rows: int = 0

    @classmethod
    def of(cls, row: Mapping[str, Any]) -> "TableValidation":
        return cls(
            schema=row.get("SchemaName", ""),
            table=row.get("TableName", ""),
            state=row.get("ValidationState", "") or "Not enabled",
            pending=int(row.get("ValidationPendingRecords", 0) or 0),
            failed=int(row.get("ValidationFailedRecords", 0) or 0),
            suspended=int(row.get("ValidationSuspendedRecords", 0) or 0),
            details=row.get("ValidationStateDetails", "") or "",
            rows=max(
                0, int(row.get("FullLoadRows", 0)) + int(row.get("Inserts", 0)) - int(row.get("Deletes", 0))
            ),
        )

    @property
    def name(self) -> str:
        return f"{self.schema}.{self.table}"

    @property
    def kind(self) -> Kind:
        if self.state in UNVALIDATED_STATES:
            return "unvalidated"
        if self.failed or self.suspended or self.state in FAILING_STATES:
            return "failing"
        if self.state == VALIDATED and not self.pending:
            return "validated"
        return "pending"

    def difference(self) -> str:
        """What DMS reports about a failing table, without the keys (the caller adds them)."""
        counts = [f"{n} {what}" for n, what in ((self.failed, "failed"), (self.suspended, "suspended")) if n]
        return (
            f"{self.name}: {self.state}"
            + (f", {' and '.join(counts)} records" if counts else "")
            + (f" ({self.details})" if self.details else "")
        )


def read_tables(rows: Iterable[Mapping[str, Any]]) -> list[TableValidation]:
    return [TableValidation.of(row) for row in rows]


@dataclass(frozen=True)
class ValidationCounts:
    """What the poll decision needs: how many tables are still being validated, and how many differ."""

    pending_tables: int = 0
    failing_tables: int = 0
    #: Tables whose full pass has not started (their size is not yet in the pending records).
    waiting_tables: int = 0
    pending_records: int = 0

    @property
    def settled(self) -> bool:
        return not self.pending_tables and not self.failing_tables


def differs(table: TableValidation, rechecking: Collection[str] = ()) -> bool:
    """``rechecking``: tables DMS found different and re-validates at pg2rds's request. Until DMS says
    "Validated" they still differ: a re-validation under way reset their failed records, not fixed them."""
    return table.kind == "failing" or (table.name in rechecking and table.kind != "validated")


def counts(tables: Sequence[TableValidation], rechecking: Collection[str] = ()) -> ValidationCounts:
    """How many tables are pending, differ (:func:`differs`), wait for their pass; records pending."""
    return ValidationCounts(
        pending_tables=sum(t.kind == "pending" and not differs(t, rechecking) for t in tables),
        failing_tables=sum(differs(t, rechecking) for t in tables),
        waiting_tables=sum(t.state in WAITING_STATES for t in tables),
        pending_records=sum(t.pending for t in tables if t.kind == "pending"),
    )


def validated_names(tables: Iterable[TableValidation]) -> set[tuple[str, str]]:
    """(schema, table) of the tables DMS has proved equal: pg2rds leaves them out of its checksums."""
    return {(t.schema, t.table) for t in tables if t.kind == "validated"}


def states(tables: Iterable[TableValidation]) -> dict[str, int]:
    result: dict[str, int] = {}
    for table in tables:
        result[table.state] = result.get(table.state, 0) + 1
    return dict(sorted(result.items()))


def summary(tables: Sequence[TableValidation], shown: int) -> str:
    """What is left to re-check after a decision now, in one line (``pg2rds status``, the SNS offer)."""
    validated = sum(t.kind == "validated" for t in tables)
    pending = sum(t.pending for t in tables)
    unvalidated = [t for t in tables if t.kind == "unvalidated"]
    failing = sum(t.kind == "failing" for t in tables)
    parts = [f"DMS validated {validated} of the {len(tables) - len(unvalidated)} tables it can validate"]
    parts.append(f"{pending:,} records pending validation")
    if failing:
        parts.append(f"{failing} tables differ")
    if unvalidated:
        names = ", ".join(f"{t.name} (~{t.rows:,} rows)" for t in unvalidated[:shown])
        more = f", and {len(unvalidated) - shown} more" if len(unvalidated) > shown else ""
        rows = sum(t.rows for t in unvalidated)
        parts.append(
            f"after the decision pg2rds checksums {len(unvalidated)} tables DMS cannot validate "
            f"(~{rows:,} rows): {names}{more}"
        )
    else:
        parts.append("after the decision pg2rds checksums no table (all validated by DMS)")
    return "; ".join(parts)
