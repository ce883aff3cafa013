"""moto's DMS, made faithful enough for pg2rds, with a :class:`DmsEngine` deciding what actually happens.

moto's DMS only records calls: its tasks never become ``ready``, TestConnection always succeeds,
CreateEndpoint silently overwrites a duplicate and DescribeTableStatistics does not exist. :func:`install`
patches moto's DMS backend and response classes (process-wide, idempotent) so that:

- CreateEndpoint with ``SecretsManagerSecretId`` and any of UserName, Password, ServerName, Port raises
  ``InvalidParameterCombinationException`` (the API reference: "You can't specify both").
- ImportCertificate (which moto lacks) keeps PEM X.509 certificates and bundles (anything else is
  ``InvalidCertificateFault``); CreateEndpoint with an unknown ``CertificateArn`` is
  ``ResourceNotFoundFault``; the engine gets the certificate's PEM, so a verify-ca/verify-full endpoint
  verifies the server with it.
- CreateEndpoint / CreateReplicationInstance / CreateReplicationTask with an existing identifier raise
  ``ResourceAlreadyExistsFault``; endpoints are ``active``; a replication instance is ``creating`` in the
  create response and ``available`` from its next describe; a task goes ``creating`` → ``ready`` on its
  next describe.
- Describe{Endpoints,ReplicationInstances,ReplicationTasks} with filters that match nothing raise
  ``ResourceNotFoundFault``, as DMS does.
- TestConnection resolves the endpoint's server, port and credentials from
  ``PostgreSQLSettings.SecretsManagerSecretId`` in moto's Secrets Manager (a secret without host, port,
  username and password fails the test, as DMS needs them) and asks ``engine.test_connection``;
  DescribeConnections reports ``testing`` once, then ``successful``/``failed`` with ``LastFailureMessage``.
- StartReplicationTask → ``engine.start_task``; DescribeReplicationTasks renders ``engine.task_runtime``
  as Status, StopReason, LastFailureMessage and ReplicationTaskStats; StopReplicationTask →
  ``engine.stop_task``; DeleteReplicationTask → ``engine.delete_task`` (refused while the task runs).
- DeleteEndpoint is refused while a task uses the endpoint, DeleteReplicationInstance while it has tasks.
- DescribeTableStatistics (paginated with Marker) returns ``engine.task_runtime(arn).tables``, with the
  Validation* fields ("Not enabled" unless the task's ValidationSettings enable validation).
- ReloadTables (which moto lacks) → ``engine.reload_tables``; refused unless the task is running
  (``InvalidResourceStateFault``, as the API reference says) and, for ``validate-only``, unless the task
  validates.
- CDC latency: real DMS publishes it only as CloudWatch metrics (namespace ``AWS/DMS``, metrics
  ``CDCLatencySource``/``CDCLatencyTarget``, dimensions ``ReplicationInstanceIdentifier`` and
  ``ReplicationTaskIdentifier`` = the last part of the task ARN). Each describe of a task whose runtime
  knows its latency puts those data points into moto's CloudWatch, where ``pg2rds.dms.progress`` reads
  them with GetMetricStatistics.
"""

import contextlib
import hashlib
import json
import threading
from dataclasses import dataclass, field, replace
from typing import Any

import psycopg2
import psycopg2.errors
from cryptography import x509
from moto.cloudwatch.models import cloudwatch_backends
from moto.core.utils import utcnow
from moto.dms import models as dms_models
from moto.dms import responses as dms_responses
from moto.dms.exceptions import (
    DmsClientError,
    InvalidParameterCombinationException,
    InvalidResourceStateFault,
    ResourceAlreadyExistsFault,
    ResourceNotFoundFault,
)
from moto.moto_api import state_manager
from moto.secretsmanager.models import secretsmanager_backends

from pg2rds_emulator.dms_engine import (
    DmsEngine,
    EndpointInfo,
    TableStats,
    TaskInfo,
    TaskRuntime,
    missing_slot_message,
)

FULL_LOAD_FINISHED = "Stop Reason FULL_LOAD_ONLY_FINISHED"
STOPPED_NORMALLY = "Stop Reason NORMAL"
FATAL_ERROR = "Stop Reason FATAL_ERROR"
_RUNNING_STATES = ("starting", "running", "stopping")

_lock = threading.Lock()
_engine: DmsEngine | None = None
_installed = False


# --------------------------------------------------------------------------------------------- engine


@dataclass
class _FakeTask:
    migration_type: str
    stopped: bool = False
    slot: "_FakeSlot | None" = None
    #: Why the task failed at start (its source endpoint names a slot that does not exist).
    failure: str = ""
    info: TaskInfo | None = None


