"""ensure_endpoints: the secret names the server (nothing else does), slot and heartbeat settings, reuse and
conflicts; and the local DMS refuses a secret given together with clear-text connection values."""

import json

import boto3
import pytest
from botocore.exceptions import ClientError
from conftest import REGION, LocalCa, make_secret

from pg2rds.dms.endpoints import ensure_endpoints
from pg2rds.errors import ResourceConflict, SpecInvalid
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


@pytest.fixture(scope="module")
def ca_pem() -> str:
    return LocalCa.make("pg2rds unit-test CA").pem


@pytest.fixture
def certificate_arn(dms, ca_pem: str) -> str:
    """The source's CA imported into (the local) DMS, as the operator does once."""
    imported = dms.import_certificate(CertificateIdentifier="source-ca", CertificatePem=ca_pem)
    return imported["Certificate"]["CertificateArn"]


CA_BUNDLE_SECRET = "arn:aws:secretsmanager:us-east-1:123456789012:secret:pg2rds/ca-AbCdEf"


def make_spec(migration_type: str = "full-load-and-cdc", migration_id: str = "orders", certificate_arn=None):
    """A verify-full source (when a certificate is given) and a require target."""
    verify = {"ssl_mode": "verify-full", "ssl_root_cert": CA_BUNDLE_SECRET}
    verify["certificate_arn"] = certificate_arn
    return parse_spec(
        {
            "migration_id": migration_id,
            "migration_type": migration_type,
            "source": {
                "secret_arn": make_secret("src_user", "src-secret-password", host="src.example", port=5433),
                "database": "shop",
                **(verify if certificate_arn else {}),
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


def test_creates_both_endpoints_with_secrets_and_no_password(dms, sent, certificate_arn) -> None:
    spec = make_spec(certificate_arn=certificate_arn)
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
    assert source["CertificateArn"] == certificate_arn and "CertificateArn" not in target
    assert source["PostgreSQLSettings"] == {
        "SecretsManagerSecretId": spec.source.secret_arn,
        "SecretsManagerAccessRoleArn": ROLE,
        "MapBooleanAsBoolean": True,
        "SlotName": "pg2rds_orders",
        "CaptureDdls": False,
        "FailTasksOnLobTruncation": True,
        "HeartbeatEnable": True,
        "HeartbeatFrequency": 5,
        "PluginName": "test-decoding",
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


def test_full_load_source_has_no_slot_no_heartbeat_and_empty_script_is_omitted(dms) -> None:
    state = ensure_endpoints(dms, make_spec("full-load"), *report(script=""), ROLE)
    found = endpoints_by_type(dms)
    assert "HeartbeatEnable" not in found["source"]["PostgreSQLSettings"]
    assert "SlotName" not in found["source"]["PostgreSQLSettings"]
    assert "PluginName" not in found["source"]["PostgreSQLSettings"]
    assert state.slot_name == ""
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


def test_local_dms_imports_only_pem_certificates_and_endpoints_need_an_imported_one(dms, ca_pem) -> None:
    """ImportCertificate: "The certificate was not valid" is InvalidCertificateFault; an endpoint naming a
    certificate DMS does not have is refused."""
    with pytest.raises(ClientError) as raised:
        dms.import_certificate(CertificateIdentifier="junk", CertificatePem="not a certificate")
    assert raised.value.response["Error"]["Code"] == "InvalidCertificateFault"
    imported = dms.import_certificate(CertificateIdentifier="ca", CertificatePem=ca_pem)["Certificate"]
    assert imported["CertificateArn"].startswith("arn:aws:dms:us-east-1:123456789012:cert:")
    assert imported["CertificatePem"] == ca_pem and imported["CertificateIdentifier"] == "ca"
    with pytest.raises(ClientError) as raised:
        dms.import_certificate(CertificateIdentifier="ca", CertificatePem=ca_pem)
    assert raised.value.response["Error"]["Code"] == "ResourceAlreadyExistsFault"
    with pytest.raises(ClientError) as raised:
        dms.create_endpoint(
            EndpointIdentifier="x",
            EndpointType="source",
            EngineName="postgres",
            DatabaseName="app",
            SslMode="verify-full",
            CertificateArn=imported["CertificateArn"] + "X",
            PostgreSQLSettings={
                "SecretsManagerSecretId": make_secret("a", "b"),
                "SecretsManagerAccessRoleArn": ROLE,
            },
        )
    assert raised.value.response["Error"]["Code"] == "ResourceNotFoundFault"


@pytest.mark.parametrize(
    ("fields", "problem"),
    [
        ({"ssl_mode": "verify-full"}, "ssl_mode verify-full needs ssl_root_cert"),
        ({"ssl_mode": "verify-ca", "ssl_root_cert": "bundle.pem"}, "needs ssl_root_cert"),
        ({"ssl_mode": "require", "ssl_root_cert": "bundle.pem"}, "apply only with ssl_mode verify"),
        ({"certificate_arn": "arn:aws:dms:us-east-1:123456789012:cert:ABC"}, "apply only with ssl_mode"),
        ({"ssl_mode": "verify-full", "ssl_root_cert": "x", "certificate_arn": "arn:aws:acm:x"}, "pattern"),
    ],
)
def test_verifying_needs_a_ca_for_the_functions_and_for_dms(aws, fields, problem) -> None:
    data = {
        "migration_id": "orders",
        "source": {"secret_arn": CA_BUNDLE_SECRET, **fields},
        "target": {"secret_arn": CA_BUNDLE_SECRET},
    }
    with pytest.raises(SpecInvalid, match=problem):
        parse_spec(data)
