"""Verification throughput: the verify-chunk code path (``pg2rds.postgres.chunks``) on real clusters.

Source and target each get ``pgbench -i -s SCALE`` (the same deterministic rows on both sides, so every
chunk matches, as after a good migration). Chunks are planned by ``plan_next`` (the plan-verification
phase's code) and each is checked by ``check_chunk`` (the verify-chunk phase's code: connect to both sides,
pin the text rendering, count and checksum the range on the source and the target: block ranges where both
servers are PostgreSQL 14 or later, key ranges before), as one Lambda
invocation would, minus reading the secrets.

- per chunk, one at a time, with the spec's default ``verification_chunk_rows``: rows/s and MB/s (MB =
  the chunk's share of the source table's heap, ``pg_relation_size``), and the largest chunk's duration;
- all chunks of a smaller chunk size (so there are more chunks than workers) with 1, 2 and 4 chunks in
  parallel (``verification_concurrency``; the Map state runs that many invocations at once);
- a copy of pgbench_accounts without a key (``pgbench_accounts_keyless``, stored in the opposite order on the
  target), checked in block ranges (TID range scans, PostgreSQL 14+) at the default chunk size: per range
  rows/s and MB/s, the blocks each range read, and whether the table's totals are equal;
- pgbench_accounts' default chunks, and those of ``ledger`` (1 M rows of bigint, numeric, text,
  timestamptz, int, boolean), checksummed by the rows' text (``hashtextextended(t::text)``), by the
  previous one-row ``hash_record_extended`` and as verify-chunk hashes them (column by column, stored
  values where that is as strict, :mod:`pg2rds.postgres.row_hash`), in turn, on both servers at once: the
  three row hashes side by side in one run;
- from the per-chunk throughput: how large one chunk may be before its invocation takes 10 minutes, and
  the row width at which a default chunk would.

Figures are reported, not asserted.
"""

import statistics
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from _common import pgbench_init, table, verdict
from psycopg2 import sql

from pg2rds.postgres.chunks import check_chunk, chunk_checksum, plan_next
from pg2rds.postgres.row_hash import TEXT_HASH, VALUE, columns, hashing, row_digest
from pg2rds.postgres.verify import pin_comparing_session
from pg2rds.secrets import Credentials
from pg2rds.spec import MigrationSpec
from pg2rds.state import Chunk, TableSums
from pg2rds_emulator.pgcluster import SUPERUSER, Cluster, start_cluster

SCALE = 30
#: pgbench_accounts copied without its key.
KEYLESS = "pgbench_accounts_keyless"
DATABASE = "bench_verify"
PARALLEL_CHUNK_ROWS = 250_000
CONCURRENCY = (1, 2, 4)
#: The two row hashes, timed alternately on the same chunks this many times each.
HASH_REPEATS = 3
#: A table of the column types applications hold (an amount, a timestamp), the same rows on both sides.
LEDGER = "ledger"
LEDGER_ROWS = 1_000_000
LEDGER_SQL = (
    f"CREATE TABLE {LEDGER} (id bigint PRIMARY KEY, amount numeric(12, 2), note text, at timestamptz, "
    "qty int, paid boolean); "
    f"INSERT INTO {LEDGER} SELECT g, g * 1.25, 'note ' || g, timestamptz '2026-01-01' + g * interval '1 s', "
    f"mod(g, 100), mod(g, 2) = 0 FROM generate_series(1, {LEDGER_ROWS}) g"
)
INVOCATION_LIMIT_SECONDS = 600
#: The issue's aim for one invocation: well under a minute.
CHUNK_TARGET_SECONDS = 30
SECRET = "arn:aws:secretsmanager:us-east-1:123456789012:secret:pg2rds/bench-{}"


def spec(chunk_rows: int | None) -> MigrationSpec:
    fields: dict[str, Any] = {
        "migration_id": "bench-verify",
        "source": {"secret_arn": SECRET.format("source"), "ssl_mode": "none"},
        "target": {"secret_arn": SECRET.format("target"), "ssl_mode": "none"},
    }
    if chunk_rows:
        fields["verification_chunk_rows"] = chunk_rows
    return MigrationSpec.model_validate(fields)


def credentials(cluster: Cluster) -> Credentials:
    return Credentials("127.0.0.1", cluster.port, DATABASE, SUPERUSER, cluster.password)


