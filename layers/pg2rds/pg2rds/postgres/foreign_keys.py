"""Foreign keys checked on the target, one key range of the referencing table at a time.

The load ran with ``session_replication_role = replica``, so no foreign key was checked. Each chunk of a
referencing table (:mod:`pg2rds.postgres.chunks`) counts, for every foreign key of that table, its rows in
the chunk's range whose parent row is missing: an anti-join probe of the parent's unique index per row, so
the work is bounded by the chunk's rows times the table's foreign keys, whatever the table's size.

With CDC every foreign key is checked before the cutover is offered, while DMS replicates, and after the
decision only those of tables that DMS's change counters show written to since, or that reference such a
table (:func:`referenced_tables`, :func:`foreign_key_tables`; the rule is in :mod:`pg2rds.phases`).
"""

from typing import Any

from psycopg2 import sql

from pg2rds.state import Chunk

_FOREIGN_KEYS = """
SELECT con.conname, rn.nspname, rc.relname,
       ARRAY(SELECT a.attname FROM unnest(con.conkey) WITH ORDINALITY k(num, i)
             JOIN pg_attribute a ON a.attrelid = con.conrelid AND a.attnum = k.num ORDER BY k.i),
       ARRAY(SELECT a.attname FROM unnest(con.confkey) WITH ORDINALITY k(num, i)
             JOIN pg_attribute a ON a.attrelid = con.confrelid AND a.attnum = k.num ORDER BY k.i)
FROM pg_constraint con
JOIN pg_class rc ON rc.oid = con.confrelid JOIN pg_namespace rn ON rn.oid = rc.relnamespace
WHERE con.contype = 'f' AND con.conrelid = to_regclass(format('%%I.%%I', %s, %s))
ORDER BY con.conname
"""


def referenced_tables(conn: Any, schema: str, table: str) -> list[tuple[str, str]]:
    """The tables this table's foreign keys (on the target) reference, as (schema, table); none when it has
    no foreign key. One catalog query."""
    with conn.cursor() as cur:
        cur.execute(
            "SELECT DISTINCT rn.nspname, rc.relname FROM pg_constraint con "
            "JOIN pg_class rc ON rc.oid = con.confrelid JOIN pg_namespace rn ON rn.oid = rc.relnamespace "
            "WHERE con.contype = 'f' AND con.conrelid = to_regclass(format('%%I.%%I', %s, %s)) ORDER BY 1, 2",
            (schema, table),
        )
        return [(row[0], row[1]) for row in cur.fetchall()]


def foreign_key_tables(conn: Any) -> set[tuple[str, str]]:
    """Every table (on the target) that has a foreign key or is referenced by one, as (schema, table): one
    catalog query, as many rows as such tables."""
    with conn.cursor() as cur:
        cur.execute(
            "SELECT n.nspname, c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
            "WHERE c.oid IN (SELECT conrelid FROM pg_constraint WHERE contype = 'f' "
            "UNION SELECT confrelid FROM pg_constraint WHERE contype = 'f')"
        )
        return {(row[0], row[1]) for row in cur.fetchall()}


def range_violations(target: Any, chunk: Chunk, condition: sql.Composable, params: list[str]) -> list[str]:
    """Each foreign key of the chunk's table that rows in the chunk's range violate (one statement for
    all of them), as "constraint on table (key) in [range]: N rows without a parent in parent table".

    ``condition`` selects the chunk's rows of the table aliased ``c``. MATCH SIMPLE semantics
    (PostgreSQL's default): a row with any NULL key column is not checked.
    """
    with target.cursor() as cur:
        cur.execute(_FOREIGN_KEYS, (chunk.schema_name, chunk.table_name))
        constraints = cur.fetchall()
        if not constraints:
            return []
        table = sql.Identifier(chunk.schema_name, chunk.table_name)
        checks = [_orphans(table, condition, *constraint[1:]) for constraint in constraints]
        cur.execute(sql.SQL("SELECT ") + sql.SQL(", ").join(checks), params * len(checks))
        counts = cur.fetchone()
    return [
        f"{name} on {chunk.describe()}: {count} rows without a parent in {ref_schema}.{ref_table}"
        for (name, ref_schema, ref_table, _, _), count in zip(constraints, counts, strict=True)
        if count
    ]


def _orphans(
    table: sql.Identifier,
    condition: sql.Composable,
    ref_schema: str,
    ref_table: str,
    columns: list[str],
    ref_columns: list[str],
) -> sql.Composable:
    """``(SELECT count(*) FROM child c WHERE in range AND all key columns set AND NOT EXISTS (parent))``."""
    not_null = sql.SQL(" AND ").join(
        sql.SQL("c.{} IS NOT NULL").format(sql.Identifier(col)) for col in columns
    )
    joined = sql.SQL(" AND ").join(
        sql.SQL("p.{} = c.{}").format(sql.Identifier(ref), sql.Identifier(col))
        for col, ref in zip(columns, ref_columns, strict=True)
    )
    return sql.SQL(
        "(SELECT count(*) FROM {} c WHERE {} AND {} AND NOT EXISTS (SELECT 1 FROM {} p WHERE {}))"
    ).format(table, condition, not_null, sql.Identifier(ref_schema, ref_table), joined)
