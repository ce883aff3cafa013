"""Verification in bounded chunks: each table is cut into ranges of its blocks or of its key, each range
checked by one short Lambda invocation (rows compared on both sides, foreign keys checked on the target),
fanned out by the state machine's ``Map`` state.

Which key: the primary key, else a unique index over NOT NULL columns, of any types and any number of
columns (:mod:`pg2rds.postgres.keys`). A range is a row-value comparison ``(k1, k2) >= (...) AND (k1, k2)
< (...)`` with the same explicit boundary values on both servers, which the key's index serves; a text
column the two servers could order differently is compared ``COLLATE "C"`` on both, so the same rows fall
in the same range on both sides. The first range is open below and the last open above, so rows the target
holds outside the source's keys are counted too.

Where the boundaries come from, and why: a bounded block sample of the source (``TABLESAMPLE SYSTEM``),
sorted on the server, every ``step``-th sampled key a boundary. The alternatives fail a bound or a key:

- ``min``/``max`` and arithmetic work only for integers (the previous method);
- ``pg_stats.histogram_bounds`` of the leading column is free but needs a recent ANALYZE, has at most
  ``default_statistics_target`` (100) buckets, so cannot make more chunks than that, and says nothing
  inside one value of a leading column of a composite key (one tenant of ``(tenant, id)``);
- an index walk (``ORDER BY key OFFSET chunk_rows LIMIT 1`` per boundary) is exact but reads every key
  of the table to plan it: a 100-chunk round reads 100 × ``verification_chunk_rows`` index entries.

The sample reads about ``SAMPLES_PER_CHUNK`` rows and ``PAGES_PER_CHUNK`` pages per chunk, and at most
``MAX_SAMPLE_PAGES`` pages and ``MAX_SAMPLE_ROWS`` rows per table and round, whatever the table's size;
only the boundaries leave the server. Each boundary stands for ``step / fraction`` = about
``verification_chunk_rows`` rows. Tolerance: exact when the sample is the whole table (small tables, or
``verification_chunk_rows`` at most ``SAMPLES_PER_CHUNK``, see :func:`sampling`); otherwise an estimate
from about 100 sampled rows in 20 or more sampled pages, typically within ±30% (bench/verify_planning.py
measures it), wider when the caps bind (tables over ``MAX_SAMPLE_PAGES / PAGES_PER_CHUNK`` = 200 chunks).

A round plans at most ``max_chunks`` chunks (and ``MAX_ROUND_CHUNK_BYTES`` of them as JSON) from a
cursor: the table's index and the key where its next chunk starts, so a table's ranges join up exactly
across rounds even if the source changes in between. Neither the state nor one invocation grows with the
number of tables or rows.

Where both servers scan block ranges (PostgreSQL 14 and later), every table is read in block ranges
whatever its key, its foreign keys checked in the same ranges (see :func:`table_chunks`:
a key range read through the index visits most of the blocks of a table whose key does not follow its
rows' order, for every range), and a keyed table whose totals differ is read again by key range, to
name where. Tables with no primary or unique not-null key, and tables whose text key the two servers
collate differently, have no key order both servers share that an index serves: they are cut into
ranges of their blocks (``ctid >= '(first,0)' AND ctid < '(end,0)'``, a TID range scan since PostgreSQL
14, reading only those blocks), about ``verification_chunk_rows`` rows' worth of the source's blocks
each, the same block numbers read on both sides up to the larger side's size, the last range open
above. The same blocks hold different rows on the two servers, so a range's counts and checksums mean
nothing alone: they are added up per table (``TableSums`` in the state) and the table's totals compared
at its last range, which works because the checksum is a sum over rows. A difference then names the
table, not a range. A server older than 14 would scan the whole table for each block range: there such a
table is one chunk, as large as the table (the pre-flight's ``keyless_table_size`` refuses one over 4 GiB
on such a source), and a differently collated key is compared ``COLLATE "C"`` per key range, each range
scanning the table.

Chunks are compared like whole tables (:mod:`pg2rds.postgres.verify`): row count and an order-independent
checksum of the rows (their text, with both sessions' text rendering pinned, or their stored values where
that is as strict: :mod:`pg2rds.postgres.row_hash`).
"""

from collections.abc import Collection
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack
from typing import Any, NamedTuple

from psycopg2 import sql

