"""Opening connections to the source and the target: the one place either is connected to.

Errors name the side and carry the server's own message (for example "password authentication failed for
user ..."), which is what an operator needs, but never the password: libpq does not echo it back, and we
pass it as a keyword rather than inside a DSN string that could end up in a message.

The source is the application's production database, so every session pg2rds opens there is read-only
(``default_transaction_read_only``: a write fails with "cannot execute ... in a read-only transaction")
and bounded. ``lock_timeout``: a read waiting behind a DDL's ACCESS EXCLUSIVE lock gives up instead of
waiting in the lock queue, where a later DDL (and every INSERT queued behind that DDL) would wait for it
in turn, and a statement holding locks on one table while waiting for another would hold up that table's
application sessions for as long as the DDL lasts. ``statement_timeout``: nothing pg2rds reads keeps its
locks, or runs on after its Lambda has gone, for longer than that. Both give :class:`SourceBusy`, which
the state machine retries. Creating and dropping this migration's replication slot, the one write pg2rds
owns, works in a read-only session (PostgreSQL counts neither as a write to the database).
"""

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import psycopg2
import psycopg2.errors
import psycopg2.extensions

from pg2rds.errors import SourceBusy, SourceUnreachable, TargetUnreachable
from pg2rds.secrets import Credentials
from pg2rds.spec import DatabaseRef
from pg2rds.tls import root_cert_file

CONNECT_TIMEOUT_SECONDS = 10
#: How long a source read waits for a lock before it gives up (``SourceBusy``, retried). Short: while it
#: waits, any session asking for a lock that conflicts with ours queues behind it.
SOURCE_LOCK_TIMEOUT_MS = 5_000
#: How long one source statement may run, below the default Lambda timeout (120 s), so that a statement
#: never runs on (holding its locks) after the Lambda that issued it has been stopped.
SOURCE_STATEMENT_TIMEOUT_MS = 100_000
#: The statement's start, in a SourceBusy message.
_STATEMENT_SHOWN = 120

#: The relations other sessions hold in ACCESS EXCLUSIVE mode (the only mode a read waits for) in this
#: database, with who holds them, since when and doing what: the answer to "busy with what?".
_EXCLUSIVE_HOLDERS = """
SELECT format('%I.%I', n.nspname, c.relname), c.relname, l.pid, a.state,
       extract(epoch FROM now() - a.xact_start)::int, coalesce(a.query, '')
FROM pg_locks l
JOIN pg_class c ON c.oid = l.relation
JOIN pg_namespace n ON n.oid = c.relnamespace
LEFT JOIN pg_stat_activity a ON a.pid = l.pid
WHERE l.locktype = 'relation' AND l.mode = 'AccessExclusiveLock' AND l.granted
  AND l.pid <> pg_backend_pid()
  AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())
ORDER BY a.xact_start NULLS LAST
LIMIT 20
"""


@contextmanager
def connect(
    ref: DatabaseRef,
    credentials: Credentials,
    side: str,
    application_name: str = "pg2rds",
    statement_timeout_ms: int = SOURCE_STATEMENT_TIMEOUT_MS,
) -> Iterator[psycopg2.extensions.connection]:
    """Connect to ``side`` ("source" or "target") where its secret says it is, with the spec's TLS mode;
    autocommit. A source session is read-only, with :data:`SOURCE_LOCK_TIMEOUT_MS` and
    ``statement_timeout_ms``; a lock or statement timeout in it is raised as :class:`SourceBusy`."""
    error_class = SourceUnreachable if side == "source" else TargetUnreachable
    try:
        conn = psycopg2.connect(
            host=credentials.host,
            port=credentials.port,
            dbname=credentials.database,
            user=credentials.username,
            password=credentials.password,
            sslmode=ref.libpq_sslmode,
            sslrootcert=root_cert_file(ref, side),  # None (left out) unless verifying
            connect_timeout=CONNECT_TIMEOUT_SECONDS,
            application_name=application_name,
        )
    except psycopg2.OperationalError as error:
        message = str(error).strip().replace("\n", " ")
        raise error_class(
            f"cannot connect to the {side} database {credentials.database!r} at "
            f"{credentials.host}:{credentials.port} as {credentials.username!r}: {message}"
        ) from None
    conn.autocommit = True
    try:
        if side != "source":
            yield conn
            return
        _read_only_and_bounded(conn, statement_timeout_ms)
        try:
            yield conn
        except (psycopg2.errors.LockNotAvailable, psycopg2.errors.QueryCanceled) as error:
            if getattr(error.cursor, "connection", None) is not conn:
                raise  # the target's, in a block that holds both
            raise SourceBusy(_busy_message(conn, error, statement_timeout_ms)) from None
    finally:
        conn.close()


def _read_only_and_bounded(conn: psycopg2.extensions.connection, statement_timeout_ms: int) -> None:
    """Set the session up with SET rather than the startup ``options``, which connection poolers such as
    PgBouncer refuse; one round trip."""
    with conn.cursor() as cur:
        cur.execute(
            "SET default_transaction_read_only = on; SET lock_timeout = %s; SET statement_timeout = %s",
            (SOURCE_LOCK_TIMEOUT_MS, statement_timeout_ms),
        )


def _busy_message(conn: psycopg2.extensions.connection, error: Exception, statement_timeout_ms: int) -> str:
    """One line: which table was busy (or which statement ran too long), why, and that it is retried."""
    statement = _statement(error)
    if isinstance(error, psycopg2.errors.LockNotAvailable) or "lock timeout" in str(error):
        holders = _exclusive_holders(conn, statement)
        return (
            f"the source was busy: {holders}, and pg2rds gave up waiting for it after "
            f"{SOURCE_LOCK_TIMEOUT_MS // 1000} s (lock_timeout) rather than hold up the sessions queued "
            f"behind it; retried (statement: {statement})"
        )
    reason = "statement_timeout" if "statement timeout" in str(error) else "cancelled on the server"
    return (
        f"the source was busy: a read ran longer than {statement_timeout_ms // 1000} s and was stopped "
        f"({reason}), so it holds no lock on the source any more; retried (statement: {statement})"
    )


def _statement(error: Exception) -> str:
    cursor = getattr(error, "cursor", None)
    query = getattr(cursor, "query", None) or b""
    text = " ".join(query.decode(errors="replace").split()) if isinstance(query, bytes) else str(query)
    return text if len(text) <= _STATEMENT_SHOWN else text[:_STATEMENT_SHOWN] + "…"


def _exclusive_holders(conn: psycopg2.extensions.connection, statement: str) -> str:
    """Who holds the ACCESS EXCLUSIVE lock the statement waited for: among the relations locked so, those
    the statement names (else all of them, at most three)."""
    try:
        with conn.cursor() as cur:
            cur.execute(_EXCLUSIVE_HOLDERS)
            rows: list[Any] = cur.fetchall()
    except psycopg2.Error:
        rows = []
    named = [row for row in rows if row[1] in statement]
    shown = (named or rows)[:3]
    if not shown:
        return "a table it reads was locked (the lock is gone now)"
    return "; ".join(_holder(relation, *rest) for relation, _, *rest in shown)


def _holder(relation: str, pid: int, state: str | None, seconds: int | None, query: str) -> str:
    doing = " ".join(query.split())[:80]
    since = f" for {seconds} s" if seconds is not None else ""
    what = f", {state}: {doing}" if doing and state else ""
    return f"table {relation} is locked ACCESS EXCLUSIVE by pid {pid}{since}{what}"
