"""Planning verification chunks of a 1,000,000-row table keyed by text (md5 strings, stored in random key
order, analyzed), at several ``verification_chunk_rows``.

For each: the time and statements to plan every chunk of the table by key range (``plan_round`` with
``by_key``, as a table whose block ranges differ is read again, and as every keyed table is on servers
before PostgreSQL 14; until the table is done, rounds of 100 chunks, source and target being one server
here), how many chunks, and how many rows
each really holds (counted afterwards, not part of planning): the spread is the estimate's tolerance.
Next to it, the exact alternative the chunk planner rejects: an index walk, one ``ORDER BY key OFFSET
chunk_rows LIMIT 1`` per boundary, which reads every key of the table. Figures only; no target is asserted.
"""

import statistics
import time
from typing import Any

import psycopg2.extensions
from _common import table

from pg2rds.postgres.chunks import plan_round, range_condition
from pg2rds.postgres.selection import TableName
from pg2rds.postgres.verify import pin_comparing_session
from pg2rds_emulator.pgcluster import start_cluster

ROWS = 1_000_000
CHUNK_ROWS = [1_000_000, 100_000, 20_000]
TABLE = TableName("public", "words")


class Counting(psycopg2.extensions.cursor):
    """Counts every statement any cursor of the connection sends."""

    statements = 0

    def execute(self, query: Any, vars: Any = None) -> None:
        Counting.statements += 1
        super().execute(query, vars)


def plan_table(conn: Any, chunk_rows: int) -> tuple[list, int]:
    """Every chunk of the table, and the rounds it took."""
    chunks, rounds, next_table, lower = [], 0, 0, None
    while next_table == 0:
        planned = plan_round(conn, conn, [TABLE], 0, lower, chunk_rows, True, 100, by_key=True)
        chunks += planned.chunks
        next_table, lower = planned.next_table, planned.next_lower
        rounds += 1
    return chunks, rounds


def index_walk(conn: Any, chunk_rows: int) -> tuple[float, int]:
    """(seconds, boundaries) of the exact plan: one OFFSET probe of the index per boundary."""
    started, lower, bounds = time.perf_counter(), None, 0
    with conn.cursor() as cur:
        while True:
            if lower is None:
                cur.execute("SELECT k FROM public.words ORDER BY k OFFSET %s LIMIT 1", (chunk_rows,))
            else:
                cur.execute(
                    "SELECT k FROM public.words WHERE k >= %s ORDER BY k OFFSET %s LIMIT 1",
                    (lower, chunk_rows),
                )
            row = cur.fetchone()
            if row is None:
                return time.perf_counter() - started, bounds
            lower, bounds = row[0], bounds + 1


def chunk_sizes(conn: Any, chunks: list) -> list[int]:
    sizes = []
    with conn.cursor() as cur:
        for chunk in chunks:
            condition, params = range_condition(chunk)
            cur.execute(f"SELECT count(*) FROM public.words AS t WHERE {condition.as_string(conn)}", params)
            sizes.append(cur.fetchone()[0])
    return sizes


def main() -> None:
    cluster = start_cluster("bench-verify-planning")
    try:
        cluster.create_database("bench")
        cluster.execute(
            "bench",
            "CREATE TABLE words (k text PRIMARY KEY, payload text);"
            f"INSERT INTO words SELECT md5(g::text), repeat('x', 60) FROM generate_series(1, {ROWS}) g",
        )
        cluster.execute("bench", "VACUUM ANALYZE words")
        conn = cluster.connect("bench")
        conn.cursor_factory = Counting
        pin_comparing_session(conn)
        (pages,) = cluster.execute("bench", "SELECT relpages FROM pg_class WHERE relname = 'words'")[0]
        rows = []
        for chunk_rows in CHUNK_ROWS:
            plan_table(conn, chunk_rows)  # warm-up
            Counting.statements = 0
            started = time.perf_counter()
            chunks, rounds = plan_table(conn, chunk_rows)
            seconds = time.perf_counter() - started
            statements = Counting.statements
            sizes = chunk_sizes(conn, chunks)
            walk_seconds, _ = index_walk(conn, chunk_rows)
            assert sum(sizes) == ROWS
            rows.append(
                [
                    f"{chunk_rows:,}",
                    len(chunks),
                    rounds,
                    f"{seconds * 1000:.0f} ms",
                    statements,
                    f"{min(sizes):,} / {statistics.median(sizes):,.0f} / {max(sizes):,}",
                    f"{max(abs(s - chunk_rows) for s in sizes[:-1]) / chunk_rows:.0%}"
                    if len(sizes) > 1
                    else "-",
                    f"{walk_seconds * 1000:.0f} ms",
                ]
            )
        conn.close()
        print(f"{ROWS:,} rows, text key (md5), {pages:,} pages; source and target one server\n")
        print(
            table(
                [
                    "chunk_rows",
                    "chunks",
                    "rounds",
                    "planning",
                    "statements",
                    "rows per chunk min / median / max",
                    "worst error (all but last)",
                    "index walk (exact)",
                ],
                rows,
                title="Planning a text-keyed table",
            )
        )
    finally:
        cluster.destroy()


if __name__ == "__main__":
    main()