from pg2rds.postgres.connection import connect
from pg2rds.postgres.foreign_keys import held_by_validation, range_violations, referenced_tables
from pg2rds.postgres.keys import KeyColumn, byte_order_needed, table_key
from pg2rds.postgres.relations import own_rows
from pg2rds.postgres.row_hash import row_digest
from pg2rds.postgres.selection import TableName, select_tables
from pg2rds.postgres.verify import pin_comparing_session
from pg2rds.secrets import Credentials
from pg2rds.spec import MigrationSpec
from pg2rds.state import MAX_VIOLATIONS_PER_CHUNK, Chunk, ChunkCheck, qualified

#: Sampled rows, and sampled pages, wanted per chunk: a chunk's size is estimated from this many.
SAMPLES_PER_CHUNK = 100
PAGES_PER_CHUNK = 20
#: Per table and round, the sample reads at most this many pages (32 MiB of 8 KiB pages) and rows.
MAX_SAMPLE_PAGES = 4096
MAX_SAMPLE_ROWS = 200_000
#: Rows per page assumed when the source has no statistics for a table (never analyzed or vacuumed).
ASSUMED_ROWS_PER_PAGE = 200
#: Bytes of chunks (as JSON) one round may carry: with the Map's results (each under 1 KB) the state stays
#: well under Step Functions' 256 KiB whatever the keys' width.
MAX_ROUND_CHUNK_BYTES = 48_000
#: A chunk's source statement may run this long: below verify-chunk's Lambda timeout (300 s, template.yaml).
CHUNK_STATEMENT_TIMEOUT_MS = 270_000
#: TID range scans (a ``ctid`` range read block by block) exist since PostgreSQL 14.
TID_RANGE_SCAN_SINCE = 140000

_SIZE = """
SELECT greatest(c.reltuples, 0)::float8, c.relpages,
       pg_relation_size(c.oid) / current_setting('block_size')::int
FROM pg_class c WHERE c.oid = to_regclass(format('%%I.%%I', %s, %s))
"""


def _rows_per_page(rows: float, relpages: int) -> float:
    """Rows a page holds by the table's statistics (``ASSUMED_ROWS_PER_PAGE`` when it has none)."""
    return rows / relpages if rows > 0 and relpages > 0 else ASSUMED_ROWS_PER_PAGE


def sampling(rows: float, relpages: int, pages: int, chunk_rows: int) -> tuple[float, int]:
    """(fraction of the table's pages to sample, sampled rows per chunk) for a table of ``pages`` pages
    now, whose statistics say ``rows`` rows in ``relpages`` pages.

    The fraction gives each chunk about ``SAMPLES_PER_CHUNK`` sampled rows and ``PAGES_PER_CHUNK`` sampled
    pages (a block sample's rows come in runs of a page: on a table stored in key order one page is one
    point of the distribution, not a hundred), capped at ``MAX_SAMPLE_PAGES`` and ``MAX_SAMPLE_ROWS``; the
    step is what one chunk's rows come to in the sample (at least 1).
    """
    per_page = _rows_per_page(rows, relpages)
    fraction = min(1.0, max(SAMPLES_PER_CHUNK, PAGES_PER_CHUNK * per_page) / chunk_rows)
    if pages > 0:
        fraction = min(fraction, MAX_SAMPLE_PAGES / pages, MAX_SAMPLE_ROWS / (pages * per_page))
    return fraction, max(1, round(chunk_rows * fraction))


def _column(alias: str, name: str, byte_order: bool) -> sql.Composable:
    column = sql.SQL("{}.{}").format(sql.Identifier(alias), sql.Identifier(name))
    return column + sql.SQL(' COLLATE "C"') if byte_order else column


def range_condition(chunk: Chunk, alias: str = "t") -> tuple[sql.Composable, list[str]]:
    """``(k1, k2) >= (%s, %s) AND (k1, k2) < (%s, %s)`` for the chunk's rows, and its parameters.

    The values go as untyped literals, so each takes its key column's type on the server (text, uuid,
    numeric, timestamptz, ...), and a column marked ``collate_c`` is compared in byte order.
    """
    if chunk.in_blocks:
        bounds = [(chunk.first_block, ">="), (chunk.end_block, "<")]
        return (
            sql.SQL(" AND ").join(
                sql.SQL("{}.ctid {} %s::tid").format(sql.Identifier(alias), sql.SQL(operator))
                for block, operator in bounds
                if block is not None
            ),
            [f"({block},0)" for block, _ in bounds if block is not None],
        )
    if not chunk.key:
        return sql.SQL("true"), []
    columns = sql.SQL(", ").join(
        _column(alias, name, byte_order) for name, byte_order in zip(chunk.key, chunk.collate_c, strict=True)
    )
    parts, params = [], []
    for values, operator in ((chunk.lower, ">="), (chunk.upper, "<")):
        if values is not None:
            placeholders = sql.SQL(", ").join([sql.Placeholder()] * len(values))
            parts.append(sql.SQL("({}) {} ({})").format(columns, sql.SQL(operator), placeholders))
            params.extend(values)
    return (sql.SQL(" AND ").join(parts) if parts else sql.SQL("true")), params


