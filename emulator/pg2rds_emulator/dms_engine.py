"""The seam between moto's DMS (which only records calls) and something that behaves like DMS.

``moto_dms`` extends moto's DMS backend so that the calls pg2rds makes return what real DMS returns
(statuses, StopReason, ReplicationTaskStats, DescribeTableStatistics, TestConnection failures), and asks
an :class:`DmsEngine` what actually happens. Two engines exist:

- ``FakeEngine`` (in ``moto_dms``): nothing is copied; a started full-load task finishes on its next
  describe. Unit and state-machine tests use it, and can script failures.
- ``StandInEngine`` (in ``dms_standin``): connects to the real servers named by the endpoints and moves
  the data with PostgreSQL (COPY; logical replication for CDC). ``pg2rds run --local`` uses it.

The handlers cannot tell either from DMS: they only see the DMS API.
"""

from dataclasses import dataclass, field
from typing import Any, Protocol


@dataclass(frozen=True)
class EndpointInfo:
    """An endpoint as DMS would resolve it: credentials already read from its Secrets Manager secret."""

    arn: str
    identifier: str
    endpoint_type: str  # "source" | "target"
    server_name: str
    port: int
    database_name: str
    username: str
    password: str = field(repr=False)
    ssl_mode: str = "none"
    #: The PEM of the endpoint's CertificateArn (ImportCertificate), which verify-ca/verify-full check
    #: the server against; "" without one.
    certificate_pem: str = ""
    #: The endpoint's PostgreSQLSettings as given to CreateEndpoint (SlotName, AfterConnectScript, ...).
    postgres_settings: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class TaskInfo:
    arn: str
    identifier: str
    migration_type: str  # "full-load" | "full-load-and-cdc" | "cdc"
    table_mappings: str  # JSON, as given to CreateReplicationTask
    settings: str  # ReplicationTaskSettings JSON
    source: EndpointInfo
    target: EndpointInfo
    #: CreateReplicationTask's CdcStartPosition ("" if none): for PostgreSQL, an LSN in the endpoint's slot.
    cdc_start_position: str = ""


def missing_slot_message(slot: str, database: str) -> str:
    """Why a CDC task fails when its source endpoint's SlotName names no slot: DMS "verifies that the
    specified logical replication slot exists" and "raises an error" (API Reference, PostgreSQLSettings)."""
    return (
        f"Replication slot '{slot}' does not exist in the source database '{database}': the endpoint's "
        "PostgreSQLSettings.SlotName must name a previously created logical replication slot"
    )


@dataclass
class TableStats:
    """One row of DescribeTableStatistics."""

    schema_name: str
    table_name: str
    state: str = "Before load"  # "Before load" | "Table loading" | "Table completed" | "Table error"
    full_load_rows: int = 0
    inserts: int = 0
    updates: int = 0
    deletes: int = 0
    #: DMS data validation (DescribeTableStatistics' Validation* fields): "Not enabled" unless the task's
    #: ValidationSettings enable it; the values are the API reference's (e.g. "Pending records",
    #: "Mismatched records", "Suspended records", "No primary key", "Validated").
    validation_state: str = "Not enabled"
    validation_state_details: str = ""
    validation_pending_records: int = 0
    validation_failed_records: int = 0
    validation_suspended_records: int = 0


@dataclass
class TaskRuntime:
    """What the engine reports about a started task; moto_dms renders it as DMS's response fields."""

    status: str  # "starting" | "running" | "stopping" | "stopped" | "failed"
    stop_reason: str = ""  # e.g. "Stop Reason FULL_LOAD_ONLY_FINISHED"
    last_failure_message: str = ""
    full_load_percent: int = 0
    tables_loaded: int = 0
    tables_loading: int = 0
    tables_queued: int = 0
    tables_errored: int = 0
    elapsed_millis: int = 0
    full_load_finished: bool = False
    cdc_latency_source_seconds: int | None = None
    cdc_latency_target_seconds: int | None = None
    tables: list[TableStats] = field(default_factory=list)


class DmsEngine(Protocol):
    def test_connection(self, endpoint: EndpointInfo) -> tuple[str, str]:
        """("successful", "") or ("failed", the server's message)."""

    def start_task(self, task: TaskInfo) -> None:
        """Begin the task in the background; must return at once."""

    def stop_task(self, task_arn: str) -> None:
        """Stop moving data (CDC included); the slot stays, as with DMS."""

    def delete_task(self, task_arn: str) -> None:
        """Forget the task; a replication slot it created is left behind, as DMS does."""

    def task_runtime(self, task_arn: str) -> TaskRuntime | None:
        """Current state of a started task, or None if it was never started."""

    def reload_tables(self, task_arn: str, tables: list[tuple[str, str]], option: str) -> None:
        """ReloadTables on a running task: ``option`` "validate-only" re-validates the (schema, table)s,
        "data-reload" reloads them (DMS API Reference, ReloadTables)."""
