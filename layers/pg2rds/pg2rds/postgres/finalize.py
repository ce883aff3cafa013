"""After the load: what DMS leaves to the user, done on the target.

- Sequences: DMS copies rows, not sequence positions, so a target ``nextval`` would hand out ids that
  already exist. The sequences the selected tables own (serial, identity) or use in a column default are
  moved to the source's position, never backwards: a target sequence already further on is left alone
  (moving it back would hand out ids the target used). A position the role cannot read is an error,
  not a reset to the start.
- Foreign keys: checked next, with the tables, one key range of the referencing table per invocation
  (:mod:`pg2rds.postgres.foreign_keys`).
- Large objects: when selected columns hold large-object oids, the large objects they point at (count and
  content): DMS never moves them, so rows equal on both sides can still point at nothing on the target.
  The tables themselves are verified after this, in bounded chunks (:mod:`pg2rds.postgres.chunks`).
"""

from typing import Any, NamedTuple

from psycopg2 import sql

from pg2rds.bounded import joined
from pg2rds.errors import SequenceUnreadable
from pg2rds.postgres.connection import connect
from pg2rds.postgres.selection import TableName, select_tables
from pg2rds.postgres.verify import (
    LARGE_OBJECTS,
    TableComparison,
    compare_large_objects,
    large_object_columns,
)
from pg2rds.secrets import Credentials
from pg2rds.spec import MigrationSpec
from pg2rds.state import MAX_OBJECTS_PER_FINDING, FinishReport, TableCheck

#: The sequences of the selected tables: owned by them or their partitioned ancestors (serial: deptype
#: 'a', identity: 'i'), or named in one of their column defaults (nextval('seq'): a normal dependency of
#: the default on the sequence). Position, whether it was called, direction, and whether we may read it.
_SOURCE_SEQUENCES = """
WITH RECURSIVE tables AS (
    SELECT c.oid
    FROM unnest(%s::text[], %s::text[]) AS w(schema_name, table_name)
    JOIN pg_namespace n ON n.nspname = w.schema_name
    JOIN pg_class c ON c.relnamespace = n.oid AND c.relname = w.table_name
),
owners AS (
    SELECT oid FROM tables
    UNION
    SELECT i.inhparent FROM pg_inherits i JOIN owners o ON i.inhrelid = o.oid
),
sequences AS (
    SELECT d.objid AS oid
    FROM pg_depend d JOIN owners o ON o.oid = d.refobjid
    WHERE d.classid = 'pg_class'::regclass AND d.refclassid = 'pg_class'::regclass
      AND d.deptype IN ('a', 'i')
    UNION
    SELECT d.refobjid
    FROM pg_attrdef ad
    JOIN tables t ON t.oid = ad.adrelid
    JOIN pg_depend d ON d.classid = 'pg_attrdef'::regclass AND d.objid = ad.oid
                    AND d.refclassid = 'pg_class'::regclass
)
SELECT s.schemaname, s.sequencename, s.last_value, s.start_value, s.increment_by,
       has_sequence_privilege(q.oid, 'SELECT')
FROM sequences q
JOIN pg_class c ON c.oid = q.oid AND c.relkind = 'S'
JOIN pg_namespace n ON n.oid = c.relnamespace
JOIN pg_sequences s ON s.schemaname = n.nspname AND s.sequencename = c.relname
ORDER BY 1, 2
"""

_TARGET_POSITIONS = """
SELECT schemaname, sequencename, last_value
FROM pg_sequences
WHERE (schemaname, sequencename) IN (SELECT * FROM unnest(%s::text[], %s::text[]))
"""


class SequencePosition(NamedTuple):
    schema: str
    name: str
    #: None when the sequence was never called (pg_sequences shows no last_value then).
    last_value: int | None
    start_value: int
    increment: int

    def next_value(self) -> int:
        """What nextval would return: how far on a sequence is, comparable between two servers."""
        return self.start_value if self.last_value is None else self.last_value + self.increment

    def __str__(self) -> str:
        return f"{self.schema}.{self.name}"


