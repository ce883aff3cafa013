"""``pg2rds check``: the pre-flight of a migration (validate-source and prepare-target in check mode), run
from a laptop against two DSNs, without AWS.

There is no secret store here, so the credentials come from the DSNs themselves (or, as libpq does, from
PGPASSWORD or ~/.pgpass when a DSN has no password). The spec's ``secret_arn`` fields are placeholders
that nothing reads: the layer is handed the credentials directly. Passwords are never printed: findings
name roles and servers, and connection errors carry the server's message, which libpq never fills with
the password.
"""

from pathlib import Path
from typing import Any

import psycopg2
from psycopg2.extensions import parse_dsn

from pg2rds.postgres.source_checks import validate_source
from pg2rds.postgres.target_prep import prepare_target
from pg2rds.secrets import Credentials
from pg2rds.spec import MigrationSpec, parse_spec
from pg2rds.state import SourceReport, TargetReport
from pg2rds_cli.passwords import password_of

#: Valid by the spec's pattern and never read: the check connects with the DSNs' credentials.
PLACEHOLDER_SECRET = "arn:aws:secretsmanager:local:000000000000:secret:pg2rds-check-{side}"
PLACEHOLDER_CERTIFICATE = "arn:aws:dms:local:000000000000:cert:pg2rds-check"


def credentials_from_dsn(dsn: str) -> Credentials:
    """Where a DSN points and who logs in, with the password libpq finds when the DSN has none
    (:func:`~pg2rds_cli.passwords.password_of`: ``PGPASSWORD``, ``~/.pgpass``). An empty password handed on
    explicitly would have kept libpq from looking: ``PGPASSWORD`` was ignored."""
    parts = parse_dsn(dsn)
    user = parts.get("user") or "postgres"
    try:
        password = password_of(dsn)
    except psycopg2.OperationalError:
        password = ""  # the check's own connection fails, naming the side (SourceUnreachable, ...)
    return Credentials(
        host=parts.get("host", ""),
        port=int(parts.get("port") or 5432),
        database=parts.get("dbname") or user,
        username=user,
        password=password,
    )


def _ssl_mode(dsn: str) -> str:
    """libpq's sslmode in the spec's terms; ``prefer`` (the default) and ``allow`` do not insist on TLS."""
    sslmode = parse_dsn(dsn).get("sslmode", "prefer")
    return "none" if sslmode in ("disable", "allow", "prefer") else sslmode


def check_spec(source_dsn: str, target_dsn: str, spec: dict[str, Any] | None) -> MigrationSpec:
    """The user's spec (or an empty one) in check mode, pointing at the two DSNs."""
    data = dict(spec or {})
    data.setdefault("migration_id", "check")
    data["mode"] = "check"
    for side, dsn in (("source", source_dsn), ("target", target_dsn)):
        data[side] = {"secret_arn": PLACEHOLDER_SECRET.format(side=side), "ssl_mode": _ssl_mode(dsn)}
        if data[side]["ssl_mode"] in ("verify-ca", "verify-full"):
            data[side].update(_ca_bundle(dsn))
    return parse_spec(data)


def _ca_bundle(dsn: str) -> dict[str, str]:
    """A verifying DSN's CA bundle, as libpq finds it (``sslrootcert``, else ``~/.postgresql/root.crt``);
    the DMS certificate is a placeholder, since the check creates no endpoint."""
    bundle = parse_dsn(dsn).get("sslrootcert") or str(Path.home() / ".postgresql" / "root.crt")
    return {"ssl_root_cert": str(Path(bundle).absolute()), "certificate_arn": PLACEHOLDER_CERTIFICATE}


def run_check(
    source_dsn: str, target_dsn: str, spec: dict[str, Any] | None
) -> tuple[SourceReport, TargetReport]:
    """Both reports, as the state machine's check would produce them; creates and changes nothing."""
    parsed = check_spec(source_dsn, target_dsn, spec)
    source, target = credentials_from_dsn(source_dsn), credentials_from_dsn(target_dsn)
    source_report = validate_source(parsed, source)
    return source_report, prepare_target(parsed, target, source_report, source_credentials=source)
