"""After the load: what DMS leaves to the user, done on the target.

- Sequences: DMS copies rows, not sequence positions, so a target ``nextval`` would hand out ids that
  already exist. Every sequence of the selected schemas is set to the source's position.
- Foreign keys: the load ran with ``session_replication_role = replica``, so no foreign key was checked.
  Each constraint on a selected table is checked with one anti-join; violations are reported by name.
- Verification: row counts and content checksums, table by table (:mod:`pg2rds.postgres.verify`), and,
  when selected columns hold large-object oids, the large objects they point at (count and content): DMS
  never moves them, so rows equal on both sides can still point at nothing on the target.
"""

from typing import Any

from psycopg2 import sql

from pg2rds.postgres.connection import connect
from pg2rds.postgres.selection import TableName, select_tables
from pg2rds.postgres.verify import (
    LARGE_OBJECTS,
    TableComparison,
    compare_large_objects,
    compare_tables,
    large_object_columns,
)
from pg2rds.secrets import Credentials
from pg2rds.spec import MigrationSpec
from pg2rds.state import FinishReport, TableCheck

_SOURCE_SEQUENCES = """
SELECT schemaname, sequencename, coalesce(last_value, start_value), last_value IS NOT NULL
FROM pg_sequences WHERE schemaname = ANY(%s) ORDER BY 1, 2
"""

_TARGET_FOREIGN_KEYS = """
SELECT con.conname, n.nspname, c.relname, rn.nspname, rc.relname,
       ARRAY(SELECT a.attname FROM unnest(con.conkey) WITH ORDINALITY k(num, i)
             JOIN pg_attribute a ON a.attrelid = con.conrelid AND a.attnum = k.num ORDER BY k.i),
       ARRAY(SELECT a.attname FROM unnest(con.confkey) WITH ORDINALITY k(num, i)
             JOIN pg_attribute a ON a.attrelid = con.confrelid AND a.attnum = k.num ORDER BY k.i)
FROM pg_constraint con
JOIN pg_class c ON c.oid = con.conrelid JOIN pg_namespace n ON n.oid = c.relnamespace
JOIN pg_class rc ON rc.oid = con.confrelid JOIN pg_namespace rn ON rn.oid = rc.relnamespace
WHERE con.contype = 'f' AND (n.nspname, c.relname) IN (SELECT * FROM unnest(%s::text[], %s::text[]))
  AND c.relkind = 'r'
ORDER BY 2, 3, 1
"""


def sync_sequences(source: Any, target: Any, schemas: list[str]) -> list[str]:
    """Set each target sequence of ``schemas`` to the source's position; returns the names set.

    Sequences missing on the target are skipped (and named by the caller's verification, if it matters).
    """
    with source.cursor() as cur:
        cur.execute(_SOURCE_SEQUENCES, (schemas,))
        sequences = cur.fetchall()
    if not sequences:
        return []
    with target.cursor() as cur:
        cur.execute(
            "SELECT schemaname, sequencename FROM pg_sequences WHERE schemaname = ANY(%s)", (schemas,)
        )
        present = set(cur.fetchall())
        wanted = [s for s in sequences if (s[0], s[1]) in present]
        if not wanted:
            return []
        statement = sql.SQL("SELECT ") + sql.SQL(", ").join(
            sql.SQL("setval({}, {}, {})").format(
                sql.Literal(sql.Identifier(schema, name).as_string(target)),
                sql.Literal(value),
                sql.Literal(called),
            )
            for schema, name, value, called in wanted
        )
        cur.execute(statement)
    return [f"{schema}.{name}" for schema, name, _, _ in wanted]


def foreign_key_violations(target: Any, tables: list[TableName]) -> list[str]:
    """Foreign keys on ``tables`` that the loaded rows violate, as "constraint on table: N rows"."""
    with target.cursor() as cur:
        cur.execute(_TARGET_FOREIGN_KEYS, ([t.schema for t in tables], [t.table for t in tables]))
        constraints = cur.fetchall()
        if not constraints:
            return []
        checks = [_orphan_count(*constraint) for constraint in constraints]
        cur.execute(sql.SQL("SELECT ") + sql.SQL(", ").join(checks))
        counts = cur.fetchone()
    return [
        f"{name} on {schema}.{table}: {count} rows without a parent in {ref_schema}.{ref_table}"
        for (name, schema, table, ref_schema, ref_table, _, _), count in zip(constraints, counts, strict=True)
        if count
    ]


def _orphan_count(
    name: str,
    schema: str,
    table: str,
    ref_schema: str,
    ref_table: str,
    columns: list[str],
    ref_columns: list[str],
) -> sql.Composable:
    """``(SELECT count(*) FROM child c WHERE all key columns set AND NOT EXISTS (parent row))``.

    MATCH SIMPLE semantics (PostgreSQL's default): a row with any NULL key column is not checked.
    """
    not_null = sql.SQL(" AND ").join(
        sql.SQL("c.{} IS NOT NULL").format(sql.Identifier(col)) for col in columns
    )
    joined = sql.SQL(" AND ").join(
        sql.SQL("p.{} = c.{}").format(sql.Identifier(ref), sql.Identifier(col))
        for col, ref in zip(columns, ref_columns, strict=True)
    )
    return sql.SQL(
        "(SELECT count(*) FROM {} c WHERE {} AND NOT EXISTS (SELECT 1 FROM {} p WHERE {}))"
    ).format(sql.Identifier(schema, table), not_null, sql.Identifier(ref_schema, ref_table), joined)


#: Per-table results kept in the execution state (the mismatches are always listed in full).
MAX_TABLE_CHECKS_IN_STATE = 200


def finish_target(
    spec: MigrationSpec, source_credentials: Credentials, target_credentials: Credentials
) -> FinishReport:
    """Sequences, foreign-key check and verification, in that order (sequences first: they are needed
    whatever the verification finds, and setting them is idempotent)."""
    with (
        connect(spec.source, source_credentials, "source", application_name="pg2rds-finish") as source,
        connect(spec.target, target_credentials, "target", application_name="pg2rds-finish") as target,
    ):
        tables = select_tables(source, spec.tables)
        sequences = sync_sequences(source, target, sorted({t.schema for t in tables}))
        violations = foreign_key_violations(target, tables)
        comparisons = (
            []
            if spec.verification == "none"
            else compare_tables(source, target, tables, checksums=spec.verification == "checksums")
        )
        oid_columns = large_object_columns(source, tables) if spec.verification != "none" else []
        if oid_columns:
            comparisons.append(compare_large_objects(source, target, oid_columns))
    return FinishReport(
        sequences_set=len(sequences),
        foreign_key_violations=violations,
        verification=spec.verification,
        tables_checked=len(comparisons),
        mismatched=[_describe_mismatch(c) for c in comparisons if not c.matches],
        tables=[
            TableCheck(
                table=str(c.table), source_rows=c.source_rows, target_rows=c.target_rows, matches=c.matches
            )
            for c in comparisons[:MAX_TABLE_CHECKS_IN_STATE]
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