def source_sequences(source: Any, tables: list[TableName]) -> list[SequencePosition]:
    """The positions of the selected tables' sequences on the source (one query).

    Raises :class:`SequenceUnreadable` if the role may not read one: pg_sequences then shows no
    last_value, which must not be mistaken for a sequence never used (and a target reset to its start).
    """
    with source.cursor() as cur:
        cur.execute(_SOURCE_SEQUENCES, ([t.schema for t in tables], [t.table for t in tables]))
        rows = cur.fetchall()
    unreadable = [f"{schema}.{name}" for schema, name, *_, readable in rows if not readable]
    if unreadable:
        raise SequenceUnreadable(
            f"cannot read the position of {len(unreadable)} source sequence(s) of the selected tables: "
            + joined(unreadable)
            + ". Fix: GRANT SELECT ON SEQUENCE <sequence> TO the source role (or GRANT SELECT ON ALL "
            "SEQUENCES IN SCHEMA <schema>), then run the migration again; the target's sequences were "
            "not changed."
        )
    return [SequencePosition(*row[:5]) for row in rows]


def sync_sequences(source: Any, target: Any, tables: list[TableName]) -> list[str]:
    """Move each target sequence of ``tables`` forward to the source's position; returns the names set.

    A target sequence already at or beyond the source's next value is left where it is, and sequences
    missing on the target are skipped (the table comparison names what matters).
    """
    wanted = source_sequences(source, tables)
    if not wanted:
        return []
    with target.cursor() as cur:
        cur.execute(_TARGET_POSITIONS, ([s.schema for s in wanted], [s.name for s in wanted]))
        on_target = {(schema, name): last for schema, name, last in cur.fetchall()}
        behind = [
            s
            for s in wanted
            if (s.schema, s.name) in on_target
            and _ahead(s, s._replace(last_value=on_target[s.schema, s.name]))
        ]
        if not behind:
            return []
        statement = sql.SQL("SELECT ") + sql.SQL(", ").join(
            sql.SQL("setval({}, {}, {})").format(
                sql.Literal(sql.Identifier(s.schema, s.name).as_string(target)),
                sql.Literal(s.start_value if s.last_value is None else s.last_value),
                sql.Literal(s.last_value is not None),
            )
            for s in behind
        )
        cur.execute(statement)
    return [str(s) for s in behind]


def _ahead(source: SequencePosition, target: SequencePosition) -> bool:
    """Is the source's sequence further on than the target's (in the sequence's own direction)?"""
    if source.increment > 0:
        return source.next_value() > target.next_value()
    return source.next_value() < target.next_value()


#: The large-object comparison's source statement may run this long: below finish-target's Lambda timeout
#: (900 s, template.yaml).
FINISH_STATEMENT_TIMEOUT_MS = 840_000


def finish_target(
    spec: MigrationSpec, source_credentials: Credentials, target_credentials: Credentials
) -> FinishReport:
    """Sequences, then large objects (sequences first: they are needed whatever the verification finds,
    and setting them is idempotent)."""
    with (
        connect(
            spec.source,
            source_credentials,
            "source",
            application_name="pg2rds-finish",
            statement_timeout_ms=FINISH_STATEMENT_TIMEOUT_MS,
        ) as source,
        connect(spec.target, target_credentials, "target", application_name="pg2rds-finish") as target,
    ):
        tables = select_tables(source, spec.tables)
        sequences = sync_sequences(source, target, tables)
        comparisons: list[TableComparison] = []  # tables: verified next, in chunks (pg2rds.postgres.chunks)
        oid_columns = large_object_columns(source, tables) if spec.verification != "none" else []
        if oid_columns:
            comparisons.append(compare_large_objects(source, target, oid_columns))
    return FinishReport(
        sequences_set=len(sequences),
        verification=spec.verification,
        tables_checked=len(comparisons),
        mismatched=[_describe_mismatch(c) for c in comparisons if not c.matches],
        tables=[
            TableCheck(
                table=str(c.table), source_rows=c.source_rows, target_rows=c.target_rows, matches=c.matches
            )
            for c in comparisons[:MAX_OBJECTS_PER_FINDING]
        ],
    )


def _describe_mismatch(c: TableComparison) -> str:
    if c.table == LARGE_OBJECTS:
        if c.source_rows != c.target_rows:
            return (
                f"large objects the selected rows point at ({c.source_rows} on the source, "
                f"{c.target_rows} on the target)"
            )
        return f"large objects the selected rows point at (same {c.source_rows}, different content)"
    if c.source_rows != c.target_rows:
        return f"{c.table} ({c.source_rows} rows on the source, {c.target_rows} on the target)"
    return f"{c.table} (same {c.source_rows} rows, different content)"
