"""boto3 clients shared by warm invocations, and AWS errors turned into named errors.

Clients are built once per process (building one costs tens of milliseconds of a cold start). botocore's
own retries (standard mode: exponential backoff with jitter) absorb short bursts of throttling; what is
still throttled after them becomes :class:`AwsThrottled`, which the state machine retries with a longer
backoff than a Lambda should sleep. Standard, not adaptive, mode: adaptive adds a client-side rate limiter
that "assumes that the client is working against a single resource" (AWS SDK for Java, ``RetryMode``),
while one DMS client here calls many, and the limiter's learning needs a longer-lived client than a short
invocation's.

:func:`named_error` is the one mapping from an AWS error to a named error, whichever client raised it
(DMS, DynamoDB, CloudWatch, Secrets Manager through the powertools cache): every handler runs inside
:func:`named_aws_errors`, and :mod:`pg2rds.secrets` unwraps powertools' error to apply it.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from functools import cache
from typing import TYPE_CHECKING, Any, Literal, overload

import boto3
from botocore.config import Config
from botocore.exceptions import ClientError

from pg2rds.errors import AwsThrottled, Pg2RdsError, ResourceBusy

if TYPE_CHECKING:  # boto3-stubs (a dev dependency): every response the layer reads is type-checked
    from mypy_boto3_cloudwatch import CloudWatchClient
    from mypy_boto3_dms import DatabaseMigrationServiceClient
    from mypy_boto3_dynamodb import DynamoDBClient
    from mypy_boto3_secretsmanager import SecretsManagerClient
    from mypy_boto3_sns import SNSClient
    from mypy_boto3_stepfunctions import SFNClient

#: Error codes AWS services answer when they throttle: botocore's own list (``ThrottledRetryableChecker`` in
#: botocore/retries/standard.py) minus the codes that mean something else for the services we call
#: (``LimitExceededException`` is a quota, ``TransactionInProgressException`` a conflict).
THROTTLING_CODES = frozenset(
    {
        "Throttling",
        "ThrottlingException",
        "ThrottledException",
        "RequestThrottledException",
        "RequestThrottled",
        "TooManyRequestsException",
        "ProvisionedThroughputExceededException",
        "RequestLimitExceeded",
        "BandwidthLimitExceeded",
        "SlowDown",
        "EC2ThrottledException",
    }
)
_BUSY = {"InvalidResourceStateFault"}
#: botocore's attempts per call, the first included (five retries), before a throttled call becomes
#: AwsThrottled. ``total_max_attempts``: botocore's ``max_attempts`` counts retries only.
MAX_ATTEMPTS = 6


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
    retries = {"mode": "standard", "total_max_attempts": MAX_ATTEMPTS}
    return boto3.client(service, config=Config(retries=retries))  # type: ignore[call-overload,arg-type]


def error_code(error: ClientError) -> str:
    return error.response.get("Error", {}).get("Code", "")


def error_message(error: ClientError) -> str:
    return error.response.get("Error", {}).get("Message", str(error))


def named_error(error: ClientError) -> Pg2RdsError | None:
    """The named error the ASL ``Retry`` matches for an AWS error, or None when it has no name of ours."""
    code = error_code(error)
    operation = getattr(error, "operation_name", "") or "the request"
    if code in THROTTLING_CODES:
        return AwsThrottled(f"AWS throttled {operation} ({code}): {error_message(error)}")
    if code in _BUSY:
        return ResourceBusy(f"{code}: {error_message(error)}")
    return None


@contextmanager
def named_aws_errors() -> Iterator[None]:
    """Re-raise throttling and resource-state conflicts under names the ASL ``Retry`` matches."""
    try:
        yield
    except ClientError as error:
        named = named_error(error)
        if named is None:
            raise
        raise named from None
