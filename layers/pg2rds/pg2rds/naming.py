"""Names of everything a migration owns, derived from its id.

Deriving names (rather than storing generated ones) is what makes every phase idempotent: a retried or
re-run phase looks for the name it would create and reuses what it finds, and cleanup can find every
resource of a migration from the id alone, even when the execution failed before recording an ARN.
"""

from dataclasses import dataclass

#: Tag carried by every AWS resource a migration creates; cleanup deletes only resources carrying it.
OWNER_TAG = "pg2rds:migration-id"
#: The first execution of the chain that created the resource (continuations keep it); cleanup deletes only
#: what its own lineage created, so a duplicate start of the same spec cannot remove the live one's.
LINEAGE_TAG = "pg2rds:lineage"


@dataclass(frozen=True)
class ResourceNames:
    migration_id: str

    @property
    def instance(self) -> str:
        return f"pg2rds-{self.migration_id}"

    @property
    def source_endpoint(self) -> str:
        return f"pg2rds-{self.migration_id}-source"

    @property
    def target_endpoint(self) -> str:
        return f"pg2rds-{self.migration_id}-target"

    @property
    def task(self) -> str:
        return f"pg2rds-{self.migration_id}"

    @property
    def slot(self) -> str:
        """Logical replication slot on the source: lowercase, digits and underscores only, ≤ 63 bytes."""
        return "pg2rds_" + self.migration_id.replace("-", "_")

    @property
    def publication(self) -> str:
        """Publication an older pg2rds's local stand-in created to decode pgoutput (nothing creates one
        now: the slot uses test_decoding); named after the slot, so cleanup still removes leftovers."""
        return self.slot
