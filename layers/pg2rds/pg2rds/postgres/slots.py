"""Dropping the one replication slot this migration owns on the source.

This is the only write pg2rds ever makes to the source. DMS leaves its slot behind when a task is
deleted, and a forgotten slot makes the source keep WAL forever until its disk fills, so cleanup must drop
it; but only the slot named for this migration, never another, and never one still in use.
"""

from typing import Literal

from psycopg2 import sql

from pg2rds.postgres.connection import connect
from pg2rds.postgres.sqltext import one_row
from pg2rds.secrets import Credentials
from pg2rds.spec import DatabaseRef

SlotOutcome = Literal["dropped", "absent", "active"]


def drop_slot(ref: DatabaseRef, credentials: Credentials, slot_name: str) -> SlotOutcome:
    """Drop ``slot_name`` in the source database if it exists and no process is using it.

    ``active`` means a walsender still holds the slot (DMS has not let go yet): the caller retries later.
    The check and the drop are one statement, so a slot that becomes active in between is not dropped.
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
        cur.execute(
            "SELECT count(pg_drop_replication_slot(slot_name)) FROM pg_replication_slots "
            "WHERE slot_name = %s AND database = current_database() AND NOT active",
            (slot_name,),
        )
        (dropped,) = one_row(cur)
        return "dropped" if dropped else "active"


def drop_publication(ref: DatabaseRef, credentials: Credentials, name: str) -> Literal["dropped", "absent"]:
    """Drop the publication named for this migration, if a pgoutput-based replication created one.

    Only the exact name derived from the migration id is touched; a publication is no use once its slot
    is gone, and leaving it would be the one trace of the migration on the source.
    """
    with connect(ref, credentials, "source", application_name="pg2rds-cleanup") as conn, conn.cursor() as cur:
        cur.execute("SELECT 1 FROM pg_publication WHERE pubname = %s", (name,))
        if cur.fetchone() is None:
            return "absent"
        cur.execute(sql.SQL("DROP PUBLICATION IF EXISTS {}").format(sql.Identifier(name)))
        return "dropped"


def current_wal_lsn(ref: DatabaseRef, credentials: Credentials) -> str:
    """The source's WAL position now: at cutover, everything the application wrote lies before it."""
    with connect(ref, credentials, "source", application_name="pg2rds-cutover") as conn, conn.cursor() as cur:
        cur.execute("SELECT pg_current_wal_lsn()::text")
        return one_row(cur)[0]


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