def plan_all(migration: MigrationSpec, source: Credentials, target: Credentials) -> list[Chunk]:
    chunks: list[Chunk] = []
    table_cursor, lower = 0, None
    while True:
        planned = plan_next(migration, source, target, table_cursor, lower, 100)
        if planned.finished and not planned.chunks:
            return chunks
        chunks += planned.chunks
        table_cursor, lower = planned.next_table, planned.next_lower


def heap_bytes(cluster: Cluster, prefix: str = "pgbench_") -> dict[str, tuple[int, int]]:
    """(heap bytes, rows) of each table on ``cluster`` whose name starts with ``prefix``."""
    rows = cluster.execute(
        DATABASE,
        "SELECT c.relname, pg_relation_size(c.oid), c.reltuples::bigint FROM pg_class c "
        "WHERE starts_with(c.relname, %s) AND c.relkind = 'r'",
        (prefix,),
    )
    return {name: (size, count) for name, size, count in rows}


def timed_check(migration: MigrationSpec, source: Credentials, target: Credentials, chunk: Chunk) -> tuple:
    started = time.perf_counter()
    result = check_chunk(migration, source, target, chunk)
    return chunk, result, time.perf_counter() - started


def run_chunks(migration: MigrationSpec, source: Credentials, target: Credentials, chunks: list[Chunk],
               workers: int) -> tuple[float, list[tuple]]:  # fmt: skip
    started = time.perf_counter()
    with ThreadPoolExecutor(max_workers=workers) as pool:
        results = list(pool.map(lambda c: timed_check(migration, source, target, c), chunks))
    return time.perf_counter() - started, results


