"""The source and target endpoints, created the way the DMS API reference describes for secrets.

Each endpoint names its Secrets Manager secret and the role DMS assumes to read it
(``PostgreSQLSettings.SecretsManagerSecretId`` and ``SecretsManagerAccessRoleArn``), and nothing of what
the secret holds: "You can specify the values for this setting and SecretsManagerSecretId. Or you can
specify clear-text values for UserName, Password, ServerName, and Port. You can't specify both."
(PostgreSQLSettings, DMS API Reference). DMS reads host, port and the login from the secret; the
database (``DatabaseName``, which is not part of that choice) is the one validation found in the secret
or the spec, read from the phase reports since this function does not read secrets.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Final, Literal

from botocore.exceptions import ClientError

from pg2rds.aws import error_code
from pg2rds.dms.tags import find, require_owned, resource_tags
from pg2rds.naming import ResourceNames
from pg2rds.spec import DatabaseRef, MigrationSpec
from pg2rds.state import DatabaseReport, EndpointsState, SourceReport, TargetReport

if TYPE_CHECKING:
    from mypy_boto3_dms import DatabaseMigrationServiceClient
    from mypy_boto3_dms.type_defs import CreateEndpointMessageTypeDef, PostgreSQLSettingsTypeDef

#: WAL heartbeat interval (minutes) on a CDC source: keeps the slot's restart_lsn moving on an idle source.
HEARTBEAT_MINUTES = 5
#: The service model allows no-preference | test-decoding | pglogical. pg2rds creates the slot itself
#: (create-slot phase) with test_decoding, which every PostgreSQL ships, and tells DMS so: with
#: test_decoding DMS needs no publication on the source.
PLUGIN_NAME: Final = "test-decoding"


def source_settings(spec: MigrationSpec, access_role_arn: str) -> PostgreSQLSettingsTypeDef:
    names = ResourceNames(spec.migration_id)
    settings = _secret_settings(spec.source, access_role_arn)
    # DMS would otherwise create a DDL audit table and event triggers on the source: the source stays
    # untouched but for our slot, and the schema is created on the target before the load anyway.
    settings["CaptureDdls"] = False
    # In limited LOB mode DMS cuts a LOB longer than LobMaxSize and only logs a warning; with this set the
    # task fails instead, naming the table and column, so no value is ever truncated silently.
    settings["FailTasksOnLobTruncation"] = True
    if spec.uses_cdc:
        # the slot pg2rds created before the task ("a previously created logical replication slot")
        settings["SlotName"] = names.slot
        settings["PluginName"] = PLUGIN_NAME
        settings["HeartbeatEnable"] = True
        settings["HeartbeatFrequency"] = HEARTBEAT_MINUTES
    return settings


def target_settings(
    spec: MigrationSpec, target_report: TargetReport, access_role_arn: str
) -> PostgreSQLSettingsTypeDef:
    settings = _secret_settings(spec.target, access_role_arn)
    if target_report.after_connect_script:
        settings["AfterConnectScript"] = target_report.after_connect_script
    return settings


def _secret_settings(ref: DatabaseRef, access_role_arn: str) -> PostgreSQLSettingsTypeDef:
    """What both endpoints carry: the secret and, since DMS otherwise carries booleans as varchar(5)
    ("true"/"false" text on the target), MapBooleanAsBoolean, which AWS says must be set on both."""
    return {
        "SecretsManagerSecretId": ref.secret_arn,
        "SecretsManagerAccessRoleArn": access_role_arn,
        "MapBooleanAsBoolean": True,
    }


def _ensure(
    dms: DatabaseMigrationServiceClient,
    spec: MigrationSpec,
    identifier: str,
    endpoint_type: Literal["source", "target"],
    ref: DatabaseRef,
    report: DatabaseReport,
    settings: PostgreSQLSettingsTypeDef,
    lineage: str,
) -> str:
    """Create the endpoint or reuse ours; returns its ARN."""
    existing = find(dms, "endpoint", "endpoint-id", identifier)
    if existing is None:
        try:
            request: CreateEndpointMessageTypeDef = {
                "EndpointIdentifier": identifier,
                "EndpointType": endpoint_type,
                "EngineName": "postgres",
                "DatabaseName": report.database,
                "SslMode": ref.ssl_mode,
                "PostgreSQLSettings": settings,
                "Tags": resource_tags(spec, lineage),
            }
            if ref.certificate_arn:  # the CA DMS verifies the server with (verify-ca, verify-full)
                request["CertificateArn"] = ref.certificate_arn
            created = dms.create_endpoint(**request)
            return created["Endpoint"]["EndpointArn"]
        except ClientError as error:
            if error_code(error) != "ResourceAlreadyExistsFault":
                raise
            existing = find(dms, "endpoint", "endpoint-id", identifier)
            if existing is None:
                raise
    require_owned(dms, existing["EndpointArn"], spec, f"{endpoint_type} endpoint {identifier}", lineage)
    return existing["EndpointArn"]


def ensure_endpoints(
    dms: DatabaseMigrationServiceClient,
    spec: MigrationSpec,
    source_report: SourceReport,
    target_report: TargetReport,
    access_role_arn: str,
    lineage: str = "",
) -> EndpointsState:
    names = ResourceNames(spec.migration_id)
    source_arn = _ensure(
        dms,
        spec,
        names.source_endpoint,
        "source",
        spec.source,
        source_report,
        source_settings(spec, access_role_arn),
        lineage,
    )
    target_arn = _ensure(
        dms,
        spec,
        names.target_endpoint,
        "target",
        spec.target,
        target_report,
        target_settings(spec, target_report, access_role_arn),
        lineage,
    )
    slot_name = names.slot if spec.uses_cdc else ""
    return EndpointsState(source_arn=source_arn, target_arn=target_arn, slot_name=slot_name)
