"""Chunked verification against real PostgreSQL: tables cut into primary-key ranges, each range compared,
a difference named by table and range, the rounds bounded."""

import re
import uuid

import pytest
from conftest import Database, spec_for, verify_in_chunks
from psycopg2 import sql

from pg2rds import phases
from pg2rds.errors import VerificationFailed
from pg2rds.lambda_support import parse_state
from pg2rds.postgres.chunks import (
    check_chunk,
    checksum_statement,
    chunk_checksum,
    compare_chunk,
    plan_next,
    plan_round,
)
from pg2rds.postgres.row_hash import TEXT_HASH, row_digest
from pg2rds.postgres.selection import TableName, select_tables
from pg2rds.postgres.verify import pin_comparing_session
from pg2rds.secrets import get_credentials
from pg2rds.spec import TableSelection
from pg2rds.state import Chunk

TABLES = "CREATE TABLE t (id bigint PRIMARY KEY, v text); CREATE TABLE loose (v text)"


@pytest.fixture
def pair(aws, source_db, target_db):
    for db in (source_db, target_db):
        db.execute(TABLES)
        db.execute("INSERT INTO t SELECT g, 'v' || g FROM generate_series(1, 100) g")
        db.execute("INSERT INTO loose SELECT 'x' || g FROM generate_series(1, 5) g")
    state = parse_state({"spec": spec_for(source_db, target_db, verification_chunk_rows=10)})
    return source_db, target_db, state


def test_equal_keyed_tables_are_read_once_in_block_ranges(pair) -> None:
    _, _, state = pair
    first = phases.plan_verification(state)
    assert [(c.describe(), c.keyed) for c in first.chunks] == [
        ("public.loose (blocks [0, +inf))", False),
        ("public.t (blocks [0, +inf))", True),
    ]
    summary = verify_in_chunks(state)
    assert (summary.tables_checked, summary.chunks_checked, summary.rows_checked) == (2, 2, 105)
    assert summary.mismatch_count == 0 and not summary.locate


def test_a_difference_names_the_table_and_key_range(pair) -> None:
    _, target, state = pair
    target.execute("UPDATE t SET v = 'changed' WHERE id = 57")
    target.execute("INSERT INTO t VALUES (1000, 'only on the target')")
    with pytest.raises(VerificationFailed) as failure:
        verify_in_chunks(state)
    message = str(failure.value)
    assert "2 chunk(s) differ" in message
    assert "public.t (id) in [51, 61): same 10 rows, different content" in message
    assert "public.t (id) in [91, +inf): 10 rows on the source, 11 on the target" in message
    assert "[41, 51)" not in message and "loose" not in message


def test_a_difference_is_located_by_key_range_in_bounded_rounds(pair, monkeypatch) -> None:
    """The keyed table's block ranges differ; it alone is read again by key range, three ranges a round:
    its ten ranges over four rounds, the difference named by its range, its rows counted once."""
    _, target, state = pair
    target.execute("UPDATE t SET v = 'changed' WHERE id = 57")
    monkeypatch.setattr(phases, "MAX_CHUNKS_PER_ROUND", 3)
    planned: list = []
    with pytest.raises(VerificationFailed) as failure:
        verify_in_chunks(state, planned)
    rounds = [[c.describe() for c in summary.chunks] for summary in planned]
    seen = [(summary.locating, summary.tables_checked, summary.rows_checked) for summary in planned]
    assert rounds[0] == ["public.loose (blocks [0, +inf))", "public.t (blocks [0, +inf))"]
    assert [len(r) for r in rounds[1:]] == [3, 3, 3, 1] and rounds[1][0] == "public.t (id) in [-inf, 11)"
    assert seen[1:] == [(True, 2, 105)] * 4  # the selection's tables and rows, not the second reading's
    assert "1 chunk(s) differ: public.t (id) in [51, 61): same 10 rows, different content" in str(
        failure.value
    )


