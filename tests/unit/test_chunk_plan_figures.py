"""How a chunk reads in a report, and how much of a table the planner samples (no database needed)."""

from pg2rds.postgres.chunks import (
    MAX_SAMPLE_PAGES,
    MAX_SAMPLE_ROWS,
    SAMPLES_PER_CHUNK,
    block_ranges,
    sampling,
)
from pg2rds.state import MAX_BOUND_CHARS, Chunk, ChunkCheck, TableSums


def _chunk(**fields) -> Chunk:
    return Chunk(schema_name="public", table_name="t", **fields)


def test_a_range_names_its_key_with_text_quoted_numbers_bare_and_long_values_cut() -> None:
    assert _chunk().describe() == "public.t (whole table)"
    names = _chunk(key=["name"], lower=["a"], upper=["it's"], bare=[False], collate_c=[True])
    assert names.describe() == "public.t (name) in ['a', 'it''s')"
    pairs = _chunk(
        key=["tenant", "n"], lower=None, upper=["b", "10"], bare=[False, True], collate_c=[False, False]
    )
    assert pairs.describe() == "public.t (tenant, n) in [-inf, ('b', 10))"
    long = _chunk(key=["k"], lower=["x" * 100], upper=None, bare=[False], collate_c=[False])
    assert long.describe() == f"public.t (k) in ['{'x' * 40}…', +inf)"
    wide = _chunk(
        key=[f"c{i}" for i in range(10)], lower=["y" * 50] * 10, bare=[False] * 10, collate_c=[False] * 10
    )
    bound = wide.describe().split(" in [", 1)[1].split(", +inf)")[0]
    assert len(bound) == MAX_BOUND_CHARS + 1 and bound.endswith("…")


def test_a_small_chunk_size_samples_the_whole_table_and_cuts_exactly() -> None:
    assert sampling(rows=1000, relpages=10, pages=10, chunk_rows=SAMPLES_PER_CHUNK) == (
        1.0,
        SAMPLES_PER_CHUNK,
    )
    assert sampling(rows=0, relpages=0, pages=0, chunk_rows=7) == (1.0, 7)


def test_the_sample_wants_pages_and_rows_per_chunk_and_is_capped_for_huge_tables() -> None:
    # 100 rows a page, 1,000,000 rows a chunk: 20 pages' worth (2,000 rows) per chunk, 1 in 500 pages
    fraction, step = sampling(rows=10_000_000, relpages=100_000, pages=100_000, chunk_rows=1_000_000)
    assert (fraction, step) == (0.002, 2000)
    # a 1,000,000,000-row table: the caps, not the chunk size, decide how much is read
    pages = 10_000_000
    fraction, step = sampling(rows=1e9, relpages=pages, pages=pages, chunk_rows=1_000_000)
    assert fraction * pages <= MAX_SAMPLE_PAGES and fraction * 1e9 <= MAX_SAMPLE_ROWS
    assert step == round(1_000_000 * fraction) >= 1


def test_block_ranges_cover_the_larger_side_in_chunk_sized_steps_and_stop_at_the_limit() -> None:
    # 100 rows a block, 1,000 rows a chunk: 10 blocks a range; 95 blocks → 10 ranges, the last one short
    assert block_ranges(100.0, 95, 1000, 0, 100) == list(range(0, 95, 10))
    assert block_ranges(100.0, 95, 1000, 40, 3) == [40, 50, 60]  # from a cursor, at most the limit
    assert block_ranges(100.0, 0, 1000, 0, 100) == [0]  # empty: one range, open above
    assert block_ranges(100.0, 10, 1000, 30, 100) == [30]  # shrunk below the cursor: one open range
    assert block_ranges(2000.0, 10, 1000, 0, 100) == list(range(10))  # at least one block a range


def test_a_table_of_a_wave_or_more_is_cut_into_whole_waves_of_ranges() -> None:
    """Four at a time: pgbench_accounts at scale 50 (81,968 blocks of 61 rows, 1 M rows a chunk) was five
    ranges and three blocks, a wave of four then one range alone (and one of three blocks); it is eight."""
    firsts = block_ranges(61.0, 81_968, 1_000_000, 0, 100, waves_of=4)
    assert len(firsts) == 8 and firsts[1] * 8 >= 81_968 > firsts[-1]
    assert block_ranges(61.0, 81_968, 1_000_000, 0, 100) == list(range(0, 81_968, 16_393))  # 6 ranges
    # from a cursor the same steps, so the ranges of a table planned over rounds join up
    assert block_ranges(61.0, 81_968, 1_000_000, firsts[3], 100, waves_of=4) == firsts[3:]
    assert block_ranges(100.0, 95, 1000, 0, 100, waves_of=4) == list(range(0, 95, 8))  # 10 ranges → 12
    assert block_ranges(100.0, 25, 1000, 0, 100, waves_of=4) == [0, 10, 20]  # under a wave: as they are


def test_a_block_range_reads_as_its_blocks_and_a_table_as_its_totals() -> None:
    assert _chunk(first_block=0, end_block=12).describe() == "public.t (blocks [0, 12))"
    assert _chunk(first_block=12).describe() == "public.t (blocks [12, +inf))"
    parts = [("5", "4"), ("7", "8")]  # each range differs, the totals agree: other rows in the same blocks
    sums = TableSums(table="public.t")
    for source_sum, target_sum in parts:
        check = ChunkCheck(
            chunk="",
            source_rows=2,
            target_rows=2,
            matches=False,
            source_sum=source_sum,
            target_sum=target_sum,
        )
        sums = sums.plus(check)
    assert sums.matches and (sums.ranges, sums.source_sum, sums.target_sum) == (2, "12", "12")
    big = str(2**70)  # sums of 64-bit hashes outgrow a float's exact integers: added as integers
    wide = sums.plus(ChunkCheck(chunk="", source_rows=1, target_rows=1, matches=True, source_sum=big,
                                target_sum=str(2**70 + 1)))  # fmt: skip
    assert (
        not wide.matches
        and wide.render() == "public.t (whole table, 3 block ranges): same 5 rows, different content"
    )