@dataclass
class _FakeSlot:
    """The source's replication slot a CDC task reads (pg2rds creates it before the task): checked at
    start like DMS checks it, and (since the fake engine "applies" every change at once) advanced to the
    source's WAL position on each describe, unless the engine holds it back (a DMS that lags behind while
    its latency metric still says 0), so pg2rds's cutover check (slot confirmed up to the decision's LSN)
    sees what it would with DMS. Only where the source is a reachable PostgreSQL server; unit tests with
    made-up hosts have no slot to check."""

    endpoint: EndpointInfo
    name: str

    def _run(self, statement: str) -> list[tuple]:
        conn = psycopg2.connect(
            host=self.endpoint.server_name, port=self.endpoint.port, dbname=self.endpoint.database_name,
            user=self.endpoint.username, password=self.endpoint.password, connect_timeout=3,
        )  # fmt: skip
        try:
            conn.autocommit = True
            with conn.cursor() as cur:
                cur.execute(statement, (self.name,))
                return cur.fetchall() if cur.description else []
        finally:
            conn.close()

    def _exists(self) -> bool:
        return bool(
            self._run(
                "SELECT 1 FROM pg_replication_slots WHERE slot_name = %s AND database = current_database()"
            )
        )

    @classmethod
    def find(cls, endpoint: EndpointInfo) -> tuple["_FakeSlot | None", str]:
        """The endpoint's slot, and why the task must fail ("" if it need not)."""
        name = endpoint.postgres_settings.get("SlotName")
        if not name:
            return None, ""
        slot = cls(endpoint, name)
        try:
            if not slot._exists():
                return None, missing_slot_message(name, endpoint.database_name)
        except psycopg2.Error:
            return None, ""  # no server there (unit tests): nothing to check
        return slot, ""

    def advance(self) -> None:
        with contextlib.suppress(psycopg2.Error):  # dropped or in use: nothing to advance
            self._run("SELECT pg_replication_slot_advance(%s, pg_current_wal_insert_lsn())")


@dataclass
class _Mismatch:
    """A scripted validation failure: the keys DMS finds different in a table, until the target is fixed
    and the table re-validated."""

    keys: list[str]
    failure_type: str
    fixed: bool = False


def _validates(task: TaskInfo) -> bool:
    settings = json.loads(task.settings or "{}")
    return bool(settings.get("ValidationSettings", {}).get("EnableValidation"))


def _write_failures(task: TaskInfo, schema: str, table: str, mismatch: _Mismatch) -> None:
    """Rows of ``awsdms_validation_failures_v1`` in the task's control schema on the target, as DMS writes
    them when records fail validation (User Guide, "AWS DMS data validation"). Unit tests with made-up
    hosts have no target: nothing to write."""
    control = (
        json.loads(task.settings or "{}").get("ControlTablesSettings", {}).get("ControlSchema")
        or "awsdms_control"
    )
    target = task.target
    statements = [
        f'CREATE SCHEMA IF NOT EXISTS "{control}"',
        f'CREATE TABLE IF NOT EXISTS "{control}".awsdms_validation_failures_v1 ('
        '"TASK_NAME" varchar(128) NOT NULL, "TABLE_OWNER" varchar(128) NOT NULL, '
        '"TABLE_NAME" varchar(128) NOT NULL, "FAILURE_TIME" timestamp NOT NULL, '
        '"KEY_TYPE" varchar(128) NOT NULL, "KEY" text NOT NULL, "FAILURE_TYPE" varchar(128) NOT NULL, '
        '"DETAILS" varchar(8000) NOT NULL)',
    ]
    try:
        conn = psycopg2.connect(
            host=target.server_name, port=target.port, dbname=target.database_name,
            user=target.username, password=target.password, connect_timeout=3,
        )  # fmt: skip
    except psycopg2.Error:
        return
    try:
        conn.autocommit = True
        with conn.cursor() as cur:
            for statement in statements:
                cur.execute(statement)
            for key in mismatch.keys:
                cur.execute(
                    f'INSERT INTO "{control}".awsdms_validation_failures_v1 VALUES '
                    "(%s, %s, %s, now(), 'Row', %s, %s, '{}')",
                    (task.arn.rsplit(":", 1)[-1], schema, table, json.dumps({"key": [key]}),
                     mismatch.failure_type),
                )  # fmt: skip
    finally:
        conn.close()


