"""The source stays safe while pg2rds reads it, on real PostgreSQL: every session pg2rds opens there is
read-only, and a read that meets a DDL's ACCESS EXCLUSIVE lock gives up (``SourceBusy``, naming the table)
instead of waiting in the lock queue, where the application's sessions would queue behind it."""

import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import psycopg2
import psycopg2.errors
import pytest
from conftest import Database, spec_for

from pg2rds import phases
from pg2rds.errors import SourceBusy
from pg2rds.lambda_support import parse_state
from pg2rds.postgres.connection import SOURCE_LOCK_TIMEOUT_MS, connect
from pg2rds.postgres.slots import drop_slot, ensure_slot
from pg2rds.secrets import get_credentials

#: How long a test waits for something that should happen within the lock timeout (never a speed claim:
#: only a bound after which "it waits indefinitely" is the verdict).
PATIENCE = SOURCE_LOCK_TIMEOUT_MS / 1000 + 60


class Background:
    """A call run in a thread: its result or error, and whether it has finished."""

    def __init__(self, call: Callable[[], Any]) -> None:
        self.result: Any = None
        self.error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, args=(call,), daemon=True)
        self._thread.start()

    def _run(self, call: Callable[[], Any]) -> None:
        try:
            self.result = call()
        except BaseException as error:  # handed to the test
            self.error = error

    def finished_within(self, seconds: float) -> bool:
        self._thread.join(seconds)
        return not self._thread.is_alive()


@pytest.fixture
def ddl_lock(source_db: Database) -> Iterator[Callable[[str], Any]]:
    """``lock("t")``: another session takes ACCESS EXCLUSIVE on the table, as an ALTER TABLE in progress
    would, and keeps it until the test ends."""
    held = []

    def lock(table: str) -> Any:
        conn = psycopg2.connect(source_db.cluster.dsn(source_db.name))
        conn.cursor().execute(f"LOCK TABLE {table} IN ACCESS EXCLUSIVE MODE")
        held.append(conn)
        return conn

    yield lock
    for conn in held:
        conn.rollback()
        conn.close()


def waiting_for_a_lock(db: Database, application_name: str) -> bool:
    rows = db.execute(
        "SELECT count(*) FROM pg_stat_activity "
        "WHERE datname = %s AND application_name = %s AND wait_event_type = 'Lock'",
        (db.name, application_name),
    )
    return rows[0][0] > 0


def eventually(condition: Callable[[], bool], what: str, timeout: float = PATIENCE) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"no {what} within {timeout} s"
        time.sleep(0.1)


def test_a_write_through_a_source_session_fails(aws, source_db, target_db) -> None:
    source_db.execute("CREATE TABLE t (id int PRIMARY KEY)")
    spec = parse_state({"spec": spec_for(source_db, target_db)}).spec
    credentials = get_credentials(spec.source, "source")
    with connect(spec.source, credentials, "source") as conn, conn.cursor() as cur:
        for write in ("INSERT INTO t VALUES (1)", "CREATE TABLE u (id int)", "CREATE SEQUENCE x"):
            with pytest.raises(psycopg2.errors.ReadOnlySqlTransaction):
                cur.execute(write)
    assert source_db.execute("SELECT count(*) FROM t") == [(0,)]
    assert source_db.execute("SELECT count(*) FROM pg_class WHERE relname IN ('u', 'x')") == [(0,)]


def test_the_slot_the_migration_owns_is_still_created_and_dropped(aws, source_db, target_db) -> None:
    """Creating and dropping our slot are the writes pg2rds owns: a read-only session may make them."""
    spec = parse_state({"spec": spec_for(source_db, target_db)}).spec
    credentials = get_credentials(spec.source, "source")
    slot = ensure_slot(spec.source, credentials, "pg2rds_readonly_test")
    assert slot.created
    assert drop_slot(spec.source, credentials, "pg2rds_readonly_test") == "dropped"
    assert source_db.execute("SELECT count(*) FROM pg_replication_slots") == [(0,)]


