"""ensure_endpoints: the secret names the server (nothing else does), slot and heartbeat settings, reuse and
conflicts; and the local DMS refuses a secret given together with clear-text connection values."""

import json

import boto3
import pytest
from botocore.exceptions import ClientError
from conftest import REGION, make_secret

from pg2rds.dms.endpoints import ensure_endpoints
from pg2rds.errors import ResourceConflict
from pg2rds.naming import OWNER_TAG, ResourceNames
from pg2rds.spec import parse_spec
from pg2rds.state import SourceReport, TargetReport
from pg2rds_emulator import moto_dms

ROLE = "arn:aws:iam::123456789012:role/pg2rds-dms-secrets-access"
SCRIPT = "SET session_replication_role = replica"


@pytest.fixture
def dms(aws):
    moto_dms.install(moto_dms.FakeEngine())
    return boto3.client("dms", region_name=REGION)


@pytest.fixture
def sent(dms) -> list[dict]:
    """Every CreateEndpoint request as botocore sent it."""
    calls: list[dict] = []
    dms.meta.events.register(
        "provide-client-params.dms.CreateEndpoint",
        lambda params, **_: calls.append(json.loads(json.dumps(params))),
    )
    return calls


def make_spec(migration_type: str = "full-load-and-cdc", migration_id: str = "orders"):
    return parse_spec(
        {
            "migration_id": migration_id,
            "migration_type": migration_type,
            "source": {
                "secret_arn": make_secret("src_user", "src-secret-password", host="src.example", port=5433),
                "database": "shop",
                "ssl_mode": "verify-full",
            },
            "target": {
                "secret_arn": make_secret(
                    "tgt_user", "tgt-secret-password", host="tgt.example", dbname="shop_rds"
                ),
            },
            "tags": {"cost-center": "42"},
        }
    )


def report(script: str = SCRIPT) -> tuple[SourceReport, TargetReport]:
    """What validate-source and prep-target found: the databases the secrets (or the spec) name."""
    source = SourceReport(
        host="src.example", port=5433, database="shop", server_version="16.3", server_version_num=160003
    )
    target = TargetReport(
        host="tgt.example",
        port=5432,
        database="shop_rds",
        server_version="16.3",
        server_version_num=160003,
        after_connect_script=script,
    )
    return source, target


def endpoints_by_type(dms) -> dict[str, dict]:
    return {e["EndpointType"].lower(): e for e in dms.describe_endpoints()["Endpoints"]}


def test_creates_both_endpoints_with_secrets_and_no_password(dms, sent) -> None:
    spec = make_spec()
    state = ensure_endpoints(dms, spec, *report(), ROLE)

    names = ResourceNames("orders")
    found = endpoints_by_type(dms)
    source, target = found["source"], found["target"]
    assert (source["EndpointIdentifier"], source["EndpointArn"]) == (names.source_endpoint, state.source_arn)
    assert (target["EndpointIdentifier"], target["EndpointArn"]) == (names.target_endpoint, state.target_arn)
    assert state.slot_name == names.slot == "pg2rds_orders"
    assert (source["EngineName"], source["DatabaseName"]) == ("postgres", "shop")
    assert target["DatabaseName"] == "shop_rds"
    assert source["SslMode"] == "verify-full" and target["SslMode"] == "require"
    assert source["PostgreSQLSettings"] == {
        "SecretsManagerSecretId": spec.source.secret_arn,
        "SecretsManagerAccessRoleArn": ROLE,
        "MapBooleanAsBoolean": True,
        "SlotName": "pg2rds_orders",
        "CaptureDdls": False,
        "FailTasksOnLobTruncation": True,
        "HeartbeatEnable": True,
        "HeartbeatFrequency": 5,
        "PluginName": "no-preference",
    }
    assert target["PostgreSQLSettings"] == {
        "SecretsManagerSecretId": spec.target.secret_arn,
        "SecretsManagerAccessRoleArn": ROLE,
        "MapBooleanAsBoolean": True,
        "AfterConnectScript": SCRIPT,
    }
    # neither credentials nor the server in any request: DMS reads them from the secrets, and the API
    # reference forbids giving UserName, Password, ServerName or Port together with a secret
    assert len(sent) == 2
    for params in sent:
        text = json.dumps(params)
        for name in ("Password", "Username", "ServerName", "Port"):
            assert f'"{name}"' not in text
        assert "secret-password" not in text and "src_user" not in text and "tgt_user" not in text
    for endpoint in (source, target):
        tags = dms.list_tags_for_resource(ResourceArn=endpoint["EndpointArn"])["TagList"]
        assert {t["Key"]: t["Value"] for t in tags} == {OWNER_TAG: "orders", "cost-center": "42"}