def _key_range_checks(state, tables: list[str]) -> list:
    """Every chunk of ``tables`` read by key range, as a table whose block ranges differ is read again to
    locate the difference (``plan_next(only=...)``); the ChunkChecks in order."""
    spec = state.spec
    credentials = get_credentials(spec.source, "source"), get_credentials(spec.target, "target")
    checks, next_table, next_lower = [], 0, None
    while True:
        planned = plan_next(
            spec, *credentials, next_table, next_lower, phases.MAX_CHUNKS_PER_ROUND, only=tables
        )
        checks += [check_chunk(spec, *credentials, chunk) for chunk in planned.chunks]
        if planned.finished:
            return checks
        next_table, next_lower = planned.next_table, planned.next_lower


# -- keys of any type: text, uuid, composite -----------------------------------------------------------

KEYED = {
    # table: (definition, rows); 100 rows each, keys of the kind named
    "names": (
        "(name text PRIMARY KEY, v int)",
        "SELECT 'n' || lpad(g::text, 3, '0'), g FROM generate_series(1, 100) g",
    ),
    "ids": ("(id uuid PRIMARY KEY, v int)", "SELECT md5(g::text)::uuid, g FROM generate_series(1, 100) g"),
    "pairs": (
        "(tenant text, n int, v int, PRIMARY KEY (tenant, n))",
        "SELECT chr(97 + g / 20), mod(g, 20), g FROM generate_series(0, 99) g",
    ),
}  # fmt: skip


def _all_checks(state) -> list:
    """Every chunk of every round checked (the Map in process); the ChunkChecks in order."""
    checks = []
    while True:
        summary = phases.plan_verification(state)
        if summary.done:
            return checks
        results = [phases.verify_chunk(state.model_copy(update={"chunk": c})) for c in summary.chunks]
        checks += results
        state = state.model_copy(update={"verification": summary.model_copy(update={"results": results})})


@pytest.fixture
def keyed(aws, source_db, target_db):
    for db in (source_db, target_db):
        for table, (definition, rows) in KEYED.items():
            db.execute(f"CREATE TABLE {table} {definition}; INSERT INTO {table} {rows}")
    state = parse_state({"spec": spec_for(source_db, target_db, verification_chunk_rows=10)})
    return source_db, target_db, state


def test_text_uuid_and_composite_keys_are_cut_into_ranges_of_the_chunk_size(keyed) -> None:
    _, _, state = keyed
    checks = _key_range_checks(state, [f"public.{table}" for table in KEYED])
    for table in KEYED:
        mine = [c for c in checks if c.chunk.startswith(f"public.{table} (")]
        assert len(mine) == 10 and all(c.source_rows == c.target_rows == 10 and c.matches for c in mine)
    ranges = [c.chunk for c in checks]
    assert "public.names (name) in ['n041', 'n051')" in ranges
    assert "public.pairs (tenant, n) in [('a', 10), ('b', 0))" in ranges
    assert ranges[-1] == "public.pairs (tenant, n) in [('e', 10), +inf)"
    assert sum(c.source_rows for c in checks) == 300


def test_a_difference_in_a_text_uuid_or_composite_key_names_its_range(keyed) -> None:
    source, target, state = keyed
    target.execute("UPDATE names SET v = -1 WHERE name = 'n057'")
    target.execute("DELETE FROM pairs WHERE (tenant, n) = ('c', 3)")
    changed_id = source.execute("SELECT id::text FROM ids ORDER BY id OFFSET 33 LIMIT 1")[0][0]
    target.execute("UPDATE ids SET v = -1 WHERE id = %s", (changed_id,))
    with pytest.raises(VerificationFailed) as failure:
        verify_in_chunks(state)
    message = str(failure.value)
    assert "3 chunk(s) differ" in message
    assert "public.names (name) in ['n051', 'n061'): same 10 rows, different content" in message
    assert (
        "public.pairs (tenant, n) in [('c', 0), ('c', 10)): 10 rows on the source, 9 on the target" in message
    )
    lower, upper = (
        row[0] for row in source.execute("SELECT id::text FROM ids ORDER BY id OFFSET 30 LIMIT 11")[::10]
    )
    assert f"public.ids (id) in ['{lower}', '{upper}'): same 10 rows, different content" in message