def _boundaries(
    conn: Any,
    table: TableName,
    key: list[str],
    byte_order: list[bool],
    lower: list[str] | None,
    fraction: float,
    step: int,
    limit: int,
) -> list[list[str]]:
    """Every ``step``-th key of a ``fraction`` sample of the table's rows at or after ``lower`` (the
    first after ``step`` sampled rows), in the chunks' order, as text (at most ``limit``): one sort of the
    sample on the server, and only the boundaries leave it."""
    sample: sql.Composable = sql.SQL("")
    params: list[Any] = []
    if fraction < 1:
        sample = sql.SQL(" TABLESAMPLE SYSTEM (%s) REPEATABLE (0)")
        params.append(fraction * 100)
    where: sql.Composable = sql.SQL("")
    if lower is not None:
        cursor = Chunk(
            schema_name=table.schema, table_name=table.table, key=key, collate_c=byte_order, lower=lower
        )
        condition, values = range_condition(cursor)
        where = sql.SQL(" WHERE ") + condition
        params.extend(values)
    query = sql.SQL(
        "SELECT {texts} FROM (SELECT s.*, row_number() OVER (ORDER BY {order}) AS rn FROM ("
        "SELECT {columns} FROM {table} AS t{sample}{where} LIMIT %s) AS s) AS r "
        "WHERE r.rn > 1 AND (r.rn - 1) %% %s = 0 ORDER BY r.rn LIMIT %s"
    ).format(
        # the sample's columns are named c1, c2, ... (a key column may be called rn)
        texts=sql.SQL(", ").join(sql.SQL("r.c{}::text").format(sql.SQL(str(i))) for i in range(len(key))),
        order=sql.SQL(", ").join(_column("s", f"c{i}", b) for i, b in enumerate(byte_order)),
        columns=sql.SQL(", ").join(
            sql.SQL("t.{} AS c{}").format(sql.Identifier(name), sql.SQL(str(i))) for i, name in enumerate(key)
        ),
        table=own_rows(conn, table.schema, table.table),
        sample=sample,
        where=where,
    )
    with conn.cursor() as cur:
        cur.execute(query, [*params, MAX_SAMPLE_ROWS, step, limit])
        return [list(row) for row in cur.fetchall()]


def _size(conn: Any, table: TableName) -> tuple[float, int, int]:
    """(rows and pages by the statistics, pages now) of the table; nothing when it does not exist (a
    table missing on the target is found when its chunk is read)."""
    with conn.cursor() as cur:
        cur.execute(_SIZE, (table.schema, table.table))
        rows, relpages, pages = cur.fetchone() or (0.0, 0, 0)
    return rows, relpages, pages


def _sample_plan(conn: Any, table: TableName, chunk_rows: int) -> tuple[float, int]:
    return sampling(*_size(conn, table), chunk_rows)


