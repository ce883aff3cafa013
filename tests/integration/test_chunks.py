"""Chunked verification against real PostgreSQL: tables cut into primary-key ranges, each range compared,
a difference named by table and range, the rounds bounded."""

import pytest
from conftest import spec_for, verify_in_chunks

from pg2rds import phases
from pg2rds.errors import VerificationFailed
from pg2rds.lambda_support import parse_state

TABLES = "CREATE TABLE t (id bigint PRIMARY KEY, v text); CREATE TABLE loose (v text)"


@pytest.fixture
def pair(aws, source_db, target_db):
    for db in (source_db, target_db):
        db.execute(TABLES)
        db.execute("INSERT INTO t SELECT g, 'v' || g FROM generate_series(1, 100) g")
        db.execute("INSERT INTO loose SELECT 'x' || g FROM generate_series(1, 5) g")
    state = parse_state({"spec": spec_for(source_db, target_db, verification_chunk_rows=10)})
    return source_db, target_db, state


def test_equal_tables_are_checked_in_key_ranges(pair) -> None:
    _, _, state = pair
    first = phases.plan_verification(state)
    ranges = [c.describe() for c in first.chunks]
    assert ranges[:2] == ["public.loose (whole table)", "public.t id in [-inf, 11)"]
    assert ranges[-1] == "public.t id in [91, +inf)" and len(ranges) == 11
    summary = verify_in_chunks(state)
    assert (summary.tables_checked, summary.chunks_checked, summary.rows_checked) == (2, 11, 105)
    assert summary.mismatch_count == 0


def test_a_difference_names_the_table_and_key_range(pair) -> None:
    _, target, state = pair
    target.execute("UPDATE t SET v = 'changed' WHERE id = 57")
    target.execute("INSERT INTO t VALUES (1000, 'only on the target')")
    with pytest.raises(VerificationFailed) as failure:
        verify_in_chunks(state)
    message = str(failure.value)
    assert "2 chunk(s) differ" in message
    assert "public.t id in [51, 61): same 10 rows, different content" in message
    assert "public.t id in [91, +inf): 10 rows on the source, 11 on the target" in message
    assert "[41, 51)" not in message and "loose" not in message


def test_rounds_are_bounded_and_add_up(pair, monkeypatch) -> None:
    _, _, state = pair
    monkeypatch.setattr(phases, "MAX_CHUNKS_PER_ROUND", 3)
    assert len(phases.plan_verification(state).chunks) == 3
    summary = verify_in_chunks(state)
    assert (summary.tables_checked, summary.chunks_checked, summary.rows_checked) == (2, 11, 105)