def test_a_table_read_in_pages_by_sample_gets_chunks_near_the_chunk_size(aws, source_db, target_db) -> None:
    """100,000 rows and 10,000 rows a chunk: the boundaries come from a block sample of part of the table,
    so the chunks are estimates: all rows in exactly one chunk, none more than half again too large."""
    for db in (source_db, target_db):
        db.execute("CREATE TABLE big (k text PRIMARY KEY, v int)")
        db.execute("INSERT INTO big SELECT md5(g::text), g FROM generate_series(1, 100000) g; ANALYZE big")
    state = parse_state({"spec": spec_for(source_db, target_db, verification_chunk_rows=10_000)})
    checks = _key_range_checks(state, ["public.big"])
    sizes = [c.source_rows for c in checks]
    assert sum(sizes) == 100_000 and all(c.matches for c in checks)
    assert 7 <= len(sizes) <= 14 and max(sizes) <= 15_000, sizes


# -- collations: the same rows in the same range on both sides ----------------------------------------

WORDS = [
    p + q
    for p in ("a", "A", "é", "e", "Z", "-", "_", " b", "ß", "ss", "1", "ä")
    for q in ("x", "X", "1", "-")
]


@pytest.fixture
def icu_target(target_cluster):
    """A target database whose default collation is ICU's English, where the source's is C.UTF-8."""
    name = "db_icu_" + uuid.uuid4().hex[:8]
    target_cluster.execute(
        "postgres", f"CREATE DATABASE {name} TEMPLATE template0 LOCALE_PROVIDER icu ICU_LOCALE 'en'"
    )
    yield Database(target_cluster, name)
    target_cluster.drop_database(name)


def test_servers_that_order_text_differently_compare_in_byte_order_without_false_differences(
    aws, source_db, icu_target
) -> None:
    for db in (source_db, icu_target):
        db.execute(
            "CREATE TABLE words (w text PRIMARY KEY, n int);"
            'CREATE TABLE codes (c text COLLATE "C" PRIMARY KEY)'
        )
        db.execute(
            "INSERT INTO words SELECT w, n FROM unnest(%s::text[]) WITH ORDINALITY AS u(w, n)", (WORDS,)
        )
        db.execute("INSERT INTO codes SELECT w FROM unnest(%s::text[]) AS u(w)", (WORDS,))
    assert icu_target.execute("SELECT 'a' < 'B'")[0][0] != source_db.execute("SELECT 'a' < 'B'")[0][0]
    state = parse_state({"spec": spec_for(source_db, icu_target, verification_chunk_rows=6)})
    chunks = phases.plan_verification(state).chunks
    # both read in block ranges; a difference in codes ("C" on both) could be located by key range, one in
    # words could not (its key orders differently on the two servers)
    assert [(c.describe(), c.keyed) for c in chunks] == [
        ("public.codes (blocks [0, +inf))", True),
        ("public.words (blocks [0, +inf))", False),
    ]
    summary = verify_in_chunks(state)
    assert (summary.chunks_checked, summary.rows_checked, summary.mismatch_count) == (2, 96, 0)
    by_key_checks = _key_range_checks(state, ["public.codes"])
    assert len(by_key_checks) == 8 and all(check.matches for check in by_key_checks)
    # compared in each server's own order, the same key boundaries would name different rows: false
    # differences; compared COLLATE "C" (servers before 14), each range would scan the whole table
    with source_db.connect() as source, icu_target.connect() as target:
        by_key = plan_round(source, target, [TableName("public", "codes")], 0, None, 6, True, 9, by_key=True)
        keyed = [c.model_copy(update={"table_name": "words", "key": ["w"]}) for c in by_key.chunks]
        assert (
            plan_round(source, target, [TableName("public", "words")], 0, None, 6, True, 9)
            .chunks[0]
            .in_blocks
        )
        native = [compare_chunk(source, target, c) for c in keyed]
    assert not all(sides.matches for sides in native)
    icu_target.execute("UPDATE words SET n = -1 WHERE w = 'ßx'")
    with pytest.raises(VerificationFailed, match=r"public.words \(whole table, 1 block ranges\): same 48"):
        verify_in_chunks(state)
    n = source_db.execute("SELECT n FROM words WHERE w = 'ßx'")[0][0]
    icu_target.execute("UPDATE words SET n = %s WHERE w = 'ßx'", (n,))
    icu_target.execute('DELETE FROM codes WHERE c = (SELECT min(c COLLATE "C") FROM codes)')
    with pytest.raises(VerificationFailed) as failure:
        verify_in_chunks(state)
    first = by_key_checks[0].chunk
    assert f"1 chunk(s) differ: {first}: 6 rows on the source, 5 on the target" in str(failure.value)


