"""The DMS replication instance: created for this migration (and later deleted by cleanup), or an existing
one named by ``spec.instance.existing_arn`` (only described: never modified or deleted)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from botocore.exceptions import ClientError

from pg2rds.aws import error_code
from pg2rds.dms.tags import find, require_owned, resource_tags
from pg2rds.errors import ReplicationInstanceFailed
from pg2rds.naming import ResourceNames
from pg2rds.polling import check_timeout, poll_fields
from pg2rds.spec import MigrationSpec
from pg2rds.state import InstanceState

if TYPE_CHECKING:
    from mypy_boto3_dms import DatabaseMigrationServiceClient

#: Statuses an instance does not leave by itself, with what the operator can do about each.
FAILED_STATUSES = {
    "failed": "look at the DMS events of the instance (aws dms describe-events) for the cause, delete the "
    "instance and run the migration again",
    "incompatible-network": "the replication subnet group cannot host the instance (subnets without free "
    "addresses, in another VPC, or without the routes DMS needs); fix spec.instance.subnet_group",
    "inaccessible-encryption-credentials": "DMS cannot use the instance's KMS key; re-enable the key or "
    "grant DMS access to it",
    "storage-full": "the instance ran out of storage; raise spec.instance.allocated_storage_gb",
    "incompatible-parameters": "the instance's settings are not supported; check instance_class and "
    "engine_version",
}


def _create(
    dms: DatabaseMigrationServiceClient, spec: MigrationSpec, identifier: str, lineage: str
) -> Mapping[str, Any]:
    settings = spec.instance
    params: dict[str, Any] = {
        "ReplicationInstanceIdentifier": identifier,
        "ReplicationInstanceClass": settings.instance_class,
        "AllocatedStorage": settings.allocated_storage_gb,
        "MultiAZ": settings.multi_az,
        "PubliclyAccessible": settings.publicly_accessible,
        "AutoMinorVersionUpgrade": True,
        "Tags": resource_tags(spec, lineage),
    }
    if settings.engine_version:
        params["EngineVersion"] = settings.engine_version
    if settings.subnet_group:
        params["ReplicationSubnetGroupIdentifier"] = settings.subnet_group
    if settings.security_group_ids:
        params["VpcSecurityGroupIds"] = list(settings.security_group_ids)
    return dms.create_replication_instance(**params)["ReplicationInstance"]


def _own_instance(
    dms: DatabaseMigrationServiceClient, spec: MigrationSpec, lineage: str
) -> Mapping[str, Any]:
    identifier = ResourceNames(spec.migration_id).instance
    instance = find(dms, "instance", "replication-instance-id", identifier)
    if instance is None:
        try:
            return _create(dms, spec, identifier, lineage)
        except ClientError as error:
            if error_code(error) != "ResourceAlreadyExistsFault":
                raise
            # created concurrently (a retried invocation): fall through to the ownership check
            instance = find(dms, "instance", "replication-instance-id", identifier)
            if instance is None:
                raise
    require_owned(
        dms, instance["ReplicationInstanceArn"], spec, f"replication instance {identifier}", lineage
    )
    return instance


def ensure_instance(
    dms: DatabaseMigrationServiceClient,
    spec: MigrationSpec,
    previous: InstanceState | None,
    lineage: str = "",
) -> InstanceState:
    """Create or reuse the replication instance (ours: tagged with this lineage); ``ready`` once it is
    ``available``."""
    existing_arn = spec.instance.existing_arn
    if existing_arn:
        instance = find(dms, "instance", "replication-instance-arn", existing_arn)
        if instance is None:
            raise ReplicationInstanceFailed(
                f"replication instance {existing_arn} (spec.instance.existing_arn) does not exist in this "
                "account and region. Fix: give the ARN of an existing instance, or omit existing_arn to let "
                "pg2rds create one."
            )
    else:
        instance = _own_instance(dms, spec, lineage)
    identifier = instance["ReplicationInstanceIdentifier"]
    status = instance.get("ReplicationInstanceStatus", "")
    if status in FAILED_STATUSES:
        raise ReplicationInstanceFailed(
            f"replication instance {identifier} is {status!r}. Fix: {FAILED_STATUSES[status]}."
        )
    ready = status == "available"
    if not ready:
        check_timeout(
            previous,
            spec.polling.instance_timeout_minutes * 60,
            f"replication instance {identifier} is still {status!r}",
            "look at the instance's DMS events; raise spec.polling.instance_timeout_minutes if it is "
            "merely slow",
        )
    return InstanceState(
        arn=instance["ReplicationInstanceArn"],
        identifier=identifier,
        status=status,
        owned=not existing_arn,
        **poll_fields(spec, previous, ready),
    )
