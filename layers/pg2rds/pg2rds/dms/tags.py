"""What every DMS module shares: ownership tags and finding a resource by its derived name.

A resource is ours only if it carries ``OWNER_TAG`` with this migration's id and ``LINEAGE_TAG`` with this
execution chain's lineage. A resource with our name but without them was made by someone else (another
tool, or another execution of the same spec): we neither reuse nor delete it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from botocore.exceptions import ClientError

from pg2rds.aws import error_code
from pg2rds.errors import ResourceConflict
from pg2rds.naming import LINEAGE_TAG, OWNER_TAG
from pg2rds.spec import MigrationSpec

if TYPE_CHECKING:
    from mypy_boto3_dms import DatabaseMigrationServiceClient
    from mypy_boto3_dms.type_defs import TagTypeDef

NOT_FOUND = "ResourceNotFoundFault"

#: (describe operation, result key) per resource kind, for :func:`find`.
_DESCRIBE = {
    "instance": ("describe_replication_instances", "ReplicationInstances"),
    "endpoint": ("describe_endpoints", "Endpoints"),
    "task": ("describe_replication_tasks", "ReplicationTasks"),
}


def resource_tags(spec: MigrationSpec, lineage: str = "") -> list[TagTypeDef]:
    """Tags for everything we create: the ownership tags first, then the spec's own tags."""
    tags: list[TagTypeDef] = [{"Key": OWNER_TAG, "Value": spec.migration_id}]
    if lineage:
        tags.append({"Key": LINEAGE_TAG, "Value": lineage})
    return tags + [{"Key": key, "Value": value} for key, value in spec.tags.items()]


def tags_of(dms: DatabaseMigrationServiceClient, arn: str) -> dict[str, str]:
    response = dms.list_tags_for_resource(ResourceArn=arn)
    return {tag["Key"]: tag.get("Value", "") for tag in response.get("TagList", [])}


def _owns(tags: Mapping[str, str], migration_id: str, lineage: str) -> bool:
    """Tagged for this migration, and (when the caller has a lineage) by this lineage."""
    return tags.get(OWNER_TAG) == migration_id and (not lineage or tags.get(LINEAGE_TAG) == lineage)


def is_owned(dms: DatabaseMigrationServiceClient, arn: str, migration_id: str, lineage: str = "") -> bool:
    return _owns(tags_of(dms, arn), migration_id, lineage)


def require_owned(
    dms: DatabaseMigrationServiceClient, arn: str, spec: MigrationSpec, what: str, lineage: str = ""
) -> None:
    tags = tags_of(dms, arn)
    if not _owns(tags, spec.migration_id, lineage):
        owner = tags.get(OWNER_TAG)
        if owner == spec.migration_id:
            by = f"by another execution of this migration ({tags.get(LINEAGE_TAG) or 'no lineage'})"
        else:
            by = f"tagged for migration {owner!r}" if owner else f"without the {OWNER_TAG} tag"
        raise ResourceConflict(
            f"{what} already exists {by} ({arn}); pg2rds will not reuse or delete a resource it did not "
            f"create for migration {spec.migration_id!r}. Fix: delete or rename that resource, or use "
            "another migration_id."
        )


def find(
    dms: DatabaseMigrationServiceClient, kind: str, filter_name: str, value: str
) -> Mapping[str, Any] | None:
    """The one resource of ``kind`` whose ``filter_name`` is ``value``, or None.

    DMS answers ``ResourceNotFoundFault`` when a filter matches nothing (moto answers an empty list)."""
    operation, key = _DESCRIBE[kind]
    try:
        response = getattr(dms, operation)(Filters=[{"Name": filter_name, "Values": [value]}])
    except ClientError as error:
        if error_code(error) == NOT_FOUND:
            return None
        raise
    items = response.get(key, [])
    return items[0] if items else None


def find_tasks_using(
    dms: DatabaseMigrationServiceClient, filter_name: str, arn: str
) -> Sequence[Mapping[str, Any]]:
    """Tasks using ``arn``; ``filter_name`` is ``endpoint-arn`` or ``replication-instance-arn``."""
    try:
        response = dms.describe_replication_tasks(
            Filters=[{"Name": filter_name, "Values": [arn]}], WithoutSettings=True
        )
    except ClientError as error:
        if error_code(error) == NOT_FOUND:
            return []
        raise
    return response.get("ReplicationTasks", [])