# -- foreign keys: one key range of the referencing table per chunk -------------------------------------


@pytest.mark.parametrize("verification", ["checksums", "none"])
def test_a_missing_parent_is_found_in_one_range_naming_the_constraint(
    aws, source_db, target_db, verification
):
    """The source has no foreign key (its rows already lack a parent), the target has one: the data are
    equal, the constraint is violated, and the violation names the range and the orphan by its key."""
    child = "CREATE TABLE child (id uuid PRIMARY KEY, parent text{})"
    for db, constraint in (
        (source_db, ""),
        (target_db, " CONSTRAINT child_parent_fk REFERENCES parent (code)"),
    ):
        db.execute("CREATE TABLE parent (code text PRIMARY KEY); " + child.format(constraint))
        db.execute("INSERT INTO parent SELECT 'p' || g FROM generate_series(1, 100) g WHERE g <> 42")
        db.execute(
            "SET session_replication_role = replica; "
            "INSERT INTO child SELECT md5(g::text)::uuid, 'p' || g FROM generate_series(1, 100) g"
        )
    state = parse_state(
        {"spec": spec_for(source_db, target_db, verification_chunk_rows=10, verification=verification)}
    )
    orphan = source_db.execute("SELECT md5('42')::uuid::text")[0][0]
    with pytest.raises(VerificationFailed) as failure:
        verify_in_chunks(state)
    message = str(failure.value)
    assert "chunk(s) differ" not in message
    assert re.search(
        r"1 foreign key violation\(s\) on the target: child_parent_fk on public.child \(blocks \[\d+, "
        rf"(\d+|\+inf)\)\): 1 rows without a parent in public.parent, e.g. \(id\)=\({orphan}\)",
        message,
    ), message


def test_foreign_keys_of_a_table_keyed_by_random_uuids_are_checked_reading_it_once(
    aws, source_db, target_db
) -> None:
    """The referencing rows were counted by key range, each read through the key's index: for a uuid key
    each range's rows lie in most of the table's blocks, so the check read the table about once per
    range. In block ranges it reads each block once, and a violation still names its rows."""
    for db in (source_db, target_db):
        db.execute(
            "CREATE TABLE parent (id int PRIMARY KEY); INSERT INTO parent SELECT generate_series(1, 100);"
            "CREATE TABLE events (id uuid PRIMARY KEY, parent int REFERENCES parent, payload text);"
            "INSERT INTO events SELECT md5(g::text)::uuid, 1 + mod(g, 100), repeat('x', 100)"
            " FROM generate_series(1, 20000) g"
        )
        db.execute("VACUUM ANALYZE events")
    state = parse_state({"spec": spec_for(source_db, target_db, verification_chunk_rows=2000)})
    with target_db.connect() as conn:
        before = _blocks_read(conn, "events")
        summary = verify_in_chunks(state)
        read = _blocks_read(conn, "events") - before
    pages = target_db.execute("SELECT pg_relation_size('events') / 8192")[0][0]
    assert summary.mismatch_count == 0 and summary.chunks_checked >= 10, summary.chunks_checked
    # on the target each block is read once by the comparison, and once more by the foreign key's check
    assert 2 * pages <= read <= 2 * (pages + summary.chunks_checked), (read, pages)


