"""One mapping from AWS errors to the names the state machine retries, whichever client raised them: DMS,
DynamoDB and CloudWatch through ``named_aws_errors``, Secrets Manager through the powertools cache."""

import json
import re
from pathlib import Path

import boto3
import pytest
from botocore.exceptions import ClientError
from moto.core.exceptions import JsonRESTError
from moto.secretsmanager.responses import SecretsManagerResponse

from pg2rds import aws, secrets
from pg2rds.errors import AwsThrottled, ResourceBusy, SecretUnusable

LAYER = Path(aws.__file__).resolve().parent


def client_error(code: str, operation: str = "DescribeReplicationTasks") -> ClientError:
    return ClientError({"Error": {"Code": code, "Message": "Rate exceeded"}}, operation)


@pytest.mark.parametrize(
    "code",
    ["Throttling", "ThrottlingException", "ThrottledException", "ProvisionedThroughputExceededException"],
)
def test_throttling_codes_are_awsthrottled(code: str) -> None:
    named = aws.named_error(client_error(code))
    assert isinstance(named, AwsThrottled)
    assert f"AWS throttled DescribeReplicationTasks ({code}): Rate exceeded" == str(named)


def test_a_resource_in_transition_is_resourcebusy_and_anything_else_keeps_its_own_error() -> None:
    assert isinstance(aws.named_error(client_error("InvalidResourceStateFault")), ResourceBusy)
    assert aws.named_error(client_error("AccessDeniedException")) is None
    with pytest.raises(ClientError), aws.named_aws_errors():
        raise client_error("AccessDeniedException")
    with pytest.raises(AwsThrottled), aws.named_aws_errors():
        raise client_error("ThrottlingException")


@pytest.fixture
def fresh_secret_cache(aws: None):
    """The layer's clients and secret cache built inside this test's moto account."""
    from pg2rds import aws as layer_aws

    layer_aws.client.cache_clear()
    secrets._provider.cache_clear()
    yield
    layer_aws.client.cache_clear()
    secrets._provider.cache_clear()


def test_a_throttled_secret_read_is_awsthrottled_not_an_unusable_secret(
    fresh_secret_cache, monkeypatch
) -> None:
    arn = boto3.client("secretsmanager").create_secret(Name="s", SecretString=json.dumps({"a": 1}))["ARN"]
    calls = []

    def throttled(response: SecretsManagerResponse) -> str:
        calls.append(1)
        raise JsonRESTError("ThrottlingException", "Rate exceeded")

    monkeypatch.setattr(SecretsManagerResponse, "get_secret_value", throttled)
    with pytest.raises(AwsThrottled, match=r"GetSecretValue \(ThrottlingException\)"):
        secrets.read_secret(arn, "secret", max_age=30)
    assert len(calls) == aws.MAX_ATTEMPTS  # botocore's own retries first


def test_a_missing_or_binary_secret_is_unusable(fresh_secret_cache) -> None:
    client = boto3.client("secretsmanager")
    with pytest.raises(
        SecretUnusable, match="cannot read secret arn:aws:secretsmanager:us-east-1:123456789012:"
    ):
        secrets.read_secret("arn:aws:secretsmanager:us-east-1:123456789012:secret:gone-AbCdEf", "secret", 30)
    binary = client.create_secret(Name="b", SecretBinary=b"\x00\x01")["ARN"]
    with pytest.raises(SecretUnusable, match="must be a text secret"):
        secrets.read_secret(binary, "secret", max_age=30)


def test_clients_and_secret_reads_are_made_in_one_place() -> None:
    """No module builds its own client or reads a secret past the mapping (a copy would drift from it)."""
    allowed = {
        r"boto3\.(client|resource|Session)\(": {"aws.py"},
        r"SecretsProvider\(|\bget_secret\(|utilities import parameters|parameters\.get_": {"secrets.py"},
        r"[\"'](Throttl\w*|TooManyRequests\w*|RequestLimitExceeded)[\"']": {"aws.py"},  # an error code
    }
    for path in LAYER.rglob("*.py"):
        text = path.read_text()
        for pattern, files in allowed.items():
            if re.search(pattern, text):
                assert path.name in files, f"{path.relative_to(LAYER)} matches {pattern}"