@dataclass
class FakeEngine:
    """Moves no data. A started full-load task is finished (stopped, FULL_LOAD_ONLY_FINISHED, 100%) on
    its first describe; a CDC task is running at 100% with latency 0. Failures and lag can be scripted.

    With the task's ValidationSettings enabled, every table is "Validated" (the fake applies and validates
    every change at once) unless its :class:`TableStats` scripts another validation state, or
    :meth:`mismatch` scripts differences: the table is then "Mismatched records", the keys are written to
    the failures table on the target, and only a ReloadTables(validate-only) after :meth:`fix_target`
    finds it "Validated" again."""

    tables: list[TableStats] = field(default_factory=list)
    cdc_latency_seconds: int | None = 0
    #: Where a CDC task's full load stands (below 100: still loading, so never caught up).
    cdc_full_load_percent: int = 100
    connection_failures: dict[str, str] = field(default_factory=dict)
    task_failure: str | None = None
    task_failure_tables: list[str] = field(default_factory=list)
    #: While set, CDC slots stay where they are: the task "has not applied" what the source wrote since.
    slot_held: bool = False
    started: list[TaskInfo] = field(default_factory=list)
    tested: list[EndpointInfo] = field(default_factory=list)
    _tasks: dict[str, _FakeTask] = field(default_factory=dict)
    #: Held while a describe advances a slot, so :meth:`hold_slot` returns only once no advance is under
    #: way: a write made after it is never confirmed by a describe that had already started.
    _slot_lock: threading.Lock = field(default_factory=threading.Lock, repr=False)
    #: Scripted validation differences by "schema.table".
    mismatches: dict[str, _Mismatch] = field(default_factory=dict)
    #: Every ReloadTables call: (task ARN, "schema.table", ReloadOption).
    reloads: list[tuple[str, str, str]] = field(default_factory=list)

    # scripting -----------------------------------------------------------------------------------
    def fail_connection(self, endpoint: str, message: str) -> None:
        """Make TestConnection fail for an endpoint identifier, ARN, or a type ("source"/"target")."""
        self.connection_failures[endpoint] = message

    def fail_task(self, message: str, tables: list[str] | None = None) -> None:
        """Make every task (started or to be started) fail with ``message``; ``tables`` ("schema.table")
        are reported in the "Table error" state."""
        self.task_failure = message
        self.task_failure_tables = list(tables or [])

    def set_latency(self, seconds: int | None) -> None:
        self.cdc_latency_seconds = seconds

    def mismatch(self, table: str, keys: list[str], failure_type: str = "RECORD_DIFF") -> None:
        """DMS's validation finds ``keys`` of ``table`` ("schema.table") different: written to the failures
        table on the targets of the tasks started (and of those started later)."""
        mismatch = _Mismatch(list(keys), failure_type)
        self.mismatches[table] = mismatch
        schema, name = table.split(".", 1)
        for task in self.started:
            if _validates(task):
                _write_failures(task, schema, name, mismatch)

    def fix_target(self, table: str) -> None:
        """The operator fixed the rows: the table's next re-validation finds it equal."""
        self.mismatches[table].fixed = True

    def set_validation(self, table: str, state: str, pending: int = 0, failed: int = 0) -> None:
        """Script a table's validation figures ("schema.table" of :attr:`tables`)."""
        for stats in self.tables:
            if f"{stats.schema_name}.{stats.table_name}" == table:
                stats.validation_state, stats.validation_pending_records = state, pending
                stats.validation_failed_records = failed

    def hold_slot(self, held: bool = True) -> None:
        """Lag behind the source (slots stay put) while still reporting the scripted latency, as a DMS
        whose per-minute latency metric has not caught up with a burst of writes would."""
        with self._slot_lock:
            self.slot_held = held

    # DmsEngine -----------------------------------------------------------------------------------
    def test_connection(self, endpoint: EndpointInfo) -> tuple[str, str]:
        self.tested.append(endpoint)
        for key in (endpoint.arn, endpoint.identifier, endpoint.endpoint_type):
            if key in self.connection_failures:
                return "failed", self.connection_failures[key]
        return "successful", ""

    def start_task(self, task: TaskInfo) -> None:
        self.started.append(task)
        slot, failure = _FakeSlot.find(task.source) if task.migration_type != "full-load" else (None, "")
        self._tasks[task.arn] = _FakeTask(task.migration_type, slot=slot, failure=failure, info=task)
        if _validates(task):
            for table, mismatch in self.mismatches.items():
                if not mismatch.fixed:
                    _write_failures(task, *table.split(".", 1), mismatch)

    def reload_tables(self, task_arn: str, tables: list[tuple[str, str]], option: str) -> None:
        for schema, table in tables:
            name = f"{schema}.{table}"
            self.reloads.append((task_arn, name, option))
            mismatch = self.mismatches.get(name)
            if mismatch is not None and mismatch.fixed:
                del self.mismatches[name]  # re-validated against the fixed target: equal

    def _validation(self, task: _FakeTask, table: TableStats) -> None:
        """Fill in what DMS's validation would report for ``table`` (see the class docstring)."""
        if task.info is None or not _validates(task.info):
            table.validation_state, table.validation_state_details = "Not enabled", ""
            table.validation_pending_records = table.validation_failed_records = 0
            table.validation_suspended_records = 0
            return
        mismatch = self.mismatches.get(f"{table.schema_name}.{table.table_name}")
        if mismatch is not None:
            table.validation_state = "Mismatched records"
            table.validation_failed_records = len(mismatch.keys)
        elif table.validation_state == "Not enabled":
            table.validation_state = "Validated"

    def stop_task(self, task_arn: str) -> None:
        if task_arn in self._tasks:
            self._tasks[task_arn].stopped = True

    def delete_task(self, task_arn: str) -> None:
        self._tasks.pop(task_arn, None)

    def task_runtime(self, task_arn: str) -> TaskRuntime | None:
        task = self._tasks.get(task_arn)
        if task is None:
            return None
        tables = [replace(table) for table in self.tables]
        for table in tables:
            table.state = "Table completed"
            self._validation(task, table)
        count = len(tables)
        if task.failure:
            return TaskRuntime(status="failed", stop_reason=FATAL_ERROR, last_failure_message=task.failure)
        if self.task_failure is not None:
            errored, failing = 0, set(self.task_failure_tables)
            for table in tables:
                if f"{table.schema_name}.{table.table_name}" in failing:
                    table.state = "Table error"
                    errored += 1
            return TaskRuntime(
                status="failed",
                stop_reason=FATAL_ERROR,
                last_failure_message=self.task_failure,
                tables_loaded=count - errored,
                tables_errored=errored or len(self.task_failure_tables),
                tables=tables,
            )
        if task.stopped:
            return TaskRuntime(
                status="stopped", stop_reason=STOPPED_NORMALLY, full_load_percent=100,
                tables_loaded=count, full_load_finished=True, tables=tables,
            )  # fmt: skip
        if task.migration_type == "full-load":
            return TaskRuntime(
                status="stopped", stop_reason=FULL_LOAD_FINISHED, full_load_percent=100,
                tables_loaded=count, full_load_finished=True, elapsed_millis=1000, tables=tables,
            )  # fmt: skip
        with self._slot_lock:
            if task.slot is not None and not self.slot_held:
                task.slot.advance()
        percent = self.cdc_full_load_percent
        return TaskRuntime(
            status="running", full_load_percent=percent, tables_loaded=count,
            full_load_finished=task.migration_type != "cdc" and percent >= 100, elapsed_millis=1000,
            cdc_latency_source_seconds=self.cdc_latency_seconds,
            cdc_latency_target_seconds=self.cdc_latency_seconds, tables=tables,
        )  # fmt: skip


