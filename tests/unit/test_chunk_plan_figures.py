"""How a chunk reads in a report, and how much of a table the planner samples (no database needed)."""

from pg2rds.postgres.chunks import MAX_SAMPLE_PAGES, MAX_SAMPLE_ROWS, SAMPLES_PER_CHUNK, sampling
from pg2rds.state import MAX_BOUND_CHARS, Chunk


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
