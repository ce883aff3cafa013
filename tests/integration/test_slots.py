"""The migration's slot on a real source: created by pg2rds with test_decoding, reused only when it is
ours, and dropped only when it is ours (our name, our database) and no walsender holds it."""

import contextlib
import itertools
import time
import uuid
from collections.abc import Iterator

import psycopg2
import psycopg2.extras
import pytest
from conftest import Database

from pg2rds.errors import ResourceConflict
from pg2rds.postgres.slots import (
    LONG_PAGE_HEADER,
    SHORT_PAGE_HEADER,
    SLOT_PLUGIN,
    current_wal_lsn,
    drop_slot,
    ensure_slot,
    lsn_text,
    slot_has_confirmed,
)
from pg2rds.secrets import Credentials
from pg2rds.spec import DatabaseRef
from pg2rds_emulator.pgcluster import SUPERUSER

FAKE_SECRET_ARN = "arn:aws:secretsmanager:us-east-1:123456789012:secret:pg2rds-test"


def ref_for(db: Database) -> DatabaseRef:
    return DatabaseRef(secret_arn=FAKE_SECRET_ARN, ssl_mode="none")


def credentials(db: Database) -> Credentials:
    """What the (unread) secret would hold: the functions take the server from it."""
    return Credentials("127.0.0.1", db.cluster.port, db.name, SUPERUSER, db.cluster.password)


def create_slot(db: Database, name: str, plugin: str = "test_decoding") -> None:
    db.execute("SELECT pg_create_logical_replication_slot(%s, %s)", (name, plugin))


def slots(db: Database) -> dict[str, bool]:
    """Every slot of the cluster (slot names are cluster-wide), with whether it is active."""
    return dict(db.execute("SELECT slot_name::text, active FROM pg_replication_slots"))