def current_engine() -> DmsEngine:
    global _engine
    with _lock:
        if _engine is None:
            _engine = FakeEngine()
        return _engine


def set_engine(engine: DmsEngine) -> None:
    global _engine
    with _lock:
        _engine = engine


def install(engine: DmsEngine | None = None) -> None:
    """Patch moto's DMS (once per process) and set the engine (a fresh FakeEngine if none is set yet)."""
    global _installed
    if engine is not None:
        set_engine(engine)
    else:
        current_engine()
    with _lock:
        if _installed:
            return
        _patch()
        _installed = True


# ------------------------------------------------------------------------------------------ helpers

_Backend = dms_models.DatabaseMigrationServiceBackend
_Task = dms_models.FakeReplicationTask
_original: dict[str, Any] = {}


def _account_region(arn: str) -> tuple[str, str]:
    parts = arn.split(":")
    return parts[4], parts[3]


def _read_secret(secret_id: str, account: str, region: str) -> dict[str, Any]:
    if secret_id.startswith("arn:"):
        account, region = _account_region(secret_id)
    value = secretsmanager_backends[account][region].get_secret_value(secret_id, None, None)
    data = json.loads(value["SecretString"])
    missing = [key for key in ("username", "password", "host", "port") if not data.get(key)]
    if missing:
        raise ValueError(f"the secret lacks {', '.join(missing)}")
    return data


def _endpoint_info(backend: _Backend, endpoint: Any) -> tuple[EndpointInfo, str]:
    """The endpoint with its server and credentials resolved, and a problem reading them ("" if none).

    With ``SecretsManagerSecretId`` the server, port and login are the secret's (the endpoint has none:
    CreateEndpoint refuses both); the database is the endpoint's ``DatabaseName``."""
    settings = dict(endpoint.postgre_sql_settings or {})
    secret_id = settings.get("SecretsManagerSecretId")
    secret: dict[str, Any] = {}
    problem = ""
    if secret_id:
        try:
            secret = _read_secret(secret_id, backend.account_id, backend.region_name)
        except Exception as error:
            problem = f"Failed to retrieve secret {secret_id} from Secrets Manager: {error}"
    if secret_id:
        server_name, port = str(secret.get("host") or ""), int(secret.get("port") or 5432)
        username, password = str(secret.get("username") or ""), str(secret.get("password") or "")
    else:
        server_name = settings.get("ServerName") or endpoint.server_name or ""
        port = int(settings.get("Port") or endpoint.port or 5432)
        username, password = endpoint.username or "", endpoint.password or ""
    info = EndpointInfo(
        arn=endpoint.endpoint_arn,
        identifier=endpoint.endpoint_identifier,
        endpoint_type=endpoint.endpoint_type,
        server_name=server_name,
        port=port,
        database_name=settings.get("DatabaseName") or endpoint.database_name or str(secret.get("dbname", "")),
        username=username,
        password=password,
        ssl_mode=endpoint.ssl_mode or "none",
        certificate_pem=_certificate_pem(backend, endpoint.certificate_arn),
        postgres_settings=settings,
    )
    return info, problem


def _endpoint_by_arn(backend: _Backend, arn: str) -> Any:
    for endpoint in backend.endpoints.values():
        if endpoint.endpoint_arn == arn:
            return endpoint
    raise ResourceNotFoundFault("Endpoint could not be found.")


def _task_status(task: Any) -> str:
    if getattr(task, "_pg2rds_started", False):
        runtime = current_engine().task_runtime(task.arn)
        if runtime is not None:
            return runtime.status
    return task.status


def _iso(value: Any) -> str | None:
    return value.isoformat() if value else None