def test_a_round_looks_at_no_more_tables_than_chunks_even_when_none_yield_one(
    aws, source_db, target_db
) -> None:
    """verification none, 6 tables: only the last has a foreign key. Rounds of 2 look at 2 tables each
    (not the whole catalog in one invocation), and the loop goes on through rounds without chunks."""
    for db in (source_db, target_db):
        db.execute("; ".join(f"CREATE TABLE t{i} (id int PRIMARY KEY)" for i in range(5)))
        db.execute("CREATE TABLE z (id int PRIMARY KEY, parent int)")
    target_db.execute("ALTER TABLE z ADD CONSTRAINT z_parent_fk FOREIGN KEY (parent) REFERENCES t0 (id)")
    target_db.execute("SET session_replication_role = replica; INSERT INTO z VALUES (1, 99)")
    with source_db.connect() as source, target_db.connect() as target:
        tables = select_tables(source, TableSelection())
        assert plan_round(source, target, tables, 0, None, 10, False, 2) == ([], 2, None, 0, 0)
    state = parse_state({"spec": spec_for(source_db, target_db, verification="none")})
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(phases, "MAX_CHUNKS_PER_ROUND", 2)
        with pytest.raises(
            VerificationFailed,
            match=r"z_parent_fk on public.z \(blocks \[0, \+inf\)\): 1 rows .*, e.g. \(id\)=\(1\)",
        ):
            verify_in_chunks(state)


# -- tables without a shared key order: block ranges, totals per table ---------------------------------

LOG_ROWS = 3000


@pytest.fixture
def logs(aws, source_db, target_db):
    """A keyless table of about 90 blocks, stored in a different order on each side: the target's rows
    inserted in reverse, and a tenth of them rewritten, so the same block holds other rows there."""
    for db, order in ((source_db, "g"), (target_db, "-g")):
        db.execute(
            "CREATE TABLE log (at int, payload text); INSERT INTO log "
            f"SELECT g, repeat('x', 180) FROM generate_series(1, {LOG_ROWS}) g ORDER BY {order}"
        )
    target_db.execute("UPDATE log SET payload = payload WHERE mod(at, 10) = 0")
    for db in (source_db, target_db):
        db.execute("VACUUM ANALYZE log")
    state = parse_state({"spec": spec_for(source_db, target_db, verification_chunk_rows=500)})
    return source_db, target_db, state


def test_a_keyless_table_is_checked_in_block_ranges_adding_up_to_the_table(logs) -> None:
    source, target, state = logs
    chunks = phases.plan_verification(state).chunks
    pages = max(db.execute("SELECT pg_relation_size('log') / 8192")[0][0] for db in (source, target))
    assert 5 <= len(chunks) <= 10 and all(c.in_blocks for c in chunks), [c.describe() for c in chunks]
    assert [c.first_block for c in chunks[1:]] == [c.end_block for c in chunks[:-1]]
    assert chunks[0].first_block == 0 and chunks[-1].end_block is None and chunks[-1].first_block < pages
    checks = _all_checks(state)
    assert sum(c.source_rows for c in checks) == sum(c.target_rows for c in checks) == LOG_ROWS
    assert not all(c.matches for c in checks)  # each range alone differs: other rows in the same blocks
    summary = verify_in_chunks(state)
    assert (summary.rows_checked, summary.mismatch_count, summary.open_sums) == (LOG_ROWS, 0, None)