def main() -> int:
    source_cluster = start_cluster("bench-verify-source", {})
    target_cluster = start_cluster("bench-verify-target", {})
    try:
        for cluster in (source_cluster, target_cluster):
            cluster.create_database(DATABASE)
        with ThreadPoolExecutor(max_workers=2) as pool:
            pair = (source_cluster, target_cluster)
            inits = list(pool.map(lambda c: pgbench_init(c, DATABASE, SCALE), pair))
        for cluster in (source_cluster, target_cluster):
            cluster.execute(DATABASE, "VACUUM ANALYZE")
        sizes = heap_bytes(source_cluster)
        source, target = credentials(source_cluster), credentials(target_cluster)
        default = spec(None)
        chunks = plan_all(default, source, target)
        run_chunks(default, source, target, chunks[:1], 1)  # warm both caches for the first chunk's table
        serial_wall, serial = run_chunks(default, source, target, chunks, 1)
        small = spec(PARALLEL_CHUNK_ROWS)
        small_chunks = plan_all(small, source, target)
        parallel = {n: run_chunks(small, source, target, small_chunks, n) for n in CONCURRENCY}
        for cluster in (source_cluster, target_cluster):
            cluster.execute(DATABASE, LEDGER_SQL)
            cluster.execute(DATABASE, f"VACUUM ANALYZE {LEDGER}")
        ledger_size = heap_bytes(source_cluster, LEDGER)[LEDGER]
        ledger = [c for c in plan_all(default, source, target) if c.table_name == LEDGER]
        hashes = {
            name: hash_side_by_side(
                source_cluster, target_cluster, [c for c in table_chunks if c.table_name == name]
            )
            for name, table_chunks in (("pgbench_accounts", chunks), (LEDGER, ledger))
        }
        for cluster, order in ((source_cluster, "aid"), (target_cluster, "aid DESC")):
            copy = f"CREATE TABLE {KEYLESS} AS SELECT * FROM pgbench_accounts ORDER BY {order}"
            cluster.execute(DATABASE, copy)
            cluster.execute(DATABASE, f"VACUUM ANALYZE {KEYLESS}")
        keyless_size = heap_bytes(source_cluster)[KEYLESS]
        ranges = [c for c in plan_all(default, source, target) if c.table_name == KEYLESS]
        _, blocks = run_chunks(default, source, target, ranges, 1)
    finally:
        source_cluster.destroy()
        target_cluster.destroy()

    total_rows = sum(count for _, count in sizes.values())
    total_mb = sum(size for size, _ in sizes.values()) / 1e6
    print(
        f"pgbench -i -s {SCALE} on both sides: {max(inits):.1f} s; source heap {total_mb:.0f} MB, "
        f"{total_rows:,} rows; {len(chunks)} chunks at the default verification_chunk_rows "
        f"({default.verification_chunk_rows:,})"
    )

    def chunk_mb(chunk: Chunk, rows: int) -> float:
        size, count = sizes[chunk.table_name]
        return size / 1e6 * rows / count if count else size / 1e6

    rows_out, per_chunk = [], []
    for chunk, result, seconds in serial:
        mb = chunk_mb(chunk, result.source_rows)
        if result.source_rows >= 100_000:
            per_chunk.append((result.source_rows / seconds, mb / seconds))
        rows_out.append([result.chunk, f"{result.source_rows:,}", f"{mb:.1f}", f"{seconds:.2f} s",
                         f"{result.source_rows / seconds:,.0f}", f"{mb / seconds:.1f}",
                         "equal" if result.matches else "DIFFERENT"])  # fmt: skip
    print()
    headers = ["chunk", "rows", "MB (source heap)", "duration", "rows/s", "MB/s", "result"]
    print(table(headers, rows_out, title="One chunk at a time (default chunk size), one verify-chunk each"))
    largest = max(serial, key=lambda item: item[2])
    rows_per_s = statistics.median(r for r, _ in per_chunk)
    mb_per_s = statistics.median(m for _, m in per_chunk)
    print(
        f"largest chunk: {largest[1].chunk}, {largest[2]:.2f} s; all chunks one after another: "
        f"{serial_wall:.2f} s; median per-chunk throughput (chunks ≥ 100,000 rows): {rows_per_s:,.0f} "
        f"rows/s, {mb_per_s:.1f} MB/s of source heap (check_chunk reads the source's range, then the "
        f"target's: {2 * mb_per_s:.1f} MB/s read in all)"
    )

    print()
    print(keyless_report(blocks, keyless_size))

    base = parallel[CONCURRENCY[0]][0]
    rows_out = []
    for workers, (wall, results) in parallel.items():
        rows = sum(r.source_rows for _, r, _ in results)
        mb = sum(chunk_mb(c, r.source_rows) for c, r, _ in results)
        longest = max(s for _, _, s in results)
        rows_out.append([workers, len(results), f"{wall:.2f} s", f"{rows / wall:,.0f}", f"{mb / wall:.1f}",
                         f"{base / wall:.2f}", f"{longest:.2f} s",
                         "all equal" if all(r.matches for _, r, _ in results) else "DIFFERENT"])  # fmt: skip
    print()
    print(table(["chunks at once", "chunks", "wall", "rows/s", "MB/s", "speed-up", "longest chunk", "result"],
                rows_out, title=f"All chunks of {PARALLEL_CHUNK_ROWS:,} rows, in parallel"))  # fmt: skip

    for name, size in (("pgbench_accounts", sizes["pgbench_accounts"]), (LEDGER, ledger_size)):
        print()
        print(hash_report(name, hashes[name], size))

    print(
        f"largest chunk's invocation: {largest[2]:.2f} s (target < {CHUNK_TARGET_SECONDS} s, well under a "
        f"minute: {verdict(largest[2] < CHUNK_TARGET_SECONDS)})"
    )
    limit_mb = INVOCATION_LIMIT_SECONDS * mb_per_s
    width = limit_mb * 1e6 / default.verification_chunk_rows
    print()
    print(
        f"one invocation reaches {INVOCATION_LIMIT_SECONDS // 60} min at {limit_mb / 1000:.1f} GB in its "
        f"chunk ({INVOCATION_LIMIT_SECONDS * rows_per_s / 1e6:,.0f} M rows of pgbench_accounts' width): "
        f"only a table without a key on a server before PostgreSQL 14 is one chunk; otherwise a chunk "
        f"holds about {default.verification_chunk_rows:,} rows (a key range, or that many rows' worth of "
        f"blocks), which reaches 10 min only at rows of {width / 1000:.1f} kB of heap each."
    )
    return 0


def _both_sides(source: Any, target: Any, chunk: Chunk, digest: Any) -> tuple[float, bool]:
    """One chunk checksummed on both servers at once, as compare_chunk does: (wall, equal)."""
    started = time.perf_counter()
    with ThreadPoolExecutor(max_workers=2) as pool:
        sides = list(pool.map(lambda conn: chunk_checksum(conn, chunk, digest), (source, target)))
    return time.perf_counter() - started, sides[0] == sides[1]