def _publish_latency(task: Any, runtime: TaskRuntime) -> None:
    account, region = _account_region(task.arn)
    backend = dms_models.dms_backends[account][region]
    instance = backend.replication_instances.get(task.replication_instance_arn)
    if instance is None:
        return
    dimensions = [
        {"Name": "ReplicationInstanceIdentifier", "Value": instance.id},
        {"Name": "ReplicationTaskIdentifier", "Value": task.arn.rsplit(":", 1)[-1]},
    ]
    data = [
        {"MetricName": name, "Value": float(value), "Unit": "Seconds", "Dimensions": dimensions}
        for name, value in (
            ("CDCLatencySource", runtime.cdc_latency_source_seconds),
            ("CDCLatencyTarget", runtime.cdc_latency_target_seconds),
        )
        if value is not None
    ]
    if data:
        cloudwatch_backends[account][region].put_metric_data("AWS/DMS", data)


# -------------------------------------------------------------------------------------- task model


def _task_to_dict(self: Any) -> dict[str, Any]:
    data = _original["task_to_dict"](self)
    if getattr(self, "_pg2rds_cdc_start_position", ""):
        data["CdcStartPosition"] = self._pg2rds_cdc_start_position
    runtime = current_engine().task_runtime(self.arn) if getattr(self, "_pg2rds_started", False) else None
    if runtime is None:
        if not getattr(self, "_pg2rds_started", False):
            data.pop("ReplicationTaskStats", None)
        return data
    if runtime.status in ("stopped", "failed") and self.stop_date is None:
        self.stop_date = utcnow()
    if runtime.status not in ("stopped", "failed"):
        self.stop_date = None
    if runtime.full_load_finished and getattr(self, "_pg2rds_full_load_finish", None) is None:
        self._pg2rds_full_load_finish = utcnow()
    data["Status"] = runtime.status
    if runtime.stop_reason:
        data["StopReason"] = runtime.stop_reason
    if runtime.last_failure_message:
        data["LastFailureMessage"] = runtime.last_failure_message
    start = _iso(self.start_date)
    stats = {
        "FullLoadProgressPercent": runtime.full_load_percent,
        "ElapsedTimeMillis": runtime.elapsed_millis,
        "TablesLoaded": runtime.tables_loaded,
        "TablesLoading": runtime.tables_loading,
        "TablesQueued": runtime.tables_queued,
        "TablesErrored": runtime.tables_errored,
        "FreshStartDate": start,
        "StartDate": start,
        "StopDate": _iso(self.stop_date),
        "FullLoadStartDate": start,
        "FullLoadFinishDate": _iso(getattr(self, "_pg2rds_full_load_finish", None)),
    }
    data["ReplicationTaskStats"] = {key: value for key, value in stats.items() if value is not None}
    _publish_latency(self, runtime)
    return data


# ----------------------------------------------------------------------------------- backend methods


#: What an endpoint may not give alongside a secret: "You can specify the values for this setting and
#: SecretsManagerSecretId. Or you can specify clear-text values for UserName, Password, ServerName, and
#: Port. You can't specify both." (PostgreSQLSettings.SecretsManagerAccessRoleArn, DMS API Reference)
_CLEAR_TEXT = {"Username": "username", "Password": "password", "ServerName": "server_name", "Port": "port"}


def _create_endpoint(self: _Backend, endpoint_identifier: str, *args: Any, **kwargs: Any) -> Any:
    _refuse_secret_with_clear_text(kwargs)
    certificate_arn = kwargs.get("certificate_arn")
    if certificate_arn and certificate_arn not in _certificates(self):
        raise ResourceNotFoundFault(f"Certificate {certificate_arn} not found")
    if endpoint_identifier in self.endpoints:
        raise ResourceAlreadyExistsFault("The resource you are attempting to create already exists.")
    endpoint = _original["create_endpoint"](self, endpoint_identifier, *args, **kwargs)
    endpoint.status = "active"
    return endpoint


def _refuse_secret_with_clear_text(kwargs: dict[str, Any]) -> None:
    settings = kwargs.get("postgre_sql_settings") or {}
    if not settings.get("SecretsManagerSecretId") and not settings.get("SecretsManagerAccessRoleArn"):
        return
    given = [
        name
        for name, keyword in _CLEAR_TEXT.items()
        if kwargs.get(keyword) not in (None, "") or settings.get(name) not in (None, "")
    ]
    if given:
        raise InvalidParameterCombinationException(
            f"{', '.join(given)} cannot be specified together with SecretsManagerSecretId and "
            "SecretsManagerAccessRoleArn: specify either the secret and its access role, or clear-text "
            "UserName, Password, ServerName and Port, not both."
        )


def _not_found_when_empty(name: str, what: str) -> Any:
    def describe(self: _Backend, *args: Any, **kwargs: Any) -> Any:
        result = list(_original[name](self, *args, **kwargs))
        filters = kwargs.get("filters") if "filters" in kwargs else (args[0] if args else None)
        if filters and not result:
            raise ResourceNotFoundFault(f"No {what} found matching provided filters")
        return result

    return describe


def _describe_replication_tasks(self: _Backend, filters: list[dict[str, Any]], max_records: int) -> Any:
    tasks = dms_models.filter_tasks(list(self.replication_tasks.values()), filters)
    if filters and not tasks:
        raise ResourceNotFoundFault("No Tasks found matching provided filters")
    for task in tasks:
        if task.status == "creating":
            task.status = "ready"  # the create response said "creating"; the next describe says "ready"
    return tasks[:max_records] if max_records and max_records > 0 else tasks


