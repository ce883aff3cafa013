"""Passwords for libpq's command-line tools without putting them on a command line.

Every local user can read any process's command line (``/proc/PID/cmdline``, ``ps``), so ``pg_dump -d
postgresql://user:password@host/db`` shows the password to all of them, and to any traceback that prints
the command. libpq reads it from a password file instead (``PGPASSFILE``, "The Password File" in the
PostgreSQL documentation): one written here for one command, readable only by us, removed afterwards.
"""

import os
import tempfile
from collections.abc import Iterator, Mapping
from contextlib import contextmanager

from psycopg2.extensions import make_dsn, parse_dsn


def without_password(dsn: str) -> tuple[str, str | None]:
    """The DSN with its password removed (as key=value pairs), and the password (None if it had none)."""
    parts = parse_dsn(dsn)
    password = parts.pop("password", None)
    return make_dsn(**parts), password


def _escape(field: str) -> str:
    return field.replace("\\", "\\\\").replace(":", "\\:")


def any_server_line(password: str) -> str:
    """A password file's line giving ``password`` for any host, port, database and user."""
    return f"*:*:*:*:{_escape(password)}\n"


@contextmanager
def password_env(password: str | None, base: Mapping[str, str] | None = None) -> Iterator[dict[str, str]]:
    """The environment for one libpq tool: ``base`` (this process's environment by default) with
    ``PGPASSFILE`` holding ``password`` for any server (the command names exactly one). Without a password
    the environment is ``base``, so libpq looks the password up as usual (``PGPASSWORD``, ``~/.pgpass``)."""
    base = dict(os.environ if base is None else base)
    if password is None:
        yield base
        return
    # PGPASSWORD would win over the file
    env = {key: value for key, value in base.items() if key != "PGPASSWORD"}
    descriptor, path = tempfile.mkstemp(prefix="pg2rds-", suffix=".pgpass")  # mode 0600, as libpq requires
    try:
        with os.fdopen(descriptor, "w") as file:
            file.write(any_server_line(password))
        yield {**env, "PGPASSFILE": path}
    finally:
        os.unlink(path)
