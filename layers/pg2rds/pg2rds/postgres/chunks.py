"""Verification in bounded chunks: each table is cut into ranges of its primary key, each range checked by
one short Lambda invocation, fanned out by the state machine's ``Map`` state.

Why ranges of the primary key's leading column, when it is an integer: a range ``[lower, upper)`` of a
unique integer key holds at most ``upper - lower`` rows on either side, so a chunk's work is bounded by
construction whatever the table's size; the bounds come from ``min()``/``max()`` (two index probes) and
the planner's row estimate, so planning reads no table. The first range is open below and the last open
above, so rows the target holds outside the source's key range are counted too. Tables without a primary
key, or whose key does not start with an integer column, are checked whole in one chunk (and named so).

A round plans at most ``max_chunks`` chunks from a cursor (table index, chunk index), so neither the
state nor one invocation grows with the number of tables. Chunks are compared like whole tables
(:mod:`pg2rds.postgres.verify`): row count and an order-independent checksum of the rows' text, with
both sessions' text rendering pinned.
"""

import math
from typing import Any

from psycopg2 import sql

from pg2rds.postgres.connection import connect
from pg2rds.postgres.selection import TableName, select_tables
from pg2rds.postgres.verify import HASHTEXTEXTENDED_SINCE, pin_text_rendering
from pg2rds.secrets import Credentials
from pg2rds.spec import MigrationSpec
from pg2rds.state import Chunk, ChunkCheck

_INTEGER_TYPES = {"smallint", "integer", "bigint"}
#: Even a sparse key range of a huge table is cut into no more than this many chunks.
MAX_CHUNKS_PER_TABLE = 100_000

_LEADING_KEY = """
SELECT a.attname, format_type(a.atttypid, NULL), greatest(c.reltuples, 0)::bigint
FROM pg_class c
LEFT JOIN pg_index i ON i.indrelid = c.oid AND i.indisprimary
LEFT JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum = i.indkey[0]
WHERE c.oid = to_regclass(format('%%I.%%I', %s, %s))
"""

_ROW_HASH = {
    True: sql.SQL("coalesce(sum(hashtextextended(t::text, 0)), 0)::text"),
    False: sql.SQL("coalesce(sum(('x' || substr(md5(t::text), 1, 16))::bit(64)::bigint::numeric), 0)::text"),
}


def _key_and_bounds(conn: Any, table: TableName) -> tuple[str | None, int, int, int]:
    """(integer leading key column or None, min, max, estimated rows)."""
    with conn.cursor() as cur:
        cur.execute(_LEADING_KEY, (table.schema, table.table))
        row = cur.fetchone()
        if row is None or row[0] is None or row[1] not in _INTEGER_TYPES:
            return None, 0, 0, 0
        key, _, estimate = row
        cur.execute(
            sql.SQL("SELECT min({key}), max({key}) FROM {table}").format(
                key=sql.Identifier(key), table=sql.Identifier(table.schema, table.table)
            )
        )
        low, high = cur.fetchone()
    if low is None:
        return None, 0, 0, 0  # empty on the source: one chunk sees whatever the target has
    return key, int(low), int(high), int(estimate)


def _table_chunks(conn: Any, table: TableName, chunk_rows: int) -> list[Chunk]:
    key, low, high, estimate = _key_and_bounds(conn, table)
    if key is None:
        return [Chunk(schema_name=table.schema, table_name=table.table)]
    span = high - low + 1
    # a range no wider than chunk_rows holds at most chunk_rows rows; sparse keys get wider ranges of
    # about chunk_rows rows each by the planner's estimate (doubled: it may be stale), when there is one
    count = math.ceil(span / chunk_rows)
    if estimate > 0:
        count = min(count, math.ceil(2 * estimate / chunk_rows))
    count = max(1, min(count, MAX_CHUNKS_PER_TABLE))
    width = math.ceil(span / count)
    chunks = []
    for index in range(count):
        lower = None if index == 0 else low + index * width
        upper = None if index == count - 1 else low + (index + 1) * width
        chunks.append(
            Chunk(schema_name=table.schema, table_name=table.table, key=key, lower=lower, upper=upper)
        )
    return chunks


