"""The keys DMS's validation found different, read from its failures table on the target.

DMS writes a row to ``awsdms_validation_failures_v1`` in the control schema on the target when a record
fails validation or is suspended (User Guide, "AWS DMS data validation": ``TASK_NAME`` the last part of
the task ARN, ``TABLE_OWNER``, ``TABLE_NAME``, ``FAILURE_TIME``, ``KEY_TYPE``, ``KEY`` such as
``{"key": ["3451491"]}``, ``FAILURE_TYPE`` RECORD_DIFF, MISSING_SOURCE or MISSING_TARGET, ``DETAILS``).
Reads are bounded: a few keys per table, under a statement timeout; the table may not exist yet.
"""

import json
from collections.abc import Callable
from typing import Any

from psycopg2 import sql

from pg2rds.postgres.connection import connect
from pg2rds.secrets import Credentials
from pg2rds.spec import DatabaseRef

FAILURES_TABLE = "awsdms_validation_failures_v1"
STATEMENT_TIMEOUT_MS = 10_000

_KEYS = """
SELECT "KEY", min("FAILURE_TYPE"), max("FAILURE_TIME") AS latest, count(*) OVER ()
FROM {table}
WHERE "TASK_NAME" = %s AND "TABLE_OWNER" = %s AND "TABLE_NAME" = %s
GROUP BY "KEY"
ORDER BY latest DESC
LIMIT %s
"""


def render_key(text: str) -> str:
    """``{"key": ["3", "a"]}`` → ``3,a``; anything else as it is."""
    try:
        values = json.loads(text).get("key")
    except (ValueError, AttributeError):
        return text
    return ",".join(str(value) for value in values) if isinstance(values, list) else text


def failing_keys(
    conn: Any, control_schema: str, task_name: str, schema: str, table: str, limit: int
) -> tuple[list[str], int]:
    """(the ``limit`` keys that failed last, rendered ``FAILURE_TYPE key``; how many distinct keys failed)."""
    with conn.cursor() as cur:
        cur.execute("SET statement_timeout = %s", (STATEMENT_TIMEOUT_MS,))
        cur.execute("SELECT to_regclass(format('%%I.%%I', %s, %s))", (control_schema, FAILURES_TABLE))
        if cur.fetchone()[0] is None:
            return [], 0
        cur.execute(
            sql.SQL(_KEYS).format(table=sql.Identifier(control_schema, FAILURES_TABLE)),
            (task_name, schema, table, limit),
        )
        rows = cur.fetchall()
    return [f"{kind} {render_key(key)}" for key, kind, _, _ in rows], (rows[0][3] if rows else 0)


class FailureReader:
    """Reads failing keys table by table (one short connection each; a poll reads a few tables at most)."""

    def __init__(
        self, ref: DatabaseRef, credentials: Callable[[], Credentials], control_schema: str, task_name: str
    ) -> None:
        self.ref, self.credentials = ref, credentials  # read only when a table differs
        self.control_schema, self.task_name = control_schema, task_name

    def __call__(self, schema: str, table: str, limit: int) -> tuple[list[str], int]:
        with connect(self.ref, self.credentials(), "target", application_name="pg2rds-poll") as conn:
            return failing_keys(conn, self.control_schema, self.task_name, schema, table, limit)
