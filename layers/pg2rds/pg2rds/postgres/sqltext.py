"""Text that goes to or comes from a server: a quoted identifier for SQL we suggest or send in a protocol
command, and the server's own error message on one line.

Statements pg2rds runs are composed with ``psycopg2.sql``; :func:`quote_ident` is for the places that need
plain text: a fix suggested in a finding, a replication-protocol command.
"""

from typing import Any

import psycopg2.extensions


def quote_ident(name: str) -> str:
    """``name`` as a double-quoted SQL identifier (double quotes doubled), whatever it contains."""
    return '"' + name.replace('"', '""') + '"'


def server_message(error: BaseException, password: str = "") -> str:
    """The server's message on one line (``FATAL: ...``/``ERROR: ...``), never with the password.

    libpq puts its own text around a connection failure; the server's ``FATAL:`` line is what an operator
    needs, so it is picked out when there is no diagnostic record."""
    diag = getattr(error, "diag", None)
    primary = getattr(diag, "message_primary", None)
    if primary:
        message = f"{getattr(diag, 'severity', None) or 'ERROR'}: {primary}"
    else:
        text = str(error).strip()
        lines = [line.strip() for line in text.splitlines() if line.strip()]
        fatal = next((line for line in lines if "FATAL:" in line), None)
        if fatal:
            message = "FATAL: " + " ".join(fatal.split("FATAL:", 1)[1].split())
        else:
            message = " ".join(lines[0].split()) if lines else type(error).__name__
    if password:
        message = message.replace(password, "********")
    return message


def one_row(cursor: psycopg2.extensions.cursor) -> tuple[Any, ...]:
    """The row of a query that always returns exactly one (an aggregate, a function call)."""
    row = cursor.fetchone()
    if row is None:
        raise RuntimeError(f"expected one row, got none from: {cursor.query!r}")
    return row


class CountingCursor(psycopg2.extensions.cursor):
    """A cursor that counts the statements it sends, so reports can state their round trips honestly."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.queries = 0

    def execute(self, query: Any, vars: Any = None) -> None:
        self.queries += 1
        super().execute(query, vars)