def block_ranges(
    rows_per_page: float, pages: int, chunk_rows: int, start: int, limit: int, waves_of: int = 1
) -> list[int]:
    """The first blocks of up to ``limit`` ranges from block ``start`` of a table with ``pages`` blocks
    (the larger side's), each about ``chunk_rows`` rows' worth of blocks at ``rows_per_page``; at least
    one range (the last is open above, so rows added later are read too).

    A table of at least ``waves_of`` ranges (the Map's concurrency) is cut into a whole number of waves
    of them, each range smaller: five ranges at four at a time ran as a wave of four and then the fifth
    alone, as long again; eight smaller ones run as two full waves. The step depends on the table's size
    only, not on ``start``, so the ranges of a table planned over several rounds join up."""
    step = max(1, int(chunk_rows / rows_per_page))
    ranges = -(-pages // step)
    if waves_of > 1 and ranges >= waves_of:
        step = max(1, -(-pages // (-(-ranges // waves_of) * waves_of)))
    count = max(1, -(-(pages - start) // step))
    return [start + i * step for i in range(min(count, limit))]


def _block_chunks(
    source: Any,
    target: Any,
    whole: Chunk,
    lower: list[str] | None,
    chunk_rows: int,
    limit: int,
    waves_of: int = 1,
) -> list[Chunk]:
    """The table's block ranges from the cursor (``lower``: the first block, as text) on, at most
    ``limit + 1``, in whole waves of ``waves_of`` (:func:`block_ranges`); the last is open above only when
    it is the table's last. The source's statistics say how many rows a block holds."""
    table = TableName(whole.schema_name, whole.table_name)
    rows, relpages, source_pages = _size(source, table)
    per_page = _rows_per_page(rows, relpages)
    pages = max(source_pages, _size(target, table)[2])
    firsts = block_ranges(per_page, pages, chunk_rows, int(lower[0]) if lower else 0, limit + 2, waves_of)
    ends: list[int | None] = [*firsts[1:], None]
    chunks = [
        whole.model_copy(update={"first_block": first, "end_block": end})
        for first, end in zip(firsts, ends, strict=True)
    ]
    return chunks[: limit + 1]


def _tid_ranges(source: Any, target: Any) -> bool:
    return min(source.server_version, target.server_version) >= TID_RANGE_SCAN_SINCE


def table_chunks(
    source: Any,
    target: Any,
    table: TableName,
    lower: list[str] | None,
    chunk_rows: int,
    compare: bool,
    limit: int,
    unchanged: Collection[tuple[str, str]] = (),
    by_key: bool = False,
    waves_of: int = 1,
) -> tuple[list[Chunk], bool]:
    """The table's chunks from ``lower`` on (at most ``limit + 1``; none when there is nothing to check:
    no comparison asked for and no foreign key to check on the target), and whether the table has foreign
    keys left unchecked because it and every table they reference are in ``unchanged`` (checked before
    the cutover decision, and not changed since).

    Where both servers scan block ranges, every table is read in block ranges, a keyed one too (``keyed``
    chunks), unless ``by_key``: a key range is read through the key's index, which for a key that does
    not follow the rows' physical order (a random uuid, a table updated for years) visits most of the
    table's blocks for each range, so a table of N ranges was read about N times over; in block ranges it
    is read once, and about 30 % faster even where the key follows the blocks. Its foreign keys are
    checked in the same block ranges, a violation naming a few of the rows by key
    (:func:`~pg2rds.postgres.foreign_keys.range_violations`). A difference in the rows is located by key
    range in a second reading of that table only (``by_key``), which compares and checks no foreign key
    again."""
    # a second reading (by_key) only locates differences: its foreign keys were checked in the first
    parents = [] if by_key else referenced_tables(target, table.schema, table.table)
    settled = bool(parents) and all(t in unchanged for t in [(table.schema, table.table), *parents])
    foreign_keys = bool(parents) and not settled
    if not compare and not foreign_keys:
        return [], settled
    whole = Chunk(
        schema_name=table.schema, table_name=table.table, compare=compare, foreign_keys=foreign_keys
    )
    key: list[KeyColumn] = table_key(source, table)
    byte_order = byte_order_needed(key, table_key(target, table)) if key else []
    keyed = bool(key) and not any(byte_order)
    if _tid_ranges(source, target) and (not keyed or not by_key):
        whole = whole.model_copy(update={"keyed": keyed})
        return _block_chunks(source, target, whole, lower, chunk_rows, limit, waves_of), settled
    if not key:
        return [whole], settled
    names = [column.name for column in key]
    fraction, step = _sample_plan(source, table, chunk_rows)
    bounds = _boundaries(source, table, names, byte_order, lower, fraction, step, limit)
    ranged = whole.model_copy(
        update={"key": names, "bare": [column.bare for column in key], "collate_c": byte_order}
    )
    chunks = [
        ranged.model_copy(update={"lower": low, "upper": high})
        for low, high in zip([lower, *bounds], [*bounds, None], strict=True)
    ]
    return chunks, settled


def _chunk_bytes(chunk: Chunk) -> int:
    return len(chunk.model_dump_json().encode())


class Round(NamedTuple):
    """One round's plan: its chunks, the cursor after them, and how many tables' foreign keys were left
    unchecked because they were checked before the decision and have not changed since, or because DMS's
    validation and the source's constraints hold them (``held``)."""

    chunks: list[Chunk]
    next_table: int
    next_lower: list[str] | None
    unchanged: int = 0
    held: int = 0


def plan_round(
    source: Any,
    target: Any,
    tables: list[TableName],
    next_table: int,
    next_lower: list[str] | None,
    chunk_rows: int,
    compare: bool,
    max_chunks: int,
    validated: Collection[tuple[str, str]] = (),
    unchanged: Collection[tuple[str, str]] = (),
    held: Collection[tuple[str, str]] = (),
    by_key: bool = False,
    waves_of: int = 1,
) -> Round:
    """Up to ``max_chunks`` chunks from the cursor on, and the cursor after them. At most ``max_chunks``
    tables are looked at, too: with ``verification: none`` a table without foreign keys yields no chunk,
    and a round must not walk the whole catalog (a round may then have no chunks before the end). Tables
    in ``validated`` ((schema, table), those DMS validated) are not compared again, only their foreign keys
    checked; foreign keys whose tables are all in ``unchanged`` are not checked (see :func:`table_chunks`),
    nor those of a table in ``held`` (:func:`~pg2rds.postgres.foreign_keys.held_by_validation`) whose rows
    are not compared, unless its check began in an earlier round."""
    planned: list[Chunk] = []
    total = looked_at = skipped = by_validation = 0
    while next_table < len(tables) and len(planned) < max_chunks and looked_at < max_chunks:
        looked_at += 1
        table = tables[next_table]
        compared = compare and (table.schema, table.table) not in validated
        if next_lower is None and not compared and (table.schema, table.table) in held:
            by_validation += 1
            next_table += 1
            continue
        chunks, settled = table_chunks(
            source,
            target,
            table,
            next_lower,
            chunk_rows,
            compared,
            max_chunks - len(planned),
            unchanged,
            by_key,
            waves_of,
        )
        skipped += settled and next_lower is None  # counted once, at the table's first chunk
        taken = 0
        for chunk in chunks:
            size = _chunk_bytes(chunk)
            if len(planned) >= max_chunks or (planned and total + size > MAX_ROUND_CHUNK_BYTES):
                break
            planned.append(chunk)
            total += size
            taken += 1
        if taken < len(chunks):
            next_lower = chunks[taken].resume_at
            break
        next_table, next_lower = next_table + 1, None
    return Round(planned, next_table, next_lower, skipped, by_validation)


def checksum_statement(
    chunk: Chunk, digest: sql.Composable, relation: sql.Composable
) -> tuple[sql.Composed, list[str]]:
    """The statement (and its parameters) that counts and checksums the chunk's rows on one side;
    ``digest`` is :func:`~pg2rds.postgres.row_hash.row_digest`'s expression, ``relation`` the table as
    that side reads its own rows (:func:`~pg2rds.postgres.relations.own_rows`)."""
    condition, params = range_condition(chunk)
    query = sql.SQL("SELECT count(*), {} FROM {} AS t WHERE {}").format(digest, relation, condition)
    return query, params


def chunk_checksum(conn: Any, chunk: Chunk, digest: sql.Composable) -> tuple[int, str]:
    """(rows, checksum) of the chunk's rows on one side, in one statement (one snapshot)."""
    query, params = checksum_statement(chunk, digest, own_rows(conn, chunk.schema_name, chunk.table_name))
    with conn.cursor() as cur:
        cur.execute(query, params)
        count, checksum = cur.fetchone()
        return int(count), str(checksum)


def _pinned_checksum(conn: Any, chunk: Chunk, digest: sql.Composable) -> tuple[int, str]:
    pin_comparing_session(conn)
    return chunk_checksum(conn, chunk, digest)


class Sides(NamedTuple):
    """One chunk read on both sides: rows and checksum (decimal text, "" when only counted) of each."""

    source_rows: int
    target_rows: int
    source_sum: str
    target_sum: str

    @property
    def matches(self) -> bool:
        return (self.source_rows, self.source_sum) == (self.target_rows, self.target_sum)


def compare_chunk(source: Any, target: Any, chunk: Chunk, checksums: bool = True) -> Sides:
    """One chunk read on both sides; both sessions' text rendering pinned first. The two servers read the
    range at the same time (each in its own thread): an invocation takes as long as the slower side, not
    the sum of both."""
    digest = row_digest(source, target, chunk.schema_name, chunk.table_name, checksums)
    with ThreadPoolExecutor(max_workers=2) as pool:
        on_source = pool.submit(_pinned_checksum, source, chunk, digest)
        on_target = pool.submit(_pinned_checksum, target, chunk, digest)
        (source_rows, source_sum), (target_rows, target_sum) = on_source.result(), on_target.result()
    return Sides(source_rows, target_rows, source_sum, target_sum)


class Planned(NamedTuple):
    """What :func:`plan_next` planned: the round, the cursor after it, the tables fully planned before it,
    and whether every table is planned now."""

    chunks: list[Chunk]
    next_table: int
    next_lower: list[str] | None
    tables_checked: int
    finished: bool
    #: Tables whose foreign keys this round left unchecked (unchanged since the check before the decision).
    unchanged: int = 0
    #: Tables whose foreign keys this round left unchecked: DMS's validation and the source's constraints
    #: hold them (``held_by_validation``).
    held: int = 0


def plan_next(
    spec: MigrationSpec,
    source_credentials: Credentials,
    target_credentials: Credentials,
    next_table: int,
    next_lower: list[str] | None,
    max_chunks: int,
    validated: Collection[tuple[str, str]] = (),
    unchanged: Collection[tuple[str, str]] = (),
    foreign_keys_only: bool = False,
    only: Collection[str] | None = None,
) -> Planned:
    """The next round. Boundaries come from the source; the target says which foreign keys to check and
    how it orders text keys. Tables in ``validated`` (by DMS) get their foreign keys checked, not their
    rows compared; ``unchanged``: see :func:`plan_round`; ``foreign_keys_only``: no rows compared at all
    (the check before the cutover decision); ``only``: the tables (qualified names) to read again by key
    range, to locate differences their block ranges showed (``table_chunks``).

    Which of the round's tables DMS's validation and the source's constraints hold is read from both
    catalogs for the tables this round can look at only (at most ``max_chunks``, as :func:`plan_round`),
    in one query per side."""
    with (
        connect(spec.source, source_credentials, "source", application_name="pg2rds-verify") as source,
        connect(spec.target, target_credentials, "target", application_name="pg2rds-verify") as target,
    ):
        tables = select_tables(source, spec.tables)
        if only is not None:
            tables = [t for t in tables if qualified(t.schema, t.table) in only]
        for conn in (source, target):
            pin_comparing_session(conn)  # boundaries are key text: rendered alike for both sides
        begun = int(next_lower is not None)  # a table whose check began in an earlier round goes on
        ahead = tables[next_table + begun : next_table + max_chunks]
        held = held_by_validation(source, target, [(t.schema, t.table) for t in ahead], validated, unchanged)
        planned = plan_round(
            source,
            target,
            tables,
            next_table,
            next_lower,
            spec.verification_chunk_rows,
            spec.verification != "none" and not foreign_keys_only,
            max_chunks,
            validated,
            unchanged,
            held,
            by_key=only is not None,
            waves_of=spec.verification_concurrency,
        )
    return Planned(
        planned.chunks,
        planned.next_table,
        planned.next_lower,
        min(next_table, len(tables)),
        planned.next_table >= len(tables),
        planned.unchanged,
        planned.held,
    )


def check_chunk(
    spec: MigrationSpec, source_credentials: Credentials, target_credentials: Credentials, chunk: Chunk
) -> ChunkCheck:
    """The chunk's rows compared on both sides (when asked), and its target rows' foreign keys checked."""
    sides = Sides(0, 0, "", "")
    with ExitStack() as stack:
        target = stack.enter_context(
            connect(spec.target, target_credentials, "target", application_name="pg2rds-verify")
        )
        if chunk.compare:
            source = stack.enter_context(
                connect(
                    spec.source,
                    source_credentials,
                    "source",
                    application_name="pg2rds-verify",
                    statement_timeout_ms=CHUNK_STATEMENT_TIMEOUT_MS,
                )
            )
            sides = compare_chunk(source, target, chunk, checksums=spec.verification in ("checksums", "dms"))
        violations = []
        if chunk.foreign_keys:
            pin_comparing_session(target)  # the key values are text rendered so
            condition, params = range_condition(chunk, alias="c")
            violations = range_violations(target, chunk, condition, params)
    return ChunkCheck(
        chunk=chunk.describe(),
        table=qualified(chunk.schema_name, chunk.table_name),
        source_rows=sides.source_rows,
        target_rows=sides.target_rows,
        matches=sides.matches,
        violations=violations[:MAX_VIOLATIONS_PER_CHUNK],
        violation_count=len(violations),
        # a block range's sums are added to its table's; a key range is judged by itself
        source_sum=sides.source_sum if chunk.in_blocks else "",
        target_sum=sides.target_sum if chunk.in_blocks else "",
    )
