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
from pg2rds_emulator.standin_lobs import FULL_LOBS, LOB_KIND_SQL, LobSettings

#: Bytes per read/write between the two COPYs (and each side's file buffer).
CHUNK = 256 * 1024

#: One query for every selected table's columns and primary key. ``search_path`` is emptied first so
#: ``format_type`` schema-qualifies every type that is not in pg_catalog (as DMS's DDL would need).
TABLE_METADATA_QUERY = f"""
SELECT n.nspname::text, c.relname::text,
       coalesce(array_agg(a.attname::text ORDER BY a.attnum) FILTER (WHERE a.attnum IS NOT NULL), '{{}}'),
       coalesce(array_agg(format_type(a.atttypid, a.atttypmod) ORDER BY a.attnum)
                FILTER (WHERE a.attnum IS NOT NULL), '{{}}'),
       coalesce(array_agg(a.attnotnull ORDER BY a.attnum) FILTER (WHERE a.attnum IS NOT NULL), '{{}}'),
       coalesce((SELECT array_agg(pa.attname::text ORDER BY array_position(i.indkey::int2[], pa.attnum))
                 FROM pg_index i
                 JOIN pg_attribute pa ON pa.attrelid = i.indrelid AND pa.attnum = ANY (i.indkey::int2[])
                 WHERE i.indrelid = c.oid AND i.indisprimary), '{{}}'),
       c.relkind = 'p',
       coalesce(array_agg({LOB_KIND_SQL} ORDER BY a.attnum) FILTER (WHERE a.attnum IS NOT NULL), '{{}}')
FROM unnest(%s::text[], %s::text[]) AS wanted(schema_name, table_name)
JOIN pg_namespace n ON n.nspname = wanted.schema_name
JOIN pg_class c ON c.relnamespace = n.oid AND c.relname = wanted.table_name
LEFT JOIN pg_attribute a
       ON a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped AND a.attgenerated = ''
LEFT JOIN pg_type t ON t.oid = a.atttypid
LEFT JOIN pg_type bt ON bt.oid = CASE WHEN t.typtype = 'd' THEN t.typbasetype ELSE t.oid END
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
    #: Per column: '' (not a LOB), 'binary' (bytea) or 'text' (the other types DMS treats as LOBs).
    lob_kinds: tuple[str, ...] = ()

    def lob_kind(self, column: str) -> str:
        kinds = dict(zip(self.columns, self.lob_kinds, strict=False))
        return kinds.get(column, "")

    def copied(self, lobs: LobSettings) -> tuple[tuple[str, str], ...]:
        """(column, LOB kind) of the columns the task migrates (no LOB columns without LOB support)."""
        kinds = self.lob_kinds or ("",) * len(self.columns)
        return tuple((c, k) for c, k in zip(self.columns, kinds, strict=True) if lobs.copies(k))

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
    for schema, table, columns, types, not_null, pk, partitioned, lob_kinds in rows:
        name = TableName(schema, table)
        found[name] = TableMeta(
            name, tuple(columns), tuple(types), tuple(not_null), tuple(pk), partitioned, tuple(lob_kinds)
        )
    return found


def column_list(columns: tuple[str, ...]) -> sql.Composable:
    return sql.SQL(", ").join(sql.Identifier(c) for c in columns)


def _from(meta: TableMeta) -> sql.Composed:
    """``ONLY``: a table with inheritance children must not also yield its children's rows. A partitioned
    parent is read whole, as DMS reads a selected parent: every row of its partitions."""
    return sql.SQL("{}{}").format(sql.SQL("" if meta.partitioned else "ONLY "), meta.ident)


#: What DMS writes for TIMESTAMP's infinities: "Positive and negative infinity values are truncated to
#: '9999-12-31 23:59:59' and '4713-01-01 00:00:00 BC' respectively" (User Guide, "Using a PostgreSQL
#: database as an AWS DMS source", Migrating from PostgreSQL to PostgreSQL). The page says it of TIMESTAMP
#: only; other date and time types are copied as they are.
TIMESTAMP_INFINITIES = {"infinity": "9999-12-31 23:59:59", "-infinity": "4713-01-01 00:00:00 BC"}
#: ``timestamp without time zone``'s oid (its values as test_decoding prints them).
TIMESTAMP_OID = 1114


def timestamp_as_dms(type_oid: int, value: object) -> object:
    """A value as DMS writes it: a TIMESTAMP's infinity as :data:`TIMESTAMP_INFINITIES` says."""
    if type_oid == TIMESTAMP_OID and isinstance(value, str):
        return TIMESTAMP_INFINITIES.get(value, value)
    return value


def _plain_timestamp(type_name: str) -> bool:
    """``timestamp``, ``timestamp(3)``: format_type's ``timestamp... without time zone``."""
    return type_name.startswith("timestamp") and type_name.endswith("without time zone")


