"""The one replication slot this migration owns on the source: created before the task, dropped after.

Creating and dropping it are the only writes pg2rds ever makes to the source. pg2rds creates the slot
itself (DMS's ``SlotName`` names "a previously created logical replication slot") so that it is ours from
the first moment: recorded in the state, named for the migration, and handed to DMS on the source
endpoint. DMS leaves the slot behind when a task is deleted, and a forgotten slot makes the source keep
WAL until its disk fills, so cleanup must drop it; but only the slot named for this migration, in this
database, never another, and never one still in use.
"""

from typing import Any, Literal

import psycopg2.errors
from psycopg2 import sql

from pg2rds.errors import ResourceBusy, ResourceConflict
from pg2rds.postgres.connection import SOURCE_LOCK_TIMEOUT_MS, SOURCE_STATEMENT_TIMEOUT_MS, connect
from pg2rds.postgres.sqltext import one_row
from pg2rds.secrets import Credentials
from pg2rds.spec import DatabaseRef
from pg2rds.state import SlotState

SlotOutcome = Literal["dropped", "absent", "active"]

#: The output plugin DMS decodes a PostgreSQL source with when it is given ``PluginName=test-decoding``
#: (the API's other choice, pglogical, is an extension the source may not have; pgoutput is not offered).
SLOT_PLUGIN = "test_decoding"
#: Creating a logical slot waits for every transaction open on the source to end (it needs a consistent
#: point). A Lambda must not wait for ever: give up after this long and let the state machine retry.
CREATE_TIMEOUT_MS = 60_000

_SLOT_QUERY = (
    "SELECT plugin::text, database::text, database = current_database(), active, active_pid, "
    "confirmed_flush_lsn::text FROM pg_replication_slots WHERE slot_name = %s"
)


def ensure_slot(ref: DatabaseRef, credentials: Credentials, slot_name: str) -> SlotState:
    """Create this migration's logical slot with :data:`SLOT_PLUGIN`, or reuse it if it is already ours.

    Ours means: our name, in our database, with our plugin, and no process reading it. A slot of that
    name anywhere else, with another plugin or in use is refused (:class:`ResourceConflict`), never
    adopted: it belongs to something else, or to an execution of this migration that is still running.
    """
    with (
        connect(ref, credentials, "source", application_name="pg2rds-create-slot") as conn,
        conn.cursor() as cur,
    ):
        cur.execute(_SLOT_QUERY, (slot_name,))
        row = cur.fetchone()
        if row is None:
            # it waits for those transactions through their locks: lock_timeout too, not only the statement's
            cur.execute("SET statement_timeout = %s; SET lock_timeout = %s", (CREATE_TIMEOUT_MS,) * 2)
            try:
                cur.execute(
                    "SELECT lsn::text FROM pg_create_logical_replication_slot(%s, %s)",
                    (slot_name, SLOT_PLUGIN),
                )
                (lsn,) = one_row(cur)
                return SlotState(name=slot_name, plugin=SLOT_PLUGIN, lsn=lsn, created=True)
            except (psycopg2.errors.QueryCanceled, psycopg2.errors.LockNotAvailable):
                raise ResourceBusy(
                    f"creating the replication slot {slot_name} on the source waits for the transactions "
                    "open there to end, and did not get a consistent point within "
                    f"{CREATE_TIMEOUT_MS // 1000} s. Fix: end long-running transactions on the source "
                    "(pg_stat_activity: state 'idle in transaction' or an old xact_start); the migration "
                    "retries by itself"
                ) from None
            except psycopg2.errors.DuplicateObject:
                cur.execute(
                    "SET statement_timeout = %s; SET lock_timeout = %s",
                    (SOURCE_STATEMENT_TIMEOUT_MS, SOURCE_LOCK_TIMEOUT_MS),
                )
                cur.execute(_SLOT_QUERY, (slot_name,))
                row = cur.fetchone()
                if row is None:
                    raise
        return _reuse(slot_name, row)


def _reuse(slot_name: str, row: tuple) -> SlotState:
    plugin, database, ours, active, pid, lsn = row
    fix = (
        "if no migration with this migration_id runs any more, run its cleanup (or drop the slot: "
        f"SELECT pg_drop_replication_slot('{slot_name}')), then start again; otherwise use another "
        "migration_id"
    )
    if not ours:
        raise ResourceConflict(
            f"a replication slot named {slot_name} already exists on the source cluster, in database "
            f"{database!r}: slot names are per cluster, and it is not this migration's. Fix: {fix}"
        )
    if plugin != SLOT_PLUGIN:
        raise ResourceConflict(
            f"the replication slot {slot_name} already exists on the source with the plugin {plugin!r}, "
            f"not {SLOT_PLUGIN!r} (left by an older pg2rds or made by someone else). Fix: {fix}"
        )
    if active:
        raise ResourceConflict(
            f"the replication slot {slot_name} already exists on the source and is being read (pid {pid}): "
            "another execution of this migration is replicating. Fix: let it finish or abort it; never "
            "drop a slot in use"
        )
    return SlotState(name=slot_name, plugin=plugin, lsn=lsn, created=False)


