"""Connection tests: DMS connects from the replication instance to each endpoint, as the task will."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from botocore.exceptions import ClientError

from pg2rds.aws import error_code
from pg2rds.dms.tags import NOT_FOUND
from pg2rds.errors import ConnectionTestFailed
from pg2rds.naming import ResourceNames
from pg2rds.polling import check_timeout, poll_fields
from pg2rds.spec import DatabaseRef, MigrationSpec
from pg2rds.state import ConnectionsState, DatabaseReport, EndpointsState, InstanceState

if TYPE_CHECKING:
    from mypy_boto3_dms import DatabaseMigrationServiceClient


def _describe(
    dms: DatabaseMigrationServiceClient, instance_arn: str, endpoint_arn: str
) -> Mapping[str, Any] | None:
    try:
        response = dms.describe_connections(
            Filters=[
                {"Name": "endpoint-arn", "Values": [endpoint_arn]},
                {"Name": "replication-instance-arn", "Values": [instance_arn]},
            ]
        )
    except ClientError as error:
        if error_code(error) == NOT_FOUND:
            return None
        raise
    connections = response.get("Connections", [])
    return connections[0] if connections else None


def _test(dms: DatabaseMigrationServiceClient, instance_arn: str, endpoint_arn: str) -> Mapping[str, Any]:
    return dms.test_connection(ReplicationInstanceArn=instance_arn, EndpointArn=endpoint_arn)["Connection"]


def _failure(
    side: str,
    identifier: str,
    ref: DatabaseRef,
    report: DatabaseReport,
    instance: InstanceState,
    message: str,
) -> str:
    return (
        f"DMS could not connect to the {side} endpoint {identifier} ({report.host}:{report.port}/"
        f"{report.database} from secret {ref.secret_arn}, ssl_mode {ref.ssl_mode}) from replication "
        f"instance {instance.identifier}: {message}"
    )


def test_connections(
    dms: DatabaseMigrationServiceClient,
    spec: MigrationSpec,
    instance: InstanceState,
    endpoints: EndpointsState,
    previous: ConnectionsState | None,
    reports: tuple[DatabaseReport, DatabaseReport],
) -> ConnectionsState:
    """First call starts both tests; later calls read their outcome. ``ready`` when both succeeded.
    ``reports`` (source, target) say where validation found each server, for the failure messages."""
    names = ResourceNames(spec.migration_id)
    sides = [
        ("source", endpoints.source_arn, names.source_endpoint, spec.source, reports[0]),
        ("target", endpoints.target_arn, names.target_endpoint, spec.target, reports[1]),
    ]
    statuses: dict[str, str] = {}
    failures: list[str] = []
    for side, arn, identifier, ref, report in sides:
        connection = None if previous is None else _describe(dms, instance.arn, arn)
        if connection is None:  # first call, or DMS forgot the test (endpoint re-created): (re)start it
            connection = _test(dms, instance.arn, arn)
        status = connection.get("Status", "")
        statuses[side] = status
        if status == "failed":
            failures.append(
                _failure(side, connection.get("EndpointIdentifier") or identifier, ref, report, instance,
                         connection.get("LastFailureMessage", ""))
            )  # fmt: skip
    if failures:
        raise ConnectionTestFailed(
            " | ".join(failures) + ". Fix: check that the instance's subnets and security groups can reach "
            "the server, that the secret holds valid credentials, that pg_hba.conf admits the instance's "
            "address, and that ssl_mode matches the server."
        )
    ready = all(status == "successful" for status in statuses.values())
    if not ready:
        pending = ", ".join(f"{side} is {status!r}" for side, status in statuses.items())
        check_timeout(
            previous,
            spec.polling.connection_timeout_minutes * 60,
            f"connection tests did not finish ({pending})",
            "make sure the replication instance can reach both servers (a test that never ends usually "
            "means packets are dropped by a security group or network ACL); raise "
            "spec.polling.connection_timeout_minutes if they are merely slow",
        )
    return ConnectionsState(
        source_status=statuses["source"],
        target_status=statuses["target"],
        **poll_fields(spec, previous, ready),
    )