def test_a_verification_chunk_gives_up_on_a_table_a_ddl_holds(aws, source_db, target_db, ddl_lock) -> None:
    for db in (source_db, target_db):
        db.execute("CREATE TABLE orders (id bigint PRIMARY KEY, v text)")
        db.execute("INSERT INTO orders SELECT g, 'v' || g FROM generate_series(1, 100) g")
    state = parse_state({"spec": spec_for(source_db, target_db)})
    chunk = phases.plan_verification(state).chunks[0]
    ddl_lock("orders")

    check = Background(lambda: phases.verify_chunk(state.model_copy(update={"chunk": chunk})))

    assert check.finished_within(PATIENCE), "the chunk still waits for the DDL's lock"
    assert isinstance(check.error, SourceBusy), check.error
    message = str(check.error)
    assert "table public.orders is locked ACCESS EXCLUSIVE by pid" in message
    assert "LOCK TABLE orders IN ACCESS EXCLUSIVE MODE" in message  # what the holder is doing
    assert "lock_timeout" in message and "\n" not in message


def test_validate_source_gives_up_on_a_table_a_ddl_holds(aws, source_db, target_db, ddl_lock) -> None:
    """Measuring LOB sizes (limited LOB mode, the default) reads the tables: it too gives up rather than
    wait."""
    source_db.execute("CREATE TABLE docs (id int PRIMARY KEY, body text)")
    source_db.execute("INSERT INTO docs VALUES (1, 'hello')")
    state = parse_state({"spec": spec_for(source_db, target_db)})
    ddl_lock("docs")

    check = Background(lambda: phases.validate_source(state))

    assert check.finished_within(PATIENCE), "validate-source still waits for the DDL's lock"
    assert isinstance(check.error, SourceBusy), check.error
    assert "table public.docs is locked ACCESS EXCLUSIVE" in str(check.error)


def test_the_application_is_not_held_up_behind_a_read_waiting_for_a_lock(
    aws, source_db, target_db, ddl_lock
) -> None:
    """The point of it all. Comparing large objects reads two tables in one statement: it holds its lock on
    the first while it waits for the second, which a DDL holds. An application DDL on the first table then
    queues behind our read, and the application's INSERTs behind that DDL: they would wait as long as the
    unrelated DDL lasts. Our read gives up after the lock timeout, and they go through while that DDL still
    holds its table."""
    for db in (source_db, target_db):
        db.execute("CREATE TABLE a_pics (id int PRIMARY KEY, img oid)")
        db.execute("CREATE TABLE b_pics (id int PRIMARY KEY, img oid)")
    for table in ("a_pics", "b_pics"):
        source_db.execute(f"INSERT INTO {table} VALUES (1, lo_from_bytea(0, 'x'))")
    state = parse_state({"spec": spec_for(source_db, target_db)})
    unrelated_ddl = ddl_lock("b_pics")

    finish = Background(lambda: phases.finish_target(state))
    eventually(lambda: waiting_for_a_lock(source_db, "pg2rds-finish"), "pg2rds read waiting for b_pics")
    application_ddl = Background(lambda: source_db.execute("ALTER TABLE a_pics ADD COLUMN note text"))
    eventually(lambda: waiting_for_a_lock(source_db, ""), "application DDL queued behind pg2rds's read")
    application_insert = Background(lambda: source_db.execute("INSERT INTO a_pics VALUES (2, NULL)"))

    assert finish.finished_within(PATIENCE), "pg2rds's read still waits for the DDL's lock"
    assert isinstance(finish.error, SourceBusy), finish.error
    assert "table public.b_pics is locked ACCESS EXCLUSIVE" in str(finish.error)
    assert application_ddl.finished_within(PATIENCE) and application_ddl.error is None, application_ddl.error
    assert application_insert.finished_within(PATIENCE), "the application's INSERT is still held up"
    assert application_insert.error is None, application_insert.error
    assert unrelated_ddl.get_transaction_status() == psycopg2.extensions.TRANSACTION_STATUS_INTRANS
    assert source_db.execute("SELECT count(*) FROM a_pics") == [(2,)]