def drop_slot(ref: DatabaseRef, credentials: Credentials, slot_name: str) -> SlotOutcome:
    """Drop ``slot_name`` in the source database if it exists and no process is using it.

    ``active`` means a walsender still holds the slot (DMS has not let go yet): the caller retries later.
    The check and the drop are one statement, so a slot that becomes active in between is not dropped;
    one that a walsender takes in the instant between the statement's read of pg_replication_slots and
    its drop makes the drop fail ("replication slot ... is active for PID ..."): that is "active" too (a
    DMS task that was still stopping may read it once more), not a slot that cannot be dropped.
    """
    with connect(ref, credentials, "source", application_name="pg2rds-cleanup") as conn, conn.cursor() as cur:
        cur.execute(
            "SELECT active FROM pg_replication_slots WHERE slot_name = %s AND database = current_database()",
            (slot_name,),
        )
        row = cur.fetchone()
        if row is None:
            return "absent"
        if row[0]:
            return "active"
        try:
            cur.execute(
                "SELECT count(pg_drop_replication_slot(slot_name)) FROM pg_replication_slots "
                "WHERE slot_name = %s AND database = current_database() AND NOT active",
                (slot_name,),
            )
        except psycopg2.errors.ObjectInUse:
            return "active"
        (dropped,) = one_row(cur)
        return "dropped" if dropped else "active"


def drop_slot_statement(slot_name: str) -> str:
    """The SQL an operator runs to drop the slot by hand: like :func:`drop_slot`, only the slot of that
    name in the database it is run in, never one being read, and nothing when it is already gone."""
    return (
        "SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots "
        f"WHERE slot_name = '{slot_name}' AND database = current_database() AND NOT active;"
    )


def drop_publication(ref: DatabaseRef, credentials: Credentials, name: str) -> Literal["dropped", "absent"]:
    """Drop the publication named for this migration, left by an older pg2rds whose local DMS stand-in
    decoded pgoutput (which needs one). Nothing creates it any more; cleanup still removes such leftovers.

    Only the exact name derived from the migration id is touched; a publication is no use once its slot
    is gone, and leaving it would be the one trace of the migration on the source.
    """
    with connect(ref, credentials, "source", application_name="pg2rds-cleanup") as conn, conn.cursor() as cur:
        cur.execute("SELECT 1 FROM pg_publication WHERE pubname = %s", (name,))
        if cur.fetchone() is None:
            return "absent"
        # the session is read-only (pg2rds writes nothing else to the source): this one transaction is not
        cur.execute(
            sql.SQL("BEGIN READ WRITE; DROP PUBLICATION IF EXISTS {}; COMMIT").format(sql.Identifier(name))
        )
        return "dropped"


#: Bytes of a WAL page's header (64-bit builds): the long one opens each segment, the short one each page.
LONG_PAGE_HEADER = 40
SHORT_PAGE_HEADER = 24


def end_of_wal(insert_lsn: int, block_size: int, segment_size: int) -> int:
    """The end of the last WAL record before the insert position ``insert_lsn``.

    The insert position is where the next record will start: past the next page's header when the last
    record ended on a page boundary. A consumer confirms the end of what it applied (a commit's end, the
    last record the walsender read), the boundary then, and on a source nobody writes to any more would
    not reach the header's end until the next WAL record (the background writer's, up to 15 s later). No
    record ends inside a page header, so a position right after one is the boundary before it."""
    if insert_lsn % segment_size == LONG_PAGE_HEADER:
        return insert_lsn - LONG_PAGE_HEADER
    if insert_lsn % block_size == SHORT_PAGE_HEADER:
        return insert_lsn - SHORT_PAGE_HEADER
    return insert_lsn


def lsn_text(lsn: int) -> str:
    """An LSN as PostgreSQL prints it (``16/B374D848``)."""
    return f"{lsn >> 32:X}/{lsn & 0xFFFFFFFF:X}"


def current_wal_lsn(ref: DatabaseRef, credentials: Credentials) -> str:
    """The source's WAL position now: at cutover, everything the application wrote lies before it.

    From the insert position, not ``pg_current_wal_lsn()`` (how far WAL is written): with
    synchronous_commit off a commit returns before its WAL is written, so the write position can lie
    before the application's last commit, and a slot confirming it would prove nothing about that commit.
    """
    with connect(ref, credentials, "source", application_name="pg2rds-cutover") as conn, conn.cursor() as cur:
        return lsn_text(wal_end(cur))


def wal_end(cur: Any) -> int:
    """The end of the server's last WAL record (:func:`end_of_wal`), as a number."""
    cur.execute(
        "SELECT (pg_current_wal_insert_lsn() - '0/0'::pg_lsn)::bigint, "
        "current_setting('wal_block_size')::int, pg_size_bytes(current_setting('wal_segment_size'))"
    )
    insert_lsn, block_size, segment_size = one_row(cur)
    return end_of_wal(int(insert_lsn), int(block_size), int(segment_size))


def slot_has_confirmed(ref: DatabaseRef, credentials: Credentials, slot_name: str, lsn: str) -> bool:
    """Whether the replication has applied (and confirmed to the slot) every change up to ``lsn``.

    This, not a latency figure sampled once a minute, is what proves the target holds the application's
    last write: the consumer only confirms a position once the changes before it are applied.
    """
    with connect(ref, credentials, "source", application_name="pg2rds-cutover") as conn, conn.cursor() as cur:
        cur.execute(
            "SELECT confirmed_flush_lsn >= %s::pg_lsn FROM pg_replication_slots "
            "WHERE slot_name = %s AND database = current_database()",
            (lsn, slot_name),
        )
        row = cur.fetchone()
        return bool(row and row[0])
