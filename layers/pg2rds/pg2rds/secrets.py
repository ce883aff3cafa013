"""Database credentials from Secrets Manager.

The execution input carries only the secret's ARN: a password in the input would be written to the
execution history and CloudWatch for anyone with read access to see. The secret uses the RDS layout
(``{"username": ..., "password": ...}``), which is also what DMS reads through ``SecretsManagerSecretId``.
"""

import json
from dataclasses import dataclass, field

from aws_lambda_powertools.utilities import parameters

from pg2rds.errors import SecretUnusable


@dataclass(frozen=True)
class Credentials:
    username: str
    password: str = field(repr=False)


def get_credentials(secret_arn: str) -> Credentials:
    """Read and check a secret; cached for a few seconds by powertools across warm invocations."""
    try:
        raw = parameters.get_secret(secret_arn, max_age=30)
    except Exception as error:  # powertools wraps every botocore error in GetParameterError
        raise SecretUnusable(f"cannot read secret {secret_arn}: {error}") from None
    try:
        data = json.loads(raw)
        return Credentials(username=str(data["username"]), password=str(data["password"]))
    except (ValueError, KeyError, TypeError):
        raise SecretUnusable(
            f"secret {secret_arn} must be JSON with 'username' and 'password' keys"
        ) from None