@pytest.mark.parametrize("per_round", [100, 3])
def test_a_difference_in_a_keyless_table_names_it_whatever_the_rounds(logs, per_round) -> None:
    """3 chunks a round: the table's ranges span rounds, its totals are carried in the state."""
    _, target, state = logs
    ranges = len(phases.plan_verification(state).chunks)
    target.execute("UPDATE log SET payload = 'changed' WHERE at = 2999")
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(phases, "MAX_CHUNKS_PER_ROUND", per_round)
        with pytest.raises(VerificationFailed) as failure:
            verify_in_chunks(state)
        assert (
            f"1 chunk(s) differ: public.log (whole table, {ranges} block ranges): same {LOG_ROWS} rows, "
            in (str(failure.value))
        )
        target.execute(
            "UPDATE log SET payload = repeat('x', 180) WHERE at = 2999; DELETE FROM log WHERE at = 7"
        )
        with pytest.raises(VerificationFailed, match=f"{LOG_ROWS} rows on the source, {LOG_ROWS - 1} on the"):
            verify_in_chunks(state)


def test_a_block_range_reads_its_blocks_not_the_table(logs) -> None:
    """What makes the check bounded: a range's statement reads about its own blocks (a TID range scan),
    not the whole table, on both servers (pg_statio_user_tables, flushed by the reading session)."""
    source, target, state = logs
    chunk = phases.plan_verification(state).chunks[1]
    blocks = chunk.end_block - chunk.first_block
    read = []
    for db in (source, target):
        with db.connect() as conn:
            before = _blocks_read(conn)
            count, _ = chunk_checksum(conn, chunk, TEXT_HASH)
            read.append(_blocks_read(conn) - before)
        assert count > 0
    pages = source.execute("SELECT pg_relation_size('log') / 8192")[0][0]
    assert all(0 < n <= blocks + 1 for n in read) and pages > 4 * blocks, (read, blocks, pages)


def _blocks_read(conn, table: str = "log") -> int:
    with conn.cursor() as cur:
        cur.execute("SELECT pg_stat_force_next_flush()")
        conn.commit()
        cur.execute("SELECT pg_stat_clear_snapshot()")
        cur.execute(
            "SELECT heap_blks_read + heap_blks_hit FROM pg_statio_user_tables WHERE relname = %s", (table,)
        )
        return cur.fetchone()[0]


def test_a_table_keyed_by_random_uuids_is_read_once_not_once_per_range(aws, source_db, target_db) -> None:
    """A uuid key does not follow the rows' order: each key range's rows lie in most of the table's blocks,
    so reading the table by key range (as verification did) read it about once per range on the source.
    Read in block ranges, the verification reads each block once on each side."""
    for db in (source_db, target_db):
        db.execute(
            "CREATE TABLE events (id uuid PRIMARY KEY, payload text);"
            "INSERT INTO events SELECT md5(g::text)::uuid, repeat('x', 100) FROM generate_series(1, 20000) g"
        )
        db.execute("VACUUM ANALYZE events")
    state = parse_state({"spec": spec_for(source_db, target_db, verification_chunk_rows=2000)})
    read = []
    for db in (source_db, target_db):
        with db.connect() as conn:
            before = _blocks_read(conn, "events")
            summary = verify_in_chunks(state)
            read.append(_blocks_read(conn, "events") - before)
    pages = source_db.execute("SELECT pg_relation_size('events') / 8192")[0][0]
    assert summary.mismatch_count == 0 and summary.chunks_checked >= 8, summary.chunks_checked
    # one verification per side's counter: every block once, plus at most one per range (a range's scan
    # may touch the block where the next begins)
    assert all(pages <= n <= pages + summary.chunks_checked for n in read), (read, pages)


