"""The password of a DSN that does not carry one: the one libpq finds for it.

A DSN given on pg2rds's command line need not carry its password, and should not (``ps`` shows every
local user a command line). libpq then finds it in ``PGPASSWORD``, ``PGPASSFILE`` or ``~/.pgpass``; the
commands that hand credentials on (to a secret in the embedded account, to the layer's checks) read it
back from a connection, as libpq resolved it, rather than repeat libpq's rules.
"""

from contextlib import closing

import psycopg2
from psycopg2.extensions import parse_dsn


def password_of(dsn: str) -> str:
    """The DSN's password or, when it has none, the one libpq finds for it (an empty one when the server
    asks for none)."""
    password = parse_dsn(dsn).get("password")
    if password is not None:
        return password
    with closing(psycopg2.connect(dsn, connect_timeout=10)) as conn:
        return conn.info.password or ""