def _delete_endpoint(self: _Backend, endpoint_arn: str) -> Any:
    users = [
        task.id
        for task in self.replication_tasks.values()
        if endpoint_arn in (task.source_endpoint_arn, task.target_endpoint_arn)
    ]
    if users:
        raise InvalidResourceStateFault(
            f"Endpoint {endpoint_arn} is in use by replication task(s) {', '.join(users)} "
            "and cannot be deleted"
        )
    return _original["delete_endpoint"](self, endpoint_arn)


def _delete_replication_instance(self: _Backend, replication_instance_arn: str) -> Any:
    users = [
        task.id
        for task in self.replication_tasks.values()
        if task.replication_instance_arn == replication_instance_arn
    ]
    if users:
        raise InvalidResourceStateFault(
            f"Replication instance {replication_instance_arn} has replication task(s) "
            f"{', '.join(users)}; delete them first"
        )
    return _original["delete_replication_instance"](self, replication_instance_arn)


class _Connection:
    def __init__(self, instance: Any, endpoint: Any) -> None:
        self.replication_instance_arn = instance.arn
        self.replication_instance_identifier = instance.id
        self.endpoint_arn = endpoint.endpoint_arn
        self.endpoint_identifier = endpoint.endpoint_identifier
        self.status = "testing"
        self.last_failure_message = ""
        self.result = ("testing", "")
        self.describes_while_testing = 0

    def advance(self) -> None:
        if self.status != "testing":
            return
        if self.describes_while_testing < 1:
            self.describes_while_testing += 1
            return
        self.status, self.last_failure_message = self.result

    def to_dict(self) -> dict[str, Any]:
        return {
            "ReplicationInstanceArn": self.replication_instance_arn,
            "EndpointArn": self.endpoint_arn,
            "Status": self.status,
            "LastFailureMessage": self.last_failure_message,
            "EndpointIdentifier": self.endpoint_identifier,
            "ReplicationInstanceIdentifier": self.replication_instance_identifier,
        }


def _test_connection(self: _Backend, replication_instance_arn: str, endpoint_arn: str) -> _Connection:
    instance = self.replication_instances.get(replication_instance_arn)
    if instance is None:
        raise ResourceNotFoundFault("Replication instance could not be found.")
    if instance.status != "available":
        raise InvalidResourceStateFault(f"Replication instance is {instance.status}, not available")
    endpoint = _endpoint_by_arn(self, endpoint_arn)
    self.connections = [
        c
        for c in self.connections
        if not (c.endpoint_arn == endpoint_arn and c.replication_instance_arn == replication_instance_arn)
    ]
    connection = _Connection(instance, endpoint)
    info, problem = _endpoint_info(self, endpoint)
    if problem:
        connection.result = ("failed", problem)
    else:
        try:
            connection.result = current_engine().test_connection(info)
        except Exception as error:
            connection.result = ("failed", f"{type(error).__name__}: {error}")
    self.connections.append(connection)
    return connection


def _describe_connections(
    self: _Backend, filters: list[dict[str, Any]], max_records: int | None, marker: str | None
) -> list[Any]:
    attributes = {"endpoint-arn": "endpoint_arn", "replication-instance-arn": "replication_instance_arn"}
    connections = list(self.connections)
    for item in filters or []:
        attribute = attributes.get(item.get("Name", ""))
        if attribute is None:
            raise dms_models.ValidationError(f"Invalid filter name: {item.get('Name')}")
        connections = [c for c in connections if getattr(c, attribute) in item.get("Values", [])]
    for connection in connections:
        connection.advance()
    return connections


def _task_info(self: _Backend, task: Any) -> TaskInfo:
    source, _ = _endpoint_info(self, _endpoint_by_arn(self, task.source_endpoint_arn))
    target, _ = _endpoint_info(self, _endpoint_by_arn(self, task.target_endpoint_arn))
    return TaskInfo(
        arn=task.arn,
        identifier=task.id,
        migration_type=task.migration_type,
        table_mappings=task.table_mappings,
        settings=task.replication_task_settings or "{}",
        source=source,
        target=target,
        cdc_start_position=getattr(task, "_pg2rds_cdc_start_position", ""),
    )


def _start_replication_task(
    self: _Backend, replication_task_arn: str, start_replication_task_type: str = "start-replication"
) -> Any:
    task = self.replication_tasks.get(replication_task_arn)
    if task is None:
        raise ResourceNotFoundFault("Replication task could not be found.")
    status = _task_status(task)
    if status not in ("ready", "stopped", "failed"):
        raise InvalidResourceStateFault(f"Replication task {task.id} is {status} and cannot be started")
    if start_replication_task_type == "resume-processing" and not getattr(task, "_pg2rds_started", False):
        raise InvalidResourceStateFault(f"Replication task {task.id} was never started; cannot resume")
    task.start_date = utcnow()
    task.stop_date = None
    task._pg2rds_full_load_finish = None
    current_engine().start_task(_task_info(self, task))
    task._pg2rds_started = True
    task.status = "running"
    return task


