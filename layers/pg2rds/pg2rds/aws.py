"""boto3 clients shared by warm invocations, and AWS errors turned into named errors.

Clients are built once per process (building one costs tens of milliseconds of a cold start). botocore's
own retries absorb short bursts of throttling; what is still throttled after them becomes
:class:`AwsThrottled`, which the state machine retries with a longer backoff than a Lambda should sleep.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from functools import cache
from typing import TYPE_CHECKING, Any, Literal, overload

import boto3
from botocore.config import Config
from botocore.exceptions import ClientError

from pg2rds.errors import AwsThrottled, ResourceBusy

if TYPE_CHECKING:  # boto3-stubs (a dev dependency): every response the layer reads is type-checked
    from mypy_boto3_cloudwatch import CloudWatchClient
    from mypy_boto3_dms import DatabaseMigrationServiceClient
    from mypy_boto3_dynamodb import DynamoDBClient
    from mypy_boto3_secretsmanager import SecretsManagerClient
    from mypy_boto3_sns import SNSClient
    from mypy_boto3_stepfunctions import SFNClient

_THROTTLING = {"Throttling", "ThrottlingException", "TooManyRequestsException", "RequestLimitExceeded"}
_BUSY = {"InvalidResourceStateFault"}


@overload
def client(service: Literal["dms"]) -> DatabaseMigrationServiceClient: ...
@overload
def client(service: Literal["cloudwatch"]) -> CloudWatchClient: ...
@overload
def client(service: Literal["secretsmanager"]) -> SecretsManagerClient: ...
@overload
def client(service: Literal["stepfunctions"]) -> SFNClient: ...
@overload
def client(service: Literal["sns"]) -> SNSClient: ...
@overload
def client(service: Literal["dynamodb"]) -> DynamoDBClient: ...


@cache
def client(service: str) -> Any:
    """The process's client for ``service``, typed per service for mypy (boto3-stubs)."""
    return boto3.client(service, config=Config(retries={"mode": "adaptive", "max_attempts": 5}))  # type: ignore[call-overload]


def error_code(error: ClientError) -> str:
    return error.response.get("Error", {}).get("Code", "")


def error_message(error: ClientError) -> str:
    return error.response.get("Error", {}).get("Message", str(error))


@contextmanager
def named_aws_errors() -> Iterator[None]:
    """Re-raise throttling and resource-state conflicts under names the ASL ``Retry`` matches."""
    try:
        yield
    except ClientError as error:
        code = error_code(error)
        if code in _THROTTLING:
            raise AwsThrottled(f"AWS throttled the request ({code}): {error_message(error)}") from None
        if code in _BUSY:
            raise ResourceBusy(f"{code}: {error_message(error)}") from None
        raise
