"""Foreign keys checked on the target, one range of the referencing table at a time.

The load ran with ``session_replication_role = replica``, so no foreign key was checked. Each chunk of a
referencing table (:mod:`pg2rds.postgres.chunks`) counts, for every foreign key of that table, its rows in
the chunk's range whose parent row is missing: an anti-join probe of the parent's unique index per row, so
the work is bounded by the chunk's rows times the table's foreign keys, whatever the table's size. The
range is a block range where both servers scan them (PostgreSQL 14+), so the referencing table is read
once whatever the order of its key; a violated key then names a few of its rows (their primary key, or
their ``ctid`` in a table without one), which is what the operator looks for.

With CDC every foreign key is checked before the cutover is offered, while DMS replicates, and after the
decision only those of tables that DMS's change counters show written to since, or that reference such a
table (:func:`referenced_tables`, :func:`foreign_key_tables`; the rule is in :mod:`pg2rds.phases`).
With ``verification: dms``, a table written to until the end need not be checked again after the decision
either when DMS validated it and the tables it references, and the source holds the same constraints
(:func:`held_by_validation`).
"""

from collections.abc import Collection, Sequence
from typing import Any

from psycopg2 import sql

from pg2rds.postgres.keys import table_key
from pg2rds.postgres.relations import own_rows
from pg2rds.postgres.selection import TableName
from pg2rds.postgres.verify import pin_comparing_session
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


#: Every foreign key of the given tables (schema and table names, in two arrays): its name, its definition
#: as the server renders it, whether it is validated, and the table it references. Names resolved in the
#: session's search_path, which :func:`held_by_validation` pins to ``pg_catalog`` on both sides, so every
#: table the definition names is schema-qualified.
_CONSTRAINTS = """
SELECT w.schema_name, w.table_name, con.conname, pg_get_constraintdef(con.oid), con.convalidated,
       rn.nspname, rc.relname
FROM unnest(%s::text[], %s::text[]) AS w(schema_name, table_name)
JOIN pg_constraint con ON con.contype = 'f'
 AND con.conrelid = to_regclass(format('%%I.%%I', w.schema_name, w.table_name))
JOIN pg_class rc ON rc.oid = con.confrelid JOIN pg_namespace rn ON rn.oid = rc.relnamespace
"""


Constraint = tuple[str, str, str, str, bool, str, str]


def _constraints(conn: Any, tables: Sequence[tuple[str, str]]) -> list[Constraint]:
    """:data:`_CONSTRAINTS` of ``tables``: (schema, table, name, definition, validated, referenced schema,
    referenced table)."""
    with conn.cursor() as cur:
        cur.execute(_CONSTRAINTS, ([t[0] for t in tables], [t[1] for t in tables]))
        return [tuple(row) for row in cur.fetchall()]


