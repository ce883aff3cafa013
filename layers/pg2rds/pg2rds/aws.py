"""boto3 clients shared by warm invocations, and AWS errors turned into named errors.

Clients are built once per process (building one costs tens of milliseconds of a cold start). botocore's
own retries absorb short bursts of throttling; what is still throttled after them becomes
:class:`AwsThrottled`, which the state machine retries with a longer backoff than a Lambda should sleep.
"""

from collections.abc import Iterator
from contextlib import contextmanager
from functools import cache

import boto3
from botocore.config import Config
from botocore.exceptions import ClientError

from pg2rds.errors import AwsThrottled, ResourceBusy

_THROTTLING = {"Throttling", "ThrottlingException", "TooManyRequestsException", "RequestLimitExceeded"}
_BUSY = {"InvalidResourceStateFault"}


@cache
def client(service: str):
    return boto3.client(service, config=Config(retries={"mode": "adaptive", "max_attempts": 5}))


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
