"""Full-load building blocks of the DMS stand-in: table metadata, DMS-like table preparation, and a
COPY from one server streamed into a COPY on another through a bounded pipe.

Nothing here holds a table in memory: the source's ``COPY ... TO STDOUT`` writes into an OS pipe from a
producer thread while the target's ``COPY ... FROM STDIN`` reads from it, so at most the pipe's and the
two file buffers' bytes are in flight.
"""

import os
import threading
from dataclasses import dataclass, field
from typing import Any

from psycopg2 import sql

from pg2rds.postgres.selection import TableName

#: Bytes per read/write between the two COPYs (and each side's file buffer).
CHUNK = 256 * 1024

#: One query for every selected table's columns and primary key. ``search_path`` is emptied first so
#: ``format_type`` schema-qualifies every type that is not in pg_catalog (as DMS's DDL would need).
TABLE_METADATA_QUERY = """
SELECT n.nspname::text, c.relname::text,
       coalesce(array_agg(a.attname::text ORDER BY a.attnum) FILTER (WHERE a.attnum IS NOT NULL), '{}'),
       coalesce(array_agg(format_type(a.atttypid, a.atttypmod) ORDER BY a.attnum)
                FILTER (WHERE a.attnum IS NOT NULL), '{}'),
       coalesce(array_agg(a.attnotnull ORDER BY a.attnum) FILTER (WHERE a.attnum IS NOT NULL), '{}'),
       coalesce((SELECT array_agg(pa.attname::text ORDER BY array_position(i.indkey::int2[], pa.attnum))
                 FROM pg_index i
                 JOIN pg_attribute pa ON pa.attrelid = i.indrelid AND pa.attnum = ANY (i.indkey::int2[])
                 WHERE i.indrelid = c.oid AND i.indisprimary), '{}'),
       c.relkind = 'p'
FROM unnest(%s::text[], %s::text[]) AS wanted(schema_name, table_name)
JOIN pg_namespace n ON n.nspname = wanted.schema_name
JOIN pg_class c ON c.relnamespace = n.oid AND c.relname = wanted.table_name
LEFT JOIN pg_attribute a
       ON a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped AND a.attgenerated = ''
GROUP BY n.nspname, c.relname, c.oid
"""


@dataclass(frozen=True)
class TableMeta:
    name: TableName
    #: Copied columns: not dropped, not generated, in attnum order.
    columns: tuple[str, ...]
    types: tuple[str, ...] = ()
    not_null: tuple[bool, ...] = ()
    primary_key: tuple[str, ...] = field(default=())
    #: A partitioned parent: it has no rows of its own, DMS reads its partitions' rows through it.
    partitioned: bool = False

    @property
    def ident(self) -> sql.Identifier:
        return sql.Identifier(self.name.schema, self.name.table)


def table_metadata(conn: Any, tables: list[TableName]) -> dict[TableName, TableMeta]:
    """Columns (with types) and primary keys of ``tables`` on the source, in one round trip."""
    with conn.cursor() as cur:
        cur.execute("SET search_path = pg_catalog")
        try:
            cur.execute(TABLE_METADATA_QUERY, ([t.schema for t in tables], [t.table for t in tables]))
            rows = cur.fetchall()
        finally:
            cur.execute("RESET search_path")
    found = {}
    for schema, table, columns, types, not_null, pk, partitioned in rows:
        name = TableName(schema, table)
        found[name] = TableMeta(name, tuple(columns), tuple(types), tuple(not_null), tuple(pk), partitioned)
    return found


def column_list(columns: tuple[str, ...]) -> sql.Composable:
    return sql.SQL(", ").join(sql.Identifier(c) for c in columns)


def copy_out_statement(meta: TableMeta, binary: bool) -> sql.Composed:
    """``ONLY``: a table with inheritance children must not also yield its children's rows. A partitioned
    parent is read whole, as DMS reads a selected parent: every row of its partitions."""
    return sql.SQL("COPY (SELECT {} FROM {}{}) TO STDOUT{}").format(
        column_list(meta.columns),
        sql.SQL("" if meta.partitioned else "ONLY "),
        meta.ident,
        sql.SQL(" (FORMAT binary)" if binary else ""),
    )


def copy_in_statement(meta: TableMeta, binary: bool) -> sql.Composed:
    columns = sql.SQL(" ({})").format(column_list(meta.columns)) if meta.columns else sql.SQL("")
    return sql.SQL("COPY {}{} FROM STDIN{}").format(
        meta.ident, columns, sql.SQL(" (FORMAT binary)" if binary else "")
    )


def drop_and_create_statements(meta: TableMeta) -> list[sql.Composed]:
    """What DMS's DROP_AND_CREATE does: the table again with column types, NOT NULL and the primary key
    only (no defaults, foreign keys, secondary indexes). A type missing on the target fails the CREATE."""
    definitions: list[sql.Composable] = [
        sql.SQL("{} {}{}").format(sql.Identifier(name), sql.SQL(type_), sql.SQL(" NOT NULL" if nn else ""))
        for name, type_, nn in zip(meta.columns, meta.types, meta.not_null, strict=True)
    ]
    if meta.primary_key:
        definitions.append(sql.SQL("PRIMARY KEY ({})").format(column_list(meta.primary_key)))
    return [
        sql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(sql.Identifier(meta.name.schema)),
        sql.SQL("DROP TABLE IF EXISTS {} CASCADE").format(meta.ident),
        sql.SQL("CREATE TABLE {} ({})").format(meta.ident, sql.SQL(", ").join(definitions)),
    ]


def truncate_statement(meta: TableMeta) -> sql.Composed:
    return sql.SQL("TRUNCATE ONLY {}").format(meta.ident)


def piped_copy(source_conn: Any, copy_out: sql.Composable, target_conn: Any, copy_in: sql.Composable) -> int:
    """Stream ``copy_out`` (run on the source) into ``copy_in`` (run on the target); rows written.

    The target's transaction is left open for the caller to commit. If the source side fails part-way
    the target COPY sees an early end of data and succeeds with a partial table, so the source's error is
    raised afterwards and the caller must roll back.
    """
    read_fd, write_fd = os.pipe()
    reader = os.fdopen(read_fd, "rb", buffering=CHUNK)
    writer = os.fdopen(write_fd, "wb", buffering=CHUNK)
    produced: list[BaseException] = []

    def produce() -> None:
        try:
            with writer, source_conn.cursor() as cur:
                cur.copy_expert(copy_out, writer, size=CHUNK)
        except BaseException as error:
            produced.append(error)

    producer = threading.Thread(target=produce, name="standin-copy-out", daemon=True)
    producer.start()
    try:
        with target_conn.cursor() as cur:
            cur.copy_expert(copy_in, reader, size=CHUNK)
            rows = cur.rowcount
    except BaseException:
        reader.close()  # the producer's next write fails with EPIPE
        source_conn.cancel()  # and a producer waiting on the server stops waiting
        producer.join(30)
        raise
    reader.close()
    producer.join()
    if produced:
        raise produced[0]
    return rows