def plan_round(
    conn: Any, tables: list[TableName], next_table: int, next_chunk: int, chunk_rows: int, max_chunks: int
) -> tuple[list[Chunk], int, int]:
    """Up to ``max_chunks`` chunks from the cursor on, and the cursor after them."""
    planned: list[Chunk] = []
    while next_table < len(tables) and len(planned) < max_chunks:
        chunks = _table_chunks(conn, tables[next_table], chunk_rows)
        taken = chunks[next_chunk : next_chunk + max_chunks - len(planned)]
        planned.extend(taken)
        next_chunk += len(taken)
        if next_chunk >= len(chunks):
            next_table, next_chunk = next_table + 1, 0
    return planned, next_table, next_chunk


def _chunk_query(chunk: Chunk, checksums: bool, hashtextextended: bool) -> tuple[sql.Composable, list]:
    digest = _ROW_HASH[hashtextextended] if checksums else sql.SQL("''")
    query = sql.SQL("SELECT count(*), {} FROM {} AS t").format(
        digest, sql.Identifier(chunk.schema_name, chunk.table_name)
    )
    conditions, params = [], []
    if chunk.key is not None and chunk.lower is not None:
        conditions.append(sql.SQL("t.{} >= %s").format(sql.Identifier(chunk.key)))
        params.append(chunk.lower)
    if chunk.key is not None and chunk.upper is not None:
        conditions.append(sql.SQL("t.{} < %s").format(sql.Identifier(chunk.key)))
        params.append(chunk.upper)
    if conditions:
        query += sql.SQL(" WHERE ") + sql.SQL(" AND ").join(conditions)
    return query, params


def chunk_checksum(conn: Any, chunk: Chunk, checksums: bool, hashtextextended: bool) -> tuple[int, str]:
    """(rows, checksum) of the chunk's rows on one side, in one statement (one snapshot)."""
    query, params = _chunk_query(chunk, checksums, hashtextextended)
    with conn.cursor() as cur:
        cur.execute(query, params)
        count, checksum = cur.fetchone()
        return int(count), str(checksum)


def compare_chunk(source: Any, target: Any, chunk: Chunk, checksums: bool = True) -> tuple[int, int, bool]:
    """(source rows, target rows, equal) for one chunk; both sessions' text rendering pinned first."""
    for conn in (source, target):
        pin_text_rendering(conn)
    modern = min(source.server_version, target.server_version) >= HASHTEXTEXTENDED_SINCE
    source_rows, source_sum = chunk_checksum(source, chunk, checksums, modern)
    target_rows, target_sum = chunk_checksum(target, chunk, checksums, modern)
    return source_rows, target_rows, (source_rows, source_sum) == (target_rows, target_sum)


def plan_next(
    spec: MigrationSpec, source_credentials: Credentials, next_table: int, next_chunk: int, max_chunks: int
) -> tuple[list[Chunk], int, int, int]:
    """The next round on the source: (chunks, cursor table, cursor chunk, tables fully planned before)."""
    with connect(spec.source, source_credentials, "source", application_name="pg2rds-verify") as source:
        tables = select_tables(source, spec.tables)
        chunks, table, chunk = plan_round(
            source, tables, next_table, next_chunk, spec.verification_chunk_rows, max_chunks
        )
    return chunks, table, chunk, min(next_table, len(tables))


def check_chunk(
    spec: MigrationSpec, source_credentials: Credentials, target_credentials: Credentials, chunk: Chunk
) -> ChunkCheck:
    with (
        connect(spec.source, source_credentials, "source", application_name="pg2rds-verify") as source,
        connect(spec.target, target_credentials, "target", application_name="pg2rds-verify") as target,
    ):
        source_rows, target_rows, matches = compare_chunk(
            source, target, chunk, checksums=spec.verification == "checksums"
        )
    return ChunkCheck(
        chunk=chunk.describe(), source_rows=source_rows, target_rows=target_rows, matches=matches
    )