def test_full_load_source_has_no_heartbeat_and_empty_script_is_omitted(dms) -> None:
    ensure_endpoints(dms, make_spec("full-load"), *report(script=""), ROLE)
    found = endpoints_by_type(dms)
    assert "HeartbeatEnable" not in found["source"]["PostgreSQLSettings"]
    assert found["source"]["PostgreSQLSettings"]["SlotName"] == "pg2rds_orders"
    assert found["source"]["PostgreSQLSettings"]["FailTasksOnLobTruncation"] is True
    assert "AfterConnectScript" not in found["target"]["PostgreSQLSettings"]


def test_second_call_reuses_the_endpoints(dms, sent) -> None:
    spec = make_spec()
    first = ensure_endpoints(dms, spec, *report(), ROLE)
    second = ensure_endpoints(dms, spec, *report(), ROLE)
    assert second == first
    assert len(dms.describe_endpoints()["Endpoints"]) == 2
    assert len(sent) == 2  # nothing was created the second time


def test_another_migrations_endpoints_are_left_alone(dms) -> None:
    ensure_endpoints(dms, make_spec(migration_id="orders"), *report(), ROLE)
    ensure_endpoints(dms, make_spec(migration_id="billing"), *report(), ROLE)
    identifiers = sorted(e["EndpointIdentifier"] for e in dms.describe_endpoints()["Endpoints"])
    assert identifiers == [
        "pg2rds-billing-source", "pg2rds-billing-target", "pg2rds-orders-source", "pg2rds-orders-target",
    ]  # fmt: skip


def test_refuses_a_same_named_endpoint_without_our_tag(dms) -> None:
    foreign = dms.create_endpoint(
        EndpointIdentifier=ResourceNames("orders").source_endpoint,
        EndpointType="source",
        EngineName="postgres",
        ServerName="elsewhere.example",
        Port=5432,
        DatabaseName="other",
    )["Endpoint"]
    with pytest.raises(ResourceConflict, match="source endpoint pg2rds-orders-source already exists"):
        ensure_endpoints(dms, make_spec(), *report(), ROLE)
    [endpoint] = dms.describe_endpoints()["Endpoints"]
    assert endpoint["EndpointArn"] == foreign["EndpointArn"]
    assert endpoint["ServerName"] == "elsewhere.example"


@pytest.mark.parametrize(
    "clear_text",
    [{"ServerName": "db.example"}, {"Port": 5432}, {"Username": "app"}, {"Password": "pw"}],
)
def test_local_dms_refuses_a_secret_with_clear_text_values(dms, clear_text) -> None:
    """PostgreSQLSettings: "You can't specify both" (the secret and its role, or clear-text values)."""
    secret = make_secret("app", "pw", host="db.example")
    with pytest.raises(ClientError) as raised:
        dms.create_endpoint(
            EndpointIdentifier="both",
            EndpointType="source",
            EngineName="postgres",
            DatabaseName="app",
            PostgreSQLSettings={"SecretsManagerSecretId": secret, "SecretsManagerAccessRoleArn": ROLE},
            **clear_text,
        )
    assert raised.value.response["Error"]["Code"] == "InvalidParameterCombinationException"
    assert next(iter(clear_text)) in raised.value.response["Error"]["Message"]
    assert dms.describe_endpoints()["Endpoints"] == []
