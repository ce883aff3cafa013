"""Comparing source and target table by table: row counts and a checksum of the content.

The checksum is order-independent (a sum of a 64-bit hash of each row), so the two sides need not
return rows in the same order and no side has to sort or hold a table in memory; one query per table and
side. It compares rows by their text form (or, where that is as strict, their stored values:
:mod:`pg2rds.postgres.row_hash`), so the tables must have the same columns in the same order, which holds
when the target schema was created from the source's (pg_dump, or DMS's DROP_AND_CREATE).

A row's text depends on the session as much as on the data: ``timestamptz`` on TimeZone, dates on
DateStyle, intervals on IntervalStyle, floats on extra_float_digits, ``bytea`` on bytea_output, ``money``
on lc_monetary, and anything naming a relation (regclass) on search_path. Two servers with different
defaults (``ALTER DATABASE ... SET timezone``, postgresql.conf) would render identical values differently,
so every comparing session first pins them all (:func:`pin_comparing_session`).

It also runs each statement in its one backend (no parallel workers): the spec's
``verification_concurrency`` is then the number of backends a verification runs on each server. A
parallel plan would multiply that on the source, and for a key range of a mid-sized table (a fifth of it,
say) the planner's parallel choice is a sequential scan of the whole table in three processes, for every
range: the table read once per chunk instead of once.
"""

from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, NamedTuple

from psycopg2 import sql

from pg2rds.postgres.relations import own_rows
from pg2rds.postgres.row_hash import row_digest
from pg2rds.postgres.selection import TableName

#: Every session setting that changes how a stored value is rendered as text, and the value both sides
#: use. extra_float_digits = 3 gives the exact (round-trip) float text on every version; ``pg_catalog``
#: first in search_path makes regclass/regproc text schema-qualified alike and our functions unshadowed.
TEXT_RENDERING = {
    "TimeZone": "UTC",
    "DateStyle": "ISO, YMD",
    "IntervalStyle": "postgres",
    "extra_float_digits": "3",
    "bytea_output": "hex",
    "lc_monetary": "C",
    "search_path": "pg_catalog",
}

#: The comparing session's statements run in one backend each (see the module). The setting exists since
#: PostgreSQL 9.6, the first with parallel query; an older source (DMS reads 9.4 and 9.5) would refuse it.
ONE_BACKEND = {"max_parallel_workers_per_gather": "0"}
PARALLEL_QUERY_SINCE = 90600

#: A comparing session reads every row or fails, as pg_dump does: with ``row_security`` off, a table whose
#: row-level security policies would hide rows from the role raises an error instead of answering with the
#: rows it may see (a count and checksum of a subset, which could equal a target loaded with that same
#: subset). The setting exists since PostgreSQL 9.5.
ALL_ROWS = {"row_security": "off"}
ROW_SECURITY_SINCE = 90500


#: Stands for the large objects in a comparison: they live in pg_largeobject, not in the selected tables.
LARGE_OBJECTS = TableName("pg_catalog", "pg_largeobject")

#: The selected tables' columns that hold large-object oids (type oid, or a domain over it such as ``lo``).
_OID_COLUMNS = """
SELECT n.nspname, c.relname, a.attname
FROM unnest(%s::text[], %s::text[]) AS w(schema_name, table_name)
JOIN pg_namespace n ON n.nspname = w.schema_name
JOIN pg_class c ON c.relnamespace = n.oid AND c.relname = w.table_name
JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped
JOIN pg_type t ON t.oid = a.atttypid
WHERE coalesce(nullif(t.typbasetype, 0), t.oid) = 'oid'::regtype
ORDER BY 1, 2, 3
"""


class TableComparison(NamedTuple):
    table: TableName
    source_rows: int
    target_rows: int
    source_checksum: str
    target_checksum: str

    @property
    def matches(self) -> bool:
        return self.source_rows == self.target_rows and self.source_checksum == self.target_checksum


def _session_settings(server_version: int) -> dict[str, str]:
    return {
        **TEXT_RENDERING,
        **(ONE_BACKEND if server_version >= PARALLEL_QUERY_SINCE else {}),
        **(ALL_ROWS if server_version >= ROW_SECURITY_SINCE else {}),
    }


def pin_comparing_session(conn: Any) -> None:
    """Set :data:`TEXT_RENDERING`, :data:`ONE_BACKEND` and :data:`ALL_ROWS` for this session (one round
    trip), whatever the server's defaults."""
    with conn.cursor() as cur:
        cur.execute(
            sql.SQL("; ").join(
                sql.SQL("SET {} = {}").format(sql.Identifier(name), sql.Literal(value))
                for name, value in _session_settings(conn.server_version).items()
            )
        )


