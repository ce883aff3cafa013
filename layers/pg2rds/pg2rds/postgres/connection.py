"""Opening connections to the source and the target.

Errors name the side and carry the server's own message (for example "password authentication failed for
user ..."), which is what an operator needs, but never the password: libpq does not echo it back, and we
pass it as a keyword rather than inside a DSN string that could end up in a message.
"""

from collections.abc import Iterator
from contextlib import contextmanager

import psycopg2
import psycopg2.extensions

from pg2rds.errors import SourceUnreachable, TargetUnreachable
from pg2rds.secrets import Credentials
from pg2rds.spec import DatabaseRef
from pg2rds.tls import root_cert_file

CONNECT_TIMEOUT_SECONDS = 10


@contextmanager
def connect(
    ref: DatabaseRef, credentials: Credentials, side: str, application_name: str = "pg2rds"
) -> Iterator[psycopg2.extensions.connection]:
    """Connect to ``side`` ("source" or "target") where its secret says it is, with the spec's TLS mode;
    autocommit, read-only statements are the norm."""
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
        yield conn
    finally:
        conn.close()