def _stop_replication_task(self: _Backend, replication_task_arn: str) -> Any:
    task = self.replication_tasks.get(replication_task_arn)
    if task is None:
        raise ResourceNotFoundFault("Replication task could not be found.")
    status = _task_status(task)
    if status not in ("starting", "running"):
        raise InvalidResourceStateFault(f"Replication task {task.id} is {status}, not running")
    current_engine().stop_task(task.arn)
    task.status = "stopped"
    return task


def _delete_replication_task(self: _Backend, replication_task_arn: str) -> Any:
    task = self.replication_tasks.get(replication_task_arn)
    if task is None:
        raise ResourceNotFoundFault("Replication task could not be found.")
    status = _task_status(task)
    if status in _RUNNING_STATES:
        raise InvalidResourceStateFault(f"Replication task {task.id} is {status}; stop it before deleting it")
    current_engine().delete_task(task.arn)
    task.status = "deleting"
    self.replication_tasks.pop(replication_task_arn)
    return task


def reload_tables(backend: _Backend, task_arn: str, tables: list[dict[str, Any]], option: str) -> None:
    """ReloadTables (DMS API Reference): only for a running task; validate-only needs validation enabled."""
    task = backend.replication_tasks.get(task_arn)
    if task is None:
        raise ResourceNotFoundFault("Replication task could not be found.")
    status = _task_status(task)
    if status != "running":
        raise InvalidResourceStateFault(
            f"Replication task {task.id} is {status}; tables reload only while it runs"
        )
    if option not in ("data-reload", "validate-only"):
        raise dms_models.ValidationError(f"Invalid ReloadOption: {option}")
    if option == "validate-only" and not _validates(_task_info(backend, task)):
        # "This option applies only when validation is enabled for the task" (the error is not documented)
        raise InvalidResourceStateFault(
            f"Replication task {task.id} does not validate: nothing to re-validate"
        )
    names = [(t.get("SchemaName", ""), t.get("TableName", "")) for t in tables]
    reload = getattr(current_engine(), "reload_tables", None)
    if reload is not None:  # an engine without it reloads nothing
        reload(task.arn, names, option)


def _response_reload_tables(self: Any) -> str:
    params = json.loads(self.body or "{}")
    reload_tables(
        self.dms_backend,
        params.get("ReplicationTaskArn", ""),
        params.get("TablesToReload", []),
        params.get("ReloadOption") or "data-reload",
    )
    return json.dumps({"ReplicationTaskArn": params.get("ReplicationTaskArn")})


def _table_statistics(self: _Backend, replication_task_arn: str, filters: list[dict[str, Any]]) -> list[dict]:
    task = self.replication_tasks.get(replication_task_arn)
    if task is None:
        raise ResourceNotFoundFault("Replication task could not be found.")
    runtime = current_engine().task_runtime(task.arn) if getattr(task, "_pg2rds_started", False) else None
    tables = list(runtime.tables) if runtime else []
    attributes = {"schema-name": "schema_name", "table-name": "table_name", "table-state": "state"}
    for item in filters or []:
        attribute = attributes.get(item.get("Name", ""))
        if attribute is None:
            raise dms_models.ValidationError(f"Invalid filter name: {item.get('Name')}")
        tables = [t for t in tables if getattr(t, attribute) in item.get("Values", [])]
    now = utcnow().isoformat()
    return [
        {
            "SchemaName": t.schema_name,
            "TableName": t.table_name,
            "Inserts": t.inserts,
            "Deletes": t.deletes,
            "Updates": t.updates,
            "Ddls": 0,
            "AppliedInserts": t.inserts,
            "AppliedDeletes": t.deletes,
            "AppliedUpdates": t.updates,
            "AppliedDdls": 0,
            "FullLoadRows": t.full_load_rows,
            "FullLoadCondtnlChkFailedRows": 0,
            "FullLoadErrorRows": 0,
            "FullLoadReloaded": False,
            "LastUpdateTime": now,
            "TableState": t.state,
            "ValidationPendingRecords": t.validation_pending_records,
            "ValidationFailedRecords": t.validation_failed_records,
            "ValidationSuspendedRecords": t.validation_suspended_records,
            "ValidationState": t.validation_state,
            **({"ValidationStateDetails": t.validation_state_details} if t.validation_state_details else {}),
        }
        for t in tables
    ]


# ------------------------------------------------------------------------------------- certificates


class InvalidCertificateFault(DmsClientError):
    def __init__(self, message: str) -> None:
        super().__init__("InvalidCertificateFault", message)


def _certificates(backend: _Backend) -> dict[str, dict[str, Any]]:
    """The backend's imported certificates by ARN (moto's DMS has none)."""
    if not hasattr(backend, "_pg2rds_certificates"):
        backend._pg2rds_certificates = {}
    return backend._pg2rds_certificates


def _certificate_pem(backend: _Backend, certificate_arn: str | None) -> str:
    return _certificates(backend).get(certificate_arn or "", {}).get("CertificatePem", "")