def one_row_digest(source: Any, target: Any, schema: str, table: str) -> sql.Composable:
    """The previous row hash (1682044), kept here to be measured beside the current one: the columns hashed
    by value and the text of a row of the others, in one row passed to ``hash_record_extended``."""
    source_columns = columns(source, schema, table)
    names = [c.name for c in source_columns]
    kinds = hashing(source_columns, columns(target, schema, table)) or [""] * len(names)
    values = [kind == VALUE for kind in kinds]
    parts = [sql.SQL("t.{}").format(sql.Identifier(n)) for n, v in zip(names, values, strict=True) if v]
    others = [sql.SQL("t.{}").format(sql.Identifier(n)) for n, v in zip(names, values, strict=True) if not v]
    if others:
        parts.append(sql.SQL('ROW({})::text COLLATE "C"').format(sql.SQL(", ").join(others)))
    return sql.SQL("coalesce(sum(hashint8extended(hash_record_extended(ROW({}), 0), 0)), 0)::text").format(
        sql.SQL(", ").join(parts)
    )


def hash_side_by_side(source_cluster: Cluster, target_cluster: Cluster, chunks: list[Chunk]) -> dict:
    """One table's chunks checksummed by the rows' text, by the previous one-row hash
    (:func:`one_row_digest`) and as verify-chunk hashes them now (column by column, by value where that is
    as strict, :func:`row_digest`), in turn ``HASH_REPEATS`` times each:
    {name: [(wall of all chunks, all equal), ...]}."""
    source, target = source_cluster.connect(DATABASE), target_cluster.connect(DATABASE)
    try:
        for conn in (source, target):
            pin_comparing_session(conn)
        where = (chunks[0].schema_name, chunks[0].table_name)
        digests = {"text": TEXT_HASH, "one row": one_row_digest(source, target, *where),
                   "by column": row_digest(source, target, *where)}  # fmt: skip
        walls: dict[str, list[tuple[float, bool]]] = {name: [] for name in digests}
        for _ in range(HASH_REPEATS):
            for name, digest in digests.items():
                runs = [_both_sides(source, target, chunk, digest) for chunk in chunks]
                walls[name].append((sum(w for w, _ in runs), all(equal for _, equal in runs)))
        return walls
    finally:
        source.close()
        target.close()


def hash_report(name: str, walls: dict, size: tuple[int, int]) -> str:
    heap, rows = size
    medians = {hashed: statistics.median(w for w, _ in runs) for hashed, runs in walls.items()}
    out = [[hashed, ", ".join(f"{w:.2f} s" for w, _ in runs), f"{medians[hashed]:.2f} s",
            f"{rows / medians[hashed]:,.0f}", f"{heap / 1e6 / medians[hashed]:.1f}",
            "all equal" if all(equal for _, equal in runs) else "DIFFERENT"]
           for hashed, runs in walls.items()]  # fmt: skip
    title = f"{name} ({rows:,} rows) by text, by one row and by column, in turn, same chunks"
    headers = ["row hash", "runs (all chunks, both sides at once)", "median", "rows/s", "MB/s", "result"]
    ratios = ", ".join(
        f"{hashed} ÷ text: {medians[hashed] / medians['text']:.2f}" for hashed in ("one row", "by column")
    )
    return (
        table(headers, out, title=title)
        + f"\n{ratios}; by column ÷ one row: {medians['by column'] / medians['one row']:.2f}"
    )


def keyless_report(results: list[tuple], size: tuple[int, int]) -> str:
    """The keyless copy's block ranges: one row each, and the table's totals compared as plan-verification
    does (counts and checksums added up; a single range's sums differ, its blocks hold other rows)."""
    heap, rows = size
    out = []
    for chunk, result, seconds in results:
        blocks = (chunk.end_block or heap // 8192) - chunk.first_block
        mb = blocks * 8192 / 1e6
        rate = f"{result.source_rows / seconds:,.0f}"
        out.append([result.chunk, f"{result.source_rows:,} / {result.target_rows:,}", f"{mb:.1f}",
                    f"{seconds:.2f} s", rate, f"{mb / seconds:.1f}"])  # fmt: skip
    sums = TableSums(table=KEYLESS)
    for _, result, _ in results:
        sums = sums.plus(result)
    longest = max(seconds for *_, seconds in results)
    return (
        table(
            ["block range", "rows source / target", "MB (blocks)", "duration", "rows/s", "MB/s"],
            out,
            title=f"{KEYLESS}: {rows:,} rows, {heap / 1e6:.0f} MB, no key, in block ranges",
        )  # fmt: skip
        + f"\nlongest range {longest:.2f} s; table totals: {sums.source_rows:,} rows on the source, "
        f"{sums.target_rows:,} on the target, {'equal' if sums.matches else 'DIFFERENT'}"
    )


if __name__ == "__main__":
    sys.exit(main())