def test_a_missing_parent_of_a_keyless_child_names_its_block_range(aws, source_db, target_db) -> None:
    for db in (source_db, target_db):
        db.execute("CREATE TABLE parent (id int PRIMARY KEY); CREATE TABLE child (parent int, note text)")
        db.execute("INSERT INTO parent SELECT generate_series(1, 10)")
        db.execute("INSERT INTO child SELECT 1 + mod(g, 10), repeat('n', 300) FROM generate_series(1, 500) g")
    target_db.execute(
        "ALTER TABLE child ADD CONSTRAINT child_parent_fk FOREIGN KEY (parent) REFERENCES parent"
    )
    target_db.execute("SET session_replication_role = replica; INSERT INTO child VALUES (99, 'orphan')")
    source_db.execute("INSERT INTO child VALUES (99, 'orphan')")
    for db in (source_db, target_db):
        db.execute("ANALYZE child")
    state = parse_state({"spec": spec_for(source_db, target_db, verification_chunk_rows=100)})
    with pytest.raises(VerificationFailed) as failure:
        verify_in_chunks(state)
    message = str(failure.value)
    assert "chunk(s) differ" not in message
    assert re.search(
        r"child_parent_fk on public.child \(blocks \[\d+, \+inf\)\): 1 rows without a parent", message
    )


#: Database settings under which the server plans a key range with parallel workers.
PARALLEL_PLANS = [
    "parallel_setup_cost = 0",
    "parallel_tuple_cost = 0",
    "min_parallel_table_scan_size = 0",
    "enable_indexscan = off",
    "enable_bitmapscan = off",
]


def test_a_chunk_is_read_by_one_backend_on_each_server(source_db, target_db) -> None:
    """verification_concurrency is the number of backends a verification runs on a server: a chunk's
    statement gets no parallel workers, even where the server would plan them (here made cheap, and the
    index paths off, as the planner chooses for a range of a fifth of a mid-sized table)."""
    for db in (source_db, target_db):
        db.execute(TABLES)
        db.execute("INSERT INTO t SELECT g, 'v' || g FROM generate_series(1, 20000) g")
        db.execute("ANALYZE t")
        for setting in PARALLEL_PLANS:
            db.execute(f"ALTER DATABASE {db.name} SET {setting}")
    chunk = Chunk(schema_name="public", table_name="t", key=["id"], bare=[True], collate_c=[False],
                  lower=["4001"], upper=["8001"])  # fmt: skip
    with source_db.connect() as source, target_db.connect() as target:
        digest = row_digest(source, target, "public", "t")
        query, params = checksum_statement(
            chunk, digest, sql.SQL("ONLY {}").format(sql.Identifier("public", "t"))
        )
        for conn in (source, target):
            with conn.cursor() as cur:
                cur.execute(sql.SQL("EXPLAIN ") + query, params)
                assert "Gather" in "\n".join(row for (row,) in cur.fetchall())  # the server's own choice
                pin_comparing_session(conn)
                cur.execute(sql.SQL("EXPLAIN ") + query, params)
                assert "Gather" not in "\n".join(row for (row,) in cur.fetchall())
        sides = compare_chunk(source, target, chunk)
    assert sides.matches and sides.source_rows == 4000


def test_a_parent_with_inheritance_children_is_read_by_its_own_rows(source_db, target_db) -> None:
    """On both sides, whether the target keeps the inheritance or not: the parent's own rows are compared
    (a child is a table of its own, compared on its own), and one of them missing is found."""
    source_db.execute("CREATE TABLE parent (id int PRIMARY KEY); CREATE TABLE child () INHERITS (parent)")
    target_db.execute("CREATE TABLE parent (id int PRIMARY KEY); CREATE TABLE child (id int)")
    for db in (source_db, target_db):
        db.execute("INSERT INTO parent SELECT generate_series(1, 100); INSERT INTO child VALUES (500)")
    whole = Chunk(schema_name="public", table_name="parent", key=["id"], bare=[True], collate_c=[False])
    with source_db.connect() as source, target_db.connect() as target:
        assert compare_chunk(source, target, whole).matches
        target_db.execute("DELETE FROM parent WHERE id = 7")
        sides = compare_chunk(source, target, whole)
    assert not sides.matches and (sides.source_rows, sides.target_rows) == (100, 99)