def import_certificate(backend: _Backend, identifier: str, pem: str) -> dict[str, Any]:
    """ImportCertificate (DMS API Reference): a PEM X.509 certificate or bundle under a new identifier;
    anything else is ``InvalidCertificateFault``."""
    if any(c["CertificateIdentifier"] == identifier for c in _certificates(backend).values()):
        raise ResourceAlreadyExistsFault("The resource you are attempting to create already exists.")
    try:
        bundle = x509.load_pem_x509_certificates(pem.encode())
    except ValueError:
        raise InvalidCertificateFault("The certificate is not a valid PEM X.509 certificate.") from None
    first = bundle[0]
    digest = hashlib.sha256(identifier.encode()).hexdigest()[:26].upper()
    certificate = {
        "CertificateIdentifier": identifier,
        "CertificateArn": f"arn:aws:dms:{backend.region_name}:{backend.account_id}:cert:{digest}",
        "CertificateCreationDate": utcnow().timestamp(),
        "CertificatePem": pem,
        "CertificateOwner": backend.account_id,
        "ValidFromDate": first.not_valid_before_utc.timestamp(),
        "ValidToDate": first.not_valid_after_utc.timestamp(),
        "SigningAlgorithm": first.signature_hash_algorithm.name if first.signature_hash_algorithm else "",
        "KeyLength": getattr(first.public_key(), "key_size", 0),
    }
    _certificates(backend)[certificate["CertificateArn"]] = certificate
    return certificate


def _response_import_certificate(self: Any) -> str:
    params = json.loads(self.body or "{}")
    certificate = import_certificate(
        self.dms_backend, params.get("CertificateIdentifier", ""), params.get("CertificatePem") or ""
    )
    return json.dumps({"Certificate": certificate})


# ---------------------------------------------------------------------------------- response methods


def _response_create_replication_task(self: Any) -> str:
    """moto drops CreateReplicationTask's CdcStartPosition: keep it on the task and show it, as DMS does."""
    start = self._get_param("CdcStartPosition") or ""
    if start and self._get_param("CdcStartTime"):
        raise InvalidParameterCombinationException(
            "Specifying both CdcStartPosition and CdcStartTime is not allowed"
        )
    body = json.loads(_original["response_create_replication_task"](self))
    if start:
        task = self.dms_backend.replication_tasks[body["ReplicationTask"]["ReplicationTaskArn"]]
        task._pg2rds_cdc_start_position = start
        body["ReplicationTask"]["CdcStartPosition"] = start
    return json.dumps(body)


def _response_start_replication_task(self: Any) -> str:
    task = self.dms_backend.start_replication_task(
        replication_task_arn=self._get_param("ReplicationTaskArn"),
        start_replication_task_type=self._get_param("StartReplicationTaskType") or "start-replication",
    )
    data = _original["task_to_dict"](task)
    data["Status"] = "starting"  # as DMS answers; the engine's view shows from the next describe
    data.pop("ReplicationTaskStats", None)
    return json.dumps({"ReplicationTask": data})


def _response_describe_table_statistics(self: Any) -> str:
    params = json.loads(self.body or "{}")
    rows = _table_statistics(self.dms_backend, params.get("ReplicationTaskArn"), params.get("Filters", []))
    page = int(params.get("MaxRecords") or 100)
    start = int(params.get("Marker") or 0)
    result: dict[str, Any] = {
        "ReplicationTaskArn": params.get("ReplicationTaskArn"),
        "TableStatistics": rows[start : start + page],
    }
    if start + page < len(rows):
        result["Marker"] = str(start + page)
    return json.dumps(result)


def _patch() -> None:
    backend = dms_models.DatabaseMigrationServiceBackend
    _original.update(
        task_to_dict=_Task.to_dict,
        create_endpoint=backend.create_endpoint,
        delete_endpoint=backend.delete_endpoint,
        delete_replication_instance=backend.delete_replication_instance,
        describe_endpoints=backend.describe_endpoints,
        describe_replication_instances=backend.describe_replication_instances,
    )
    _Task.to_dict = _task_to_dict
    backend.create_endpoint = _create_endpoint
    backend.describe_endpoints = _not_found_when_empty("describe_endpoints", "Endpoints")
    backend.describe_replication_instances = _not_found_when_empty(
        "describe_replication_instances", "replication instances"
    )
    backend.describe_replication_tasks = _describe_replication_tasks
    backend.delete_endpoint = _delete_endpoint
    backend.delete_replication_instance = _delete_replication_instance
    backend.test_connection = _test_connection
    backend.describe_connections = _describe_connections
    backend.start_replication_task = _start_replication_task
    backend.stop_replication_task = _stop_replication_task
    backend.delete_replication_task = _delete_replication_task
    response = dms_responses.DatabaseMigrationServiceResponse
    _original["response_create_replication_task"] = response.create_replication_task
    response.create_replication_task = _response_create_replication_task
    response.start_replication_task = _response_start_replication_task
    response.describe_table_statistics = _response_describe_table_statistics
    response.import_certificate = _response_import_certificate
    response.reload_tables = _response_reload_tables
    # "creating" in the create response, "available" from the next describe (tests may override this
    # with state_manager.set_transition("dms::replicationinstance", ...)).
    state_manager.register_default_transition(
        "dms::replicationinstance", {"progression": "manual", "times": 1}
    )