def _as_dms(column: str, type_name: str, read: sql.Composable) -> sql.Composable:
    if not _plain_timestamp(type_name):
        return read
    infinities = [
        sql.SQL("WHEN {} = {} THEN {}::timestamp").format(read, sql.Literal(given), sql.Literal(written))
        for given, written in TIMESTAMP_INFINITIES.items()
    ]
    return sql.SQL("CASE {} ELSE {} END AS {}").format(
        sql.SQL(" ").join(infinities), read, sql.Identifier(column)
    )


def copy_out_statement(meta: TableMeta, binary: bool, lobs: LobSettings = FULL_LOBS) -> sql.Composed:
    """The source side of a table's full load: the migrated columns, LOBs as the task's LOB mode has them,
    TIMESTAMP's infinities as DMS writes them."""
    types = dict(zip(meta.columns, meta.types, strict=False))
    expressions = [
        _as_dms(column, types.get(column, ""), lobs.select_sql(column, kind))
        for column, kind in meta.copied(lobs)
    ]
    return sql.SQL("COPY (SELECT {} FROM {}) TO STDOUT{}").format(
        sql.SQL(", ").join(expressions), _from(meta), sql.SQL(" (FORMAT binary)" if binary else "")
    )


def copy_in_statement(meta: TableMeta, binary: bool, lobs: LobSettings = FULL_LOBS) -> sql.Composed:
    copied = tuple(column for column, _ in meta.copied(lobs))
    columns = sql.SQL(" ({})").format(column_list(copied)) if copied else sql.SQL("")
    return sql.SQL("COPY {}{} FROM STDIN{}").format(
        meta.ident, columns, sql.SQL(" (FORMAT binary)" if binary else "")
    )


def binary_possible(meta: TableMeta, lobs: LobSettings) -> bool:
    """A cut LOB travels as text, which only the text format turns back into the column's type."""
    return not any(lobs.cuts(kind) for _, kind in meta.copied(lobs))


def oversized_lobs_statement(meta: TableMeta, lobs: LobSettings) -> sql.Composed | None:
    """The largest value of each LOB column the task must not cut (limited mode failing on truncation),
    or None when there is none to measure."""
    measured = [(column, kind) for column, kind in meta.copied(lobs) if lobs.checks(kind)]
    if not measured:
        return None
    return sql.SQL("SELECT {} FROM {}").format(
        sql.SQL(", ").join(
            sql.SQL("coalesce(max({}), 0)").format(lobs.size_sql(column, kind)) for column, kind in measured
        ),
        _from(meta),
    )


def first_oversized(meta: TableMeta, lobs: LobSettings, sizes: tuple[int, ...]) -> str | None:
    """The failure message for the first measured column above LobMaxSize, if any."""
    measured = [column for column, kind in meta.copied(lobs) if lobs.checks(kind)]
    for column, size in zip(measured, sizes, strict=True):
        if size > lobs.max_bytes:
            return lobs.message(f"'{column}' of table '{meta.name.schema}'.'{meta.name.table}'", size)
    return None


def drop_and_create_statements(meta: TableMeta, primary_key: bool = True) -> list[sql.Composed]:
    """What DMS's DROP_AND_CREATE does: the table again with column types, NOT NULL and the primary key
    only (no defaults, foreign keys, secondary indexes); without the key when it comes after the rows
    (``CreatePkAfterFullLoad``, :func:`add_primary_key_statement`). A type missing on the target fails
    the CREATE."""
    definitions: list[sql.Composable] = [
        sql.SQL("{} {}{}").format(sql.Identifier(name), sql.SQL(type_), sql.SQL(" NOT NULL" if nn else ""))
        for name, type_, nn in zip(meta.columns, meta.types, meta.not_null, strict=True)
    ]
    if meta.primary_key and primary_key:
        definitions.append(sql.SQL("PRIMARY KEY ({})").format(column_list(meta.primary_key)))
    return [
        sql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(sql.Identifier(meta.name.schema)),
        sql.SQL("DROP TABLE IF EXISTS {} CASCADE").format(meta.ident),
        sql.SQL("CREATE TABLE {} ({})").format(meta.ident, sql.SQL(", ").join(definitions)),
    ]


def add_primary_key_statement(meta: TableMeta) -> sql.Composed | None:
    """The primary key of a table DROP_AND_CREATE made without it, built once its rows are in
    (``CreatePkAfterFullLoad``): one sort of the loaded rows instead of an index entry per row as they
    arrive. None for a table without a key."""
    if not meta.primary_key:
        return None
    return sql.SQL("ALTER TABLE {} ADD PRIMARY KEY ({})").format(meta.ident, column_list(meta.primary_key))


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
