"""Database servers and credentials from Secrets Manager: the secret is the server.

The execution input carries only the secret's ARN: a password in the input would be written to the
execution history and CloudWatch for anyone with read access to see. The secret holds what DMS reads
through ``SecretsManagerSecretId`` and what RDS and Secrets Manager write for a database: ``host``,
``port``, ``username``, ``password``, and optionally ``dbname`` (Secrets Manager's "JSON structure of
database credential secrets"; ``port`` may be a number or a string there).

Host and port come only from the secret, for the functions here as for DMS. A spec that also names them
(or the database) must agree with the secret, or the migration is :class:`SpecInvalid` before anything
connects: otherwise anyone allowed to start an execution could point a stored secret at a server of
their choosing and have its password, and then its data, sent there. RDS-managed master user secrets hold
only ``username`` and ``password``; DMS cannot use them (AWS DMS User Guide, "Using secrets to access AWS
Database Migration Service endpoints"), so they are refused with that advice.

Every secret the functions read (a database's, a CA bundle's) goes through :func:`read_secret`: the
powertools cache, on this package's Secrets Manager client (:func:`pg2rds.aws.client`, the same retry
configuration as every other client), and AWS errors named as everywhere else (a throttled read is
:class:`AwsThrottled`, retried by the state machine, not an unusable secret).
"""

import json
from dataclasses import dataclass, field
from functools import cache
from typing import Any

from aws_lambda_powertools.utilities.parameters import SecretsProvider
from aws_lambda_powertools.utilities.parameters.exceptions import GetParameterError
from botocore.exceptions import ClientError

from pg2rds.aws import client, named_error
from pg2rds.errors import SecretUnusable, SpecInvalid
from pg2rds.spec import DatabaseRef

REQUIRED_KEYS = ("host", "port", "username", "password")


@dataclass(frozen=True)
class Credentials:
    """A database as its secret describes it: where it is and who logs in (the password is never printed)."""

    host: str
    port: int
    database: str
    username: str
    password: str = field(repr=False)

    @property
    def where(self) -> str:
        return f"{self.host}:{self.port}/{self.database}"


def get_credentials(ref: DatabaseRef, side: str) -> Credentials:
    """Read ``ref``'s secret and check the spec against it; cached for a few seconds across warm invocations.

    ``side`` ("source" or "target") names the spec's fields in errors."""
    data = _read(ref.secret_arn)
    missing = [key for key in REQUIRED_KEYS if data.get(key) in (None, "")]
    if missing:
        raise SecretUnusable(
            f"secret {ref.secret_arn} lacks {', '.join(missing)}: it must be JSON with host, port, username "
            "and password (and optionally dbname), the keys DMS reads from an endpoint's secret. An "
            "RDS-managed master user secret holds only username and password and cannot be used by DMS; "
            "create a migration user and a secret for it with the server's host and port"
        )
    port = _port(data["port"], ref.secret_arn)
    database = str(data.get("dbname") or ref.database or "")
    if not database:
        raise SpecInvalid(
            f"invalid migration spec: {side}.database is required: secret {ref.secret_arn} has no dbname"
        )
    credentials = Credentials(
        host=str(data["host"]),
        port=port,
        database=database,
        username=str(data["username"]),
        password=str(data["password"]),
    )
    _check_spec_matches(ref, side, credentials)
    return credentials


@cache
def _provider() -> SecretsProvider:
    return SecretsProvider(boto3_client=client("secretsmanager"))


def clear_cache() -> None:
    """Forget every secret read (a new Lambda container starts with none)."""
    _provider().clear_cache()


def read_secret(secret_arn: str, what: str, max_age: int) -> str:
    """The secret's string, cached ``max_age`` seconds across warm invocations; ``what`` names it in errors.

    powertools wraps every error in ``GetParameterError`` (the ``ClientError`` is its context): a throttled
    or otherwise named AWS error is raised under its name, anything else means the secret is unusable."""
    try:
        value = _provider().get(secret_arn, max_age=max_age)
    except GetParameterError as error:
        cause = error.__cause__ or error.__context__
        named = named_error(cause) if isinstance(cause, ClientError) else None
        if named is not None:
            raise named from None
        raise SecretUnusable(f"cannot read {what} {secret_arn}: {error}") from None
    if not isinstance(value, str):
        raise SecretUnusable(f"{what} {secret_arn} must be a text secret (SecretString), not binary")
    return value


def _read(secret_arn: str) -> dict[str, Any]:
    raw = read_secret(secret_arn, "secret", max_age=30)
    try:
        data = json.loads(raw)
    except (ValueError, TypeError):
        data = None
    if not isinstance(data, dict):
        raise SecretUnusable(f"secret {secret_arn} must be a JSON object with host, port, username, password")
    return data


def _port(value: Any, secret_arn: str) -> int:
    try:
        port = int(value)
    except (TypeError, ValueError):
        port = 0
    if isinstance(value, bool) or not 1 <= port <= 65535:
        raise SecretUnusable(f"secret {secret_arn} has an invalid port {value!r}: expected 1-65535")
    return port


def _check_spec_matches(ref: DatabaseRef, side: str, credentials: Credentials) -> None:
    """Each server field the spec gives must be the secret's: a spec confirms the server, never chooses it."""
    mismatches = []
    if ref.host is not None and ref.host.lower() != credentials.host.lower():
        mismatches.append(f"{side}.host is {ref.host!r}")
    if ref.port is not None and ref.port != credentials.port:
        mismatches.append(f"{side}.port is {ref.port}")
    if ref.database is not None and ref.database != credentials.database:
        mismatches.append(f"{side}.database is {ref.database!r}")
    if mismatches:
        raise SpecInvalid(
            f"invalid migration spec: {' and '.join(mismatches)}, but secret {ref.secret_arn} is for "
            f"{credentials.where}. The server comes from the secret: leave host, port and database out of "
            "the spec, or name the secret of the server you mean"
        )