def wait_for_activity(db: Database, name: str, active: bool, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while slots(db).get(name) is not active:
        if time.monotonic() > deadline:
            raise AssertionError(f"slot {name} did not become {'active' if active else 'inactive'}")
        time.sleep(0.05)


def test_drops_our_slot_then_reports_it_absent(source_db: Database) -> None:
    create_slot(source_db, "pg2rds_x")

    assert drop_slot(ref_for(source_db), credentials(source_db), "pg2rds_x") == "dropped"
    assert "pg2rds_x" not in slots(source_db)
    assert drop_slot(ref_for(source_db), credentials(source_db), "pg2rds_x") == "absent"


def test_other_slots_are_never_dropped(source_db: Database) -> None:
    for name in ("pg2rds_x", "pg2rds_x_other", "pg2rds_y"):
        create_slot(source_db, name)

    assert drop_slot(ref_for(source_db), credentials(source_db), "pg2rds_x") == "dropped"
    assert drop_slot(ref_for(source_db), credentials(source_db), "pg2rds_%") == "absent"

    remaining = {name for name in slots(source_db) if name.startswith("pg2rds_")}
    assert {"pg2rds_x_other", "pg2rds_y"} <= remaining
    assert "pg2rds_x" not in remaining


@pytest.fixture
def other_database(source_db: Database) -> Iterator[Database]:
    """A second database on the source cluster, with its slots dropped before it is."""
    other = Database(source_db.cluster, "other_" + uuid.uuid4().hex[:8])
    other.cluster.create_database(other.name)
    yield other
    other.cluster.execute(
        "postgres",
        "SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots WHERE database = %s",
        (other.name,),
    )
    other.cluster.drop_database(other.name)


def test_slot_of_another_database_is_left_alone(source_db: Database, other_database: Database) -> None:
    name = "pg2rds_elsewhere_" + uuid.uuid4().hex[:6]
    create_slot(other_database, name)

    assert drop_slot(ref_for(source_db), credentials(source_db), name) == "absent"
    assert name in slots(source_db)


def stream_from(db: Database, slot: str) -> psycopg2.extensions.connection:
    """Hold ``slot`` with a walsender, as DMS does while its task runs; returns the replication connection."""
    conn = psycopg2.connect(
        db.cluster.dsn(db.name), connection_factory=psycopg2.extras.LogicalReplicationConnection
    )
    conn.cursor().start_replication(slot_name=slot, decode=False)
    wait_for_activity(db, slot, active=True)
    return conn


def release(db: Database, slot: str, conn: psycopg2.extensions.connection) -> None:
    """Close the walsender's connection and wait until the server has let go of the slot."""
    conn.close()
    wait_for_activity(db, slot, active=False)


def test_active_slot_is_not_dropped_until_released(source_db: Database) -> None:
    create_slot(source_db, "pg2rds_busy")
    conn = stream_from(source_db, "pg2rds_busy")
    try:
        assert drop_slot(ref_for(source_db), credentials(source_db), "pg2rds_busy") == "active"
        assert slots(source_db)["pg2rds_busy"] is True
    finally:
        release(source_db, "pg2rds_busy", conn)  # also lets the database's teardown drop the slot

    assert drop_slot(ref_for(source_db), credentials(source_db), "pg2rds_busy") == "dropped"
    assert "pg2rds_busy" not in slots(source_db)


# -- ensure_slot: the create-slot phase ----------------------------------------------------------------------


def slot_row(db: Database, name: str) -> tuple | None:
    rows = db.execute(
        "SELECT plugin::text, database::text, confirmed_flush_lsn::text FROM pg_replication_slots "
        "WHERE slot_name = %s",
        (name,),
    )
    return rows[0] if rows else None


def test_creates_our_slot_with_test_decoding_then_reuses_it(source_db: Database) -> None:
    created = ensure_slot(ref_for(source_db), credentials(source_db), "pg2rds_mine")
    assert created.created and created.name == "pg2rds_mine" and created.plugin == SLOT_PLUGIN
    plugin, database, confirmed = slot_row(source_db, "pg2rds_mine")
    assert (plugin, database, confirmed) == ("test_decoding", source_db.name, created.lsn)

    again = ensure_slot(ref_for(source_db), credentials(source_db), "pg2rds_mine")  # a retried phase
    assert not again.created and (again.name, again.lsn) == ("pg2rds_mine", created.lsn)
    assert [name for name in slots(source_db) if name == "pg2rds_mine"] == ["pg2rds_mine"]
    assert source_db.execute("SELECT count(*) FROM pg_publication") == [(0,)]


def test_a_slot_in_use_is_never_taken_over(source_db: Database) -> None:
    create_slot(source_db, "pg2rds_live")
    conn = stream_from(source_db, "pg2rds_live")
    try:
        with pytest.raises(ResourceConflict, match="is being read .*another execution of this migration"):
            ensure_slot(ref_for(source_db), credentials(source_db), "pg2rds_live")
    finally:
        release(source_db, "pg2rds_live", conn)


def test_a_slot_with_another_plugin_or_in_another_database_is_not_ours(
    source_db: Database, other_database: Database
) -> None:
    create_slot(source_db, "pg2rds_old", plugin="pgoutput")
    with pytest.raises(ResourceConflict, match="plugin 'pgoutput', not 'test_decoding'"):
        ensure_slot(ref_for(source_db), credentials(source_db), "pg2rds_old")
    create_slot(other_database, "pg2rds_elsewhere")
    with pytest.raises(ResourceConflict, match=f"in database '{other_database.name}'"):
        ensure_slot(ref_for(source_db), credentials(source_db), "pg2rds_elsewhere")
    assert slot_row(source_db, "pg2rds_old")[0] == "pgoutput"  # left exactly as it was


@contextlib.contextmanager
def wal_writer_delay(db: Database, delay: str) -> Iterator[None]:
    """The cluster's WAL writer set to write asynchronous commits only every ``delay``, then reset."""
    db.execute(f"ALTER SYSTEM SET wal_writer_delay = '{delay}'")
    db.execute("SELECT pg_reload_conf()")
    time.sleep(0.5)  # the WAL writer reloads on its next wake-up (at most the old 200 ms delay)
    try:
        yield
    finally:
        db.execute("ALTER SYSTEM RESET wal_writer_delay")
        db.execute("SELECT pg_reload_conf()")


def test_the_decision_position_lies_past_a_commit_whose_wal_is_not_yet_written(source_db: Database) -> None:
    """With synchronous_commit off (common on busy sources) a commit returns before its WAL is written.
    The position noted at the cutover decision must still lie past the application's last commit: were it
    the WAL's write position, the slot could confirm it while that commit is not even decoded yet, and
    the task would be stopped without the last write (seen as a flaky end-to-end test: a run SUCCEEDED
    while its last change was held up on the target)."""
    source_db.execute("CREATE TABLE orders (id int PRIMARY KEY)")
    with wal_writer_delay(source_db, "10s"), source_db.connect() as conn, conn.cursor() as cur:
        conn.autocommit = True
        cur.execute("SET synchronous_commit = off")
        cur.execute("INSERT INTO orders VALUES (1)")
        cur.execute("SELECT pg_current_wal_insert_lsn()::text")  # at or past the commit's record
        (committed,) = cur.fetchone()
        decision = current_wal_lsn(ref_for(source_db), credentials(source_db))
        cur.execute("SELECT %s::pg_lsn >= %s::pg_lsn", (decision, committed))
        assert cur.fetchone() == (True,), (decision, committed)


def insert_lsn(cur) -> int:
    cur.execute("SELECT (pg_current_wal_insert_lsn() - '0/0'::pg_lsn)::bigint")
    return int(cur.fetchone()[0])


def emit(cur, length: int) -> tuple[int, int]:
    """One WAL record (a non-transactional logical message of ``length`` bytes): insert positions before
    and after it."""
    before = insert_lsn(cur)
    cur.execute("SELECT pg_logical_emit_message(false, 'p', repeat('x', %s))", (length,))
    return before, insert_lsn(cur)


def message_overhead(cur, block: int) -> int:
    """Bytes a message's record takes besides its content (over 255 bytes), before alignment: the size
    steps up by 8 at the length whose record exactly fills its last 8 bytes."""
    for _ in range(20):
        sizes = [(length, *emit(cur, length)) for length in range(300, 309)]
        if any(after // block != before // block for _, before, after in sizes):
            continue  # a page header in between: measure again
        for (_, b1, a1), (length, b2, a2) in itertools.pairwise(sizes):
            if a2 - b2 > a1 - b1:
                return (a1 - b1) - length + 1
    raise AssertionError("could not measure a message's record")


def end_wal_on_a_page_boundary(cur) -> int:
    """Write WAL until its last record ends exactly at the end of a WAL page; returns that boundary. The
    insert position is then past the next page's header."""
    cur.execute("SELECT current_setting('wal_block_size')::int")
    block = cur.fetchone()[0]
    overhead = message_overhead(cur, block)
    for _ in range(20):
        room = block - insert_lsn(cur) % block
        if room - overhead < 256:
            emit(cur, 256)  # too little room on this page: on to the next
            continue
        before, after = emit(cur, room - overhead)
        if after == before + room + SHORT_PAGE_HEADER:
            return before + room
    raise AssertionError("could not end the WAL on a page boundary")


def end_wal_on_a_segment_boundary(cur) -> int:
    """Switch to a new WAL segment: the last record ends at the old one's end, and the insert position is
    past the new segment's long page header."""
    cur.execute("SELECT pg_logical_emit_message(false, 'p', 'x')")  # a segment with something in it
    cur.execute("SELECT pg_switch_wal()")
    cur.execute("SELECT pg_size_bytes(current_setting('wal_segment_size'))")
    segment = int(cur.fetchone()[0])
    return insert_lsn(cur) // segment * segment


def wait_for_flush(cur, lsn: int) -> None:
    """The WAL writer flushes up to ``lsn`` within moments; a slot is advanced only as far as is flushed."""
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        cur.execute("SELECT pg_current_wal_flush_lsn() >= %s::pg_lsn", (lsn_text(lsn),))
        if cur.fetchone()[0]:
            return
        time.sleep(0.05)


@pytest.mark.parametrize(
    ("end_wal", "header"),
    [(end_wal_on_a_page_boundary, SHORT_PAGE_HEADER), (end_wal_on_a_segment_boundary, LONG_PAGE_HEADER)],
    ids=["page", "segment"],
)
def test_a_decision_made_when_the_wal_ends_on_a_page_boundary_is_confirmed_there(
    source_db: Database, end_wal, header: int
) -> None:
    """The insert position is then past the next page's header, where no record ends: a consumer that
    applied everything confirms the boundary, and the cutover must count that as confirmed, not wait for
    the next WAL record (the background writer's, up to 15 s on a source nobody writes to)."""
    create_slot(source_db, "pg2rds_edge")
    with source_db.connect() as conn, conn.cursor() as cur:
        conn.autocommit = True
        for _ in range(10):  # the cluster's own WAL (autovacuum, running-xacts records) may land in between
            boundary = end_wal(cur)
            wait_for_flush(cur, boundary)
            advance = "SELECT pg_replication_slot_advance('pg2rds_edge', %s::pg_lsn)"
            cur.execute(advance, (lsn_text(boundary),))
            cur.execute(
                "SELECT confirmed_flush_lsn::text FROM pg_replication_slots WHERE slot_name = 'pg2rds_edge'"
            )
            assert cur.fetchone()[0] == lsn_text(boundary)  # everything applied and confirmed
            decision = current_wal_lsn(ref_for(source_db), credentials(source_db))
            if insert_lsn(cur) == boundary + header:
                break  # nothing else was written: the decision was made at the boundary
        else:
            raise AssertionError("other WAL was written between the boundary and the decision ten times")
    assert decision == lsn_text(boundary)
    assert slot_has_confirmed(ref_for(source_db), credentials(source_db), "pg2rds_edge", decision)