def table_checksum(conn: Any, table: TableName, digest: sql.Composable) -> tuple[int, str]:
    """(row count, checksum) of one table, read in one statement (one consistent snapshot); ``digest``:
    see :func:`~pg2rds.postgres.row_hash.row_digest`."""
    relation = own_rows(conn, table.schema, table.table)
    query = sql.SQL("SELECT count(*), {} FROM {} AS t").format(digest, relation)
    with conn.cursor() as cur:
        cur.execute(query)
        count, checksum = cur.fetchone()
        return int(count), str(checksum)


def large_object_columns(conn: Any, tables: Iterable[TableName]) -> list[tuple[str, str, str]]:
    """(schema, table, column) of every oid column of ``tables`` (one catalog query)."""
    tables = list(tables)
    with conn.cursor() as cur:
        cur.execute(_OID_COLUMNS, ([t.schema for t in tables], [t.table for t in tables]))
        return [tuple(row) for row in cur.fetchall()]


def _large_objects_query(columns: list[tuple[str, str, str]]) -> sql.Composable:
    """(objects referenced that exist, checksum of their oid and content) over ``columns``.

    Each object's content is read with ``lo_get`` (what the owner or a granted role may do, unlike reading
    pg_largeobject, which needs a superuser), hashed with md5, and summed like a table's rows.
    """
    referenced = sql.SQL(" UNION ").join(
        sql.SQL("SELECT {} AS lo FROM {}").format(sql.Identifier(column), sql.Identifier(schema, table))
        for schema, table, column in columns
    )
    return sql.SQL(
        "SELECT count(m.oid), "
        "coalesce(sum(('x' || substr(md5(r.lo::text || ':' || md5(lo_get(r.lo))), 1, 16))"
        "::bit(64)::bigint::numeric), 0)::text "
        "FROM ({}) r JOIN pg_largeobject_metadata m ON m.oid = r.lo"
    ).format(referenced)


def _large_objects(conn: Any, query: sql.Composable) -> tuple[int, str]:
    with conn.cursor() as cur:
        cur.execute(query)
        count, checksum = cur.fetchone()
        return int(count), str(checksum)


def _holds_large_objects(conn: Any) -> bool:
    """Whether the database holds any large object (one catalog row read at most)."""
    with conn.cursor() as cur:
        cur.execute("SELECT EXISTS (SELECT 1 FROM pg_largeobject_metadata)")
        return bool(cur.fetchone()[0])


def compare_large_objects(source: Any, target: Any, columns: list[tuple[str, str, str]]) -> TableComparison:
    """The large objects the selected rows point at: how many exist on each side, and their content.

    The same oids must exist on both sides (the rows hold them), so an object the target lacks, or
    whose bytes differ, changes the count or the checksum. Read in parallel on the two servers.

    The pre-flight refuses a migration whose selected oid columns meet a database holding large objects,
    so what normally remains are oid columns (of any size) on servers with none: then nothing is read,
    since no row can point at an existing object, and the result is what the full read would give (none
    on either side). The oid columns are read only when an object exists on either side.
    """
    with ThreadPoolExecutor(max_workers=2) as pool:
        if not any(pool.map(_holds_large_objects, (source, target))):
            return TableComparison(LARGE_OBJECTS, 0, 0, "0", "0")
    query = _large_objects_query(columns)
    with ThreadPoolExecutor(max_workers=2) as pool:
        on_source, on_target = (
            pool.submit(_large_objects, source, query),
            pool.submit(_large_objects, target, query),
        )
        (source_count, source_sum), (target_count, target_sum) = on_source.result(), on_target.result()
    return TableComparison(LARGE_OBJECTS, source_count, target_count, source_sum, target_sum)


def compare_tables(
    source: Any, target: Any, tables: Iterable[TableName], checksums: bool = True
) -> list[TableComparison]:
    """Compare each table; the two sides are read in parallel (they are different servers).

    With ``checksums=False`` only rows are counted (the checksum is ""): for tables too large to read
    twice in the time a Lambda has. Both sides hash alike (:func:`~pg2rds.postgres.row_hash.row_digest`).
    Both sessions' text rendering is pinned first, so the checksums depend on the data alone.
    """
    results = []
    with ThreadPoolExecutor(max_workers=2) as pool:
        for pinned in (
            pool.submit(pin_comparing_session, source),
            pool.submit(pin_comparing_session, target),
        ):
            pinned.result()
        for table in tables:
            digest = row_digest(source, target, table.schema, table.table, checksums)
            on_source = pool.submit(table_checksum, source, table, digest)
            on_target = pool.submit(table_checksum, target, table, digest)
            (source_rows, source_sum), (target_rows, target_sum) = on_source.result(), on_target.result()
            results.append(TableComparison(table, source_rows, target_rows, source_sum, target_sum))
    return results