def held_by_validation(
    source: Any,
    target: Any,
    tables: Sequence[tuple[str, str]],
    validated: Collection[tuple[str, str]],
    unchanged: Collection[tuple[str, str]] = (),
) -> set[tuple[str, str]]:
    """Of ``tables`` ((schema, table), one round's), those whose foreign keys on the target need no check
    after the cutover decision because DMS's validation and the source's constraints hold them: the table
    has foreign keys on the target; it and every table they reference are in ``validated`` (DMS reported
    them "Validated" on the stopped task); and every one of its foreign keys on the target has a
    counterpart on the source with the same name, the same definition (``pg_get_constraintdef``, both
    sessions' text rendering pinned alike, so a referenced table is named schema-qualified on both sides)
    and ``convalidated`` there. Tables whose foreign keys are left out as unchanged since the check before
    the decision (they and the tables they reference in ``unchanged``) are not counted here.

    Why this is sound: DMS's validation says the target's rows of these tables are the source's, and the
    source enforces the same constraint over them, so it holds on the target too. A ``NOT VALID``
    constraint on the source may hold old violating rows, so it does not count. The blind spot is DMS
    validation's own: a row written to the target by something other than DMS (or changed there after DMS
    validated it) whose source row DMS does not change afterwards is not compared again, by DMS or here.

    One catalog query per side for the given tables (the caller bounds them per round), read-only."""
    candidates = [t for t in tables if t in validated]
    if not candidates:
        return set()
    for conn in (source, target):
        pin_comparing_session(conn)
    on_target: dict[tuple[str, str], list[Constraint]] = {}
    for constraint in _constraints(target, candidates):
        on_target.setdefault((constraint[0], constraint[1]), []).append(constraint)
    if not on_target:
        return set()
    on_source = {c[:4] for c in _constraints(source, list(on_target)) if c[4]}  # validated there
    held = set()
    for name, constraints in on_target.items():
        parents = {(c[5], c[6]) for c in constraints}
        if all(t in unchanged for t in [name, *parents]):
            continue  # counted as unchanged since the check before the decision
        if all(t in validated for t in parents) and all(c[:4] in on_source for c in constraints):
            held.add(name)
    return held


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
    """Each foreign key of the chunk's table that rows in the chunk's range violate (one statement counts
    them for all its keys), as "constraint on table (blocks [range]): N rows without a parent in parent
    table, e.g. (id)=(7), (id)=(9)" (one more statement per violated key names up to :data:`EXAMPLES` rows).

    ``condition`` selects the chunk's rows of the table aliased ``c``. MATCH SIMPLE semantics
    (PostgreSQL's default): a row with any NULL key column is not checked.
    """
    with target.cursor() as cur:
        cur.execute(_FOREIGN_KEYS, (chunk.schema_name, chunk.table_name))
        constraints = cur.fetchall()
        if not constraints:
            return []
        table = own_rows(target, chunk.schema_name, chunk.table_name)
        orphans = [
            _orphans(table, condition, own_rows(target, ref_schema, ref_table), columns, ref_columns)
            for _, ref_schema, ref_table, columns, ref_columns in constraints
        ]
        checks = [sql.SQL("(SELECT count(*) {})").format(rows) for rows in orphans]
        cur.execute(sql.SQL("SELECT ") + sql.SQL(", ").join(checks), params * len(checks))
        counts = cur.fetchone()
        if not any(counts):
            return []
        key = [c.name for c in table_key(cur.connection, TableName(chunk.schema_name, chunk.table_name))]
        return [
            f"{name} on {chunk.describe()}: {count} rows without a parent in {ref_schema}.{ref_table}, "
            f"e.g. {_examples(cur, key, rows, params)}"
            for (name, ref_schema, ref_table, _, _), rows, count in zip(
                constraints, orphans, counts, strict=True
            )
            if count
        ]


#: Rows a violated foreign key names, each in at most this many characters.
EXAMPLES = 3
EXAMPLE_CHARS = 100


def _examples(cur: Any, key: list[str], orphans: sql.Composable, params: list[str]) -> str:
    """A few of the rows without a parent, by their table's ``key`` (``(id)=(7)``, as PostgreSQL words a
    violation) or, in a table without one, by ``ctid``. Only run for a foreign key that is violated."""
    shown = (
        sql.SQL("ROW({})::text").format(
            sql.SQL(", ").join(sql.SQL("c.{}").format(sql.Identifier(k)) for k in key)
        )
        if key
        else sql.SQL("c.ctid::text")
    )
    cur.execute(sql.SQL("SELECT {} {} LIMIT {}").format(shown, orphans, sql.Literal(EXAMPLES)), params)
    values = [row[0][:EXAMPLE_CHARS] for row in cur.fetchall()]
    if not key:
        return ", ".join(f"ctid {value}" for value in values)
    names = ", ".join(key)[:EXAMPLE_CHARS]
    return ", ".join(f"({names})={value}" for value in values)


def _orphans(
    table: sql.Composable,
    condition: sql.Composable,
    referenced: sql.Composable,
    columns: list[str],
    ref_columns: list[str],
) -> sql.Composable:
    """``FROM child c WHERE in range AND all key columns set AND NOT EXISTS (parent)``: the rows without a
    parent, to count or to name; both tables' own rows (:func:`~pg2rds.postgres.relations.own_rows`), as
    the constraint sees them."""
    not_null = sql.SQL(" AND ").join(
        sql.SQL("c.{} IS NOT NULL").format(sql.Identifier(col)) for col in columns
    )
    joined = sql.SQL(" AND ").join(
        sql.SQL("p.{} = c.{}").format(sql.Identifier(ref), sql.Identifier(col))
        for col, ref in zip(columns, ref_columns, strict=True)
    )
    return sql.SQL("FROM {} c WHERE {} AND {} AND NOT EXISTS (SELECT 1 FROM {} p WHERE {})").format(
        table, condition, not_null, referenced, joined
    )
