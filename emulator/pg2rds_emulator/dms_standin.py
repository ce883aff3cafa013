"""``StandInEngine``: a :class:`~pg2rds_emulator.dms_engine.DmsEngine` that really moves data, like DMS.

It connects to the PostgreSQL servers named by a task's endpoints and behaves as DMS does towards them:

- **Full load**: the task's ``TableMappings`` select the source's tables by DMS's rules, not pg2rds's
  (:mod:`standin_selection`: DMS's wildcards, partitioned parents selectable). Each table is one
  ``COPY (SELECT cols FROM ONLY t) TO STDOUT`` (a partitioned parent without ONLY) on the source streamed
  through a bounded pipe into ``COPY t (cols) FROM STDIN`` on the target (binary when both servers share
  a major version), in one target transaction per table, up to ``MaxFullLoadSubTasks`` tables at once
  (capped at :data:`LOCAL_MAX_SUBTASKS`). Every target session first runs the endpoint's
  ``AfterConnectScript`` (``SET session_replication_role = replica`` keeps FKs and triggers quiet).
  ``TargetTablePrepMode`` is honoured: DO_NOTHING, TRUNCATE_BEFORE_LOAD (``TRUNCATE ONLY`` the table,
  which fails, as with DMS, when another table's foreign key references it), DROP_AND_CREATE (columns,
  types, NOT NULL and primary key only; ``DROP ... CASCADE`` like DMS; generated columns are not
  recreated since they are not copied; with ``CreatePkAfterFullLoad`` the key is added once the table's
  rows are in, in its load's transaction). A failing table stops the task with a failure naming the table.

- **CDC** (``full-load-and-cdc``, ``cdc``): like DMS given ``SlotName`` and ``PluginName=test-decoding``,
  the stand-in reads the slot pg2rds created before the task, and creates nothing on the source: no slot
  (a ``SlotName`` that does not exist in the source database fails the task, as DMS "verifies that the
  specified logical replication slot exists"), no publication (test_decoding needs none). Only a task
  without ``SlotName`` gets a slot made by the stand-in, as DMS makes its own. A ``cdc`` task's
  ``CdcStartPosition`` (an LSN) is where streaming starts (or the slot's confirmed position, if later).

  The slot exists before the full load, so its stream holds changes the load copies too. DMS copies each
  table and then applies the changes captured while it loaded ("cached changes"), ignoring the conflicts
  the overlap causes (``FullLoadIgnoreConflicts``). The stand-in draws that line exactly: each table is
  copied in a REPEATABLE READ transaction whose snapshot (``pg_current_snapshot()``) is kept, and a
  streamed change is applied to a table only if its transaction is not in that snapshot (see
  :class:`~pg2rds_emulator.standin_testdecoding.LoadSnapshot`), so every change lands exactly once.

  After the load a replication connection streams the slot (``START_REPLICATION`` with test_decoding's
  ``include-xids``/``include-timestamp``); its text is parsed (:mod:`standin_testdecoding`) and applied as
  SQL on one target session (with the AfterConnectScript) in one target transaction per source
  transaction; the slot's flush position is confirmed after each commit. UPDATE and DELETE on a table
  without a replica identity are ignored, as DMS ignores them (no before-image in the WAL), and so is
  TRUNCATE, which DMS does not capture during CDC (both: "Using a PostgreSQL database as an AWS DMS
  source", limitations).

  Why decode in the stand-in instead of a native SUBSCRIPTION on the target: it is DMS's architecture
  (the target never connects to the source, which an RDS target could not), it needs no superuser on the
  target, it runs the AfterConnectScript on the apply session like DMS, and it yields what
  DescribeTableStatistics reports (per-table inserts/updates/deletes) and CDC latency from the source
  commit timestamps. Stopping is just closing our connection: no subscription to dismantle.

- **Stop / delete**: the slot stays on the source, as DMS leaves it; pg2rds's cleanup phase drops it. A
  stopped or failed task no longer holds it: its walsender has gone when the stop returns.
  Starting a task again reads the same slot from where it was confirmed; a stopped CDC task that had
  finished its full load resumes streaming without reloading (DMS's resume-processing).

- **Data validation**: with the task's ``ValidationSettings.EnableValidation``, each table is compared with
  the target after its full load and every changed row again during CDC, failures written to the target's
  ``awsdms_validation_failures_v1``, as DMS does (:mod:`standin_validation`); ``ReloadTables``
  ``validate-only`` validates tables again.

- **Recoverable errors**: a lost connection during CDC is retried as the task's ``ErrorBehavior`` says
  (``RecoverableErrorCount``/``RecoverableErrorInterval``), resuming from the slot's confirmed position.

The slot's confirmed position advances after each applied commit and, when idle, to the position the
server's keepalives report. LOB modes follow the task's settings (:mod:`standin_lobs`), apply and table
errors its ``ErrorBehavior`` (:mod:`standin_errors`); large objects are never moved and UNLOGGED tables'
changes never replicated, as with DMS. Known gaps: values are applied in text form, so REPLICA IDENTITY
FULL rows are matched on ``col::text``; sequences and DDL are ignored.
"""

import contextlib
import json
import logging
import re
import select
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from datetime import datetime
from typing import Any

import psycopg2
import psycopg2.extensions
import psycopg2.extras
from psycopg2 import sql

from pg2rds.postgres.selection import TableName
from pg2rds.postgres.sqltext import server_message
from pg2rds.tls import pem_file
from pg2rds_emulator.dms_engine import EndpointInfo, TableStats, TaskInfo, TaskRuntime, missing_slot_message
from pg2rds_emulator.standin_changes import (
    UNCHANGED,
    Begin,
    Commit,
    Delete,
    Insert,
    Relation,
    Update,
    Value,
)
from pg2rds_emulator.standin_copy import (
    TableMeta,
    add_primary_key_statement,
    binary_possible,
    copy_in_statement,
    copy_out_statement,
    drop_and_create_statements,
    first_oversized,
    oversized_lobs_statement,
    piped_copy,
    table_metadata,
    timestamp_as_dms,
    truncate_statement,
)
from pg2rds_emulator.standin_errors import ApplyStopped, ErrorPolicies
from pg2rds_emulator.standin_lobs import LobSettings, LobTruncation
from pg2rds_emulator.standin_selection import dms_selected_tables
from pg2rds_emulator.standin_testdecoding import (
    PLUGIN_OPTIONS,
    LoadSnapshot,
    Translator,
    UnknownColumns,
    parse,
    payload_codec,
    table_shapes,
)
from pg2rds_emulator.standin_validation import Key, ValidationSettings, Validator, control_schema

log = logging.getLogger(__name__)

#: Two cores locally: more parallel COPYs only contend.
LOCAL_MAX_SUBTASKS = 4
DEFAULT_MAX_SUBTASKS = 8
CONNECT_TIMEOUT_SECONDS = 5
#: How long stop/delete/shutdown wait for a task's threads.
STOP_TIMEOUT_SECONDS = 30
#: How long a stopping task waits for its walsender to let go of the slot once its connection is closed.
SLOT_RELEASE_SECONDS = 10
#: With no message for this long and no open transaction, CDC is idle and caught up: latency 0.
IDLE_SECONDS = 1.0
POLL_SECONDS = 0.2
#: The slot is told what has been applied at most this often while changes stream in, and at once when
#: the stream goes idle. DMS confirms what it has applied; how often is not documented. Before, the
#: driver's 10 s status interval decided, so a cutover waited 0–10 s for the slot whatever DMS had done.
CONFIRM_SECONDS = 0.2

SSL_MODES = {"none": "disable", "require": "require", "verify-ca": "verify-ca", "verify-full": "verify-full"}

FULL_LOAD_ONLY_FINISHED = "Stop Reason FULL_LOAD_ONLY_FINISHED"
STOP_NORMAL = "Stop Reason NORMAL"


class _Stopped(Exception):
    """The task was asked to stop while this work was under way."""


class _ValidateOnly(Exception):
    """A validation-only task copies nothing: the table is validated as the target has it."""


def connect(
    endpoint: EndpointInfo, application_name: str = "pg2rds-dms-standin", replication: bool = False
) -> Any:
    kwargs: dict[str, Any] = {
        "host": endpoint.server_name,
        "port": endpoint.port,
        "dbname": endpoint.database_name,
        "user": endpoint.username,
        "password": endpoint.password,
        "connect_timeout": CONNECT_TIMEOUT_SECONDS,
        "sslmode": SSL_MODES.get(endpoint.ssl_mode, "prefer"),
        "application_name": application_name,
    }
    if endpoint.ssl_mode in ("verify-ca", "verify-full") and endpoint.certificate_pem:
        # DMS verifies the server with the endpoint's certificate (CertificateArn) and nothing else
        kwargs["sslrootcert"] = pem_file(endpoint.certificate_pem, "pg2rds-dms-cert")
    if replication:
        kwargs["connection_factory"] = psycopg2.extras.LogicalReplicationConnection
    else:
        # Both ends of a COPY speak UTF-8 whatever their servers store: the bytes pass through this process
        # unread, and a LATIN1 source's 'é' (0xe9) reached a UTF8 target as an invalid byte sequence. DMS
        # converts from the source's encoding to the target's; so does each server here, to and from UTF-8.
        kwargs["client_encoding"] = "UTF8"
    return psycopg2.connect(**kwargs)


def default_slot_name(identifier: str) -> str:
    return ("dms_" + re.sub(r"[^a-z0-9_]", "_", identifier.lower()))[:63]


#: The plugin the stand-in decodes: what ``PluginName=test-decoding`` names.
PLUGIN = "test_decoding"
_LSN = re.compile(r"^[0-9A-Fa-f]{1,8}/[0-9A-Fa-f]{1,8}$")


class StandInEngine:
    """Runs each started task on background threads; every method returns promptly and is thread-safe."""

    def __init__(self, max_subtasks: int = LOCAL_MAX_SUBTASKS) -> None:
        self.max_subtasks = max_subtasks
        self._tasks: dict[str, _Task] = {}
        self._lock = threading.Lock()

    def test_connection(self, endpoint: EndpointInfo) -> tuple[str, str]:
        try:
            conn = connect(endpoint, "pg2rds-dms-test-connection")
        except psycopg2.Error as error:
            return "failed", server_message(error, endpoint.password)
        conn.close()
        return "successful", ""

    def start_task(self, task: TaskInfo) -> None:
        with self._lock:
            previous = self._tasks.get(task.arn)
            if previous is not None and previous.is_active():
                return  # already running: DMS refuses a second start, moto_dms says so
            runner = _Task(task, self.max_subtasks, previous)
            self._tasks[task.arn] = runner
        if previous is not None:
            previous.stop(STOP_NORMAL)
        runner.start()

    def stop_task(self, task_arn: str) -> None:
        with self._lock:
            runner = self._tasks.get(task_arn)
        if runner is not None:
            runner.stop(STOP_NORMAL)

    def delete_task(self, task_arn: str) -> None:
        with self._lock:
            runner = self._tasks.pop(task_arn, None)
        if runner is not None:
            runner.stop(STOP_NORMAL)

    def task_runtime(self, task_arn: str) -> TaskRuntime | None:
        with self._lock:
            runner = self._tasks.get(task_arn)
        return runner.runtime() if runner is not None else None

    def reload_tables(self, task_arn: str, tables: list[tuple[str, str]], option: str) -> None:
        """ReloadTables: ``validate-only`` validates the tables again in full (API reference: "applies only
        when validation is enabled for the task"). ``data-reload`` is not modelled."""
        with self._lock:
            runner = self._tasks.get(task_arn)
        if runner is None:
            return
        if option != "validate-only":
            raise NotImplementedError("the DMS stand-in does not reload tables (ReloadOption data-reload)")
        if runner.validation is not None:
            runner.validation.revalidate([TableName(schema, table) for schema, table in tables])

    def shutdown(self) -> None:
        """Stop every task and wait for its threads (process exit)."""
        with self._lock:
            runners = list(self._tasks.values())
        for runner in runners:
            runner.stop(STOP_NORMAL)


class _Task:
    """One started replication task: its state (under ``lock``) and the threads doing its work."""

    def __init__(self, info: TaskInfo, max_subtasks: int, previous: "_Task | None") -> None:
        self.info = info
        settings = json.loads(info.settings or "{}") or {}
        full_load = settings.get("FullLoadSettings") or {}
        self.prep_mode = full_load.get("TargetTablePrepMode") or "DO_NOTHING"
        #: CreatePkAfterFullLoad: a table DMS creates (DROP_AND_CREATE) gets its primary key once its rows
        #: are in; DMS creates nothing in the other modes, so there it changes nothing.
        self.key_after_rows = self.prep_mode == "DROP_AND_CREATE" and bool(
            full_load.get("CreatePkAfterFullLoad")
        )
        self.lobs = LobSettings.of_task(settings, info.source.postgres_settings)
        self.errors = ErrorPolicies.of_task(settings)
        #: Apply errors so far per table (for ApplyErrorEscalationCount), and the tables suspended.
        self.apply_errors: dict[tuple[str, str], int] = {}
        self.suspended: set[tuple[str, str]] = set()
        #: The selected tables' columns (with their LOB kinds), read when the task starts.
        self.metadata: dict[TableName, TableMeta] = {}
        wanted = int(full_load.get("MaxFullLoadSubTasks") or DEFAULT_MAX_SUBTASKS)
        self.subtasks = max(1, min(wanted, max_subtasks))
        self.given_slot = info.source.postgres_settings.get("SlotName") or ""
        self.slot = self.given_slot or default_slot_name(info.identifier)
        self.uses_cdc = info.migration_type in ("full-load-and-cdc", "cdc")
        errors = settings.get("ErrorBehavior") or {}
        #: DMS's defaults: retry a recoverable error for ever, 5 s apart.
        self.recoverable_count = int(errors.get("RecoverableErrorCount", -1))
        self.recoverable_interval = float(errors.get("RecoverableErrorInterval", 5))
        #: The end of the last source transaction committed on the target: a resumed stream starts there,
        #: not where the slot last confirmed, so no transaction is applied twice.
        self.applied_lsn = 0
        #: Since when the stream is down (a recoverable error): the latency grows meanwhile, as with DMS.
        self.outage_since: float | None = None
        # a stopped CDC task that finished its full load resumes streaming only (resume-processing)
        self.resume = bool(previous and previous.uses_cdc and previous.full_load_finished and self.uses_cdc)
        validation = ValidationSettings.of_task(settings)
        #: DMS data validation (:mod:`standin_validation`), when the task's ValidationSettings enable it.
        self.validation: Validator | None = (
            Validator(
                validation,
                info.arn.rsplit(":", 1)[-1],
                info.source,
                info.target,
                control_schema(settings),
                self.lobs,
                self.uses_cdc,
                previous.validation if previous and self.resume else None,
            )  # fmt: skip
            if validation.enabled
            else None
        )
        self.validation_only = validation.enabled and validation.validation_only
        #: Up to where the source's changes are applied on the target (the end of the last applied commit,
        #: or the server's WAL end while idle), and since when the stream is idle: validation waits for it.
        self.replicated_lsn = 0
        self.stream_idle_since: float | None = None

        self.lock = threading.RLock()
        self.stop_event = threading.Event()
        self.status = "starting"
        self.stop_reason = ""
        self.failure = ""
        self.full_load_finished = self.resume
        self.latency_source: int | None = None
        self.latency_target: int | None = None
        self.started = time.monotonic()
        self.ended: float | None = None
        self.tables: dict[TableName, TableStats] = {}
        #: The snapshot each table was copied in: its changes from transactions in it are not applied.
        self.snapshots: dict[TableName, LoadSnapshot] = {}
        if self.resume and previous is not None:
            self.tables = {name: replace(stats) for name, stats in previous.runtime_tables().items()}
            self.snapshots = dict(previous.snapshots)
            self.applied_lsn = previous.applied_lsn
            self.replicated_lsn = previous.replicated_lsn
        self._connections: set[Any] = set()
        self.binary = False
        self.thread = threading.Thread(target=self._run, name=f"standin-{info.identifier}", daemon=True)

    # -- control (any thread) ----------------------------------------------------------------------------
    def start(self) -> None:
        self.thread.start()

    def is_active(self) -> bool:
        with self.lock:
            return self.status in ("starting", "running", "stopping")

    def stop(self, reason: str) -> None:
        with self.lock:
            if self.status in ("starting", "running"):
                self.status = "stopping"
                self.stop_reason = reason
        self.stop_event.set()
        self._cancel_all()
        if self.thread.is_alive() and self.thread is not threading.current_thread():
            self.thread.join(STOP_TIMEOUT_SECONDS)
            if self.thread.is_alive():
                log.warning("task %s did not stop within %ss", self.info.identifier, STOP_TIMEOUT_SECONDS)
        if self.validation is not None and self.thread is not threading.current_thread():
            self.validation.join(STOP_TIMEOUT_SECONDS)
        with self.lock:
            if self.status == "stopping":
                self.status = "stopped"
            self.ended = self.ended or time.monotonic()

    def runtime_tables(self) -> dict[TableName, TableStats]:
        with self.lock:
            return dict(self.tables)

    def runtime(self) -> TaskRuntime:
        with self.lock:
            states = [stats.state for stats in self.tables.values()]
            loaded = states.count("Table completed")
            total = len(states)
            percent = 100 if self.full_load_finished else (loaded * 100 // total if total else 0)
            outage = round(time.time() - self.outage_since) if self.outage_since is not None else 0
            return TaskRuntime(
                status=self.status,
                stop_reason=self.stop_reason if self.status in ("stopped", "failed") else "",
                last_failure_message=self.failure,
                full_load_percent=percent,
                tables_loaded=loaded,
                tables_loading=states.count("Table loading"),
                tables_queued=states.count("Before load"),
                tables_errored=states.count("Table error"),
                elapsed_millis=int(((self.ended or time.monotonic()) - self.started) * 1000),
                full_load_finished=self.full_load_finished,
                cdc_latency_source_seconds=_at_least(self.latency_source, outage),
                cdc_latency_target_seconds=_at_least(self.latency_target, outage),
                tables=[self._rendered(stats) for stats in self.tables.values()],
            )

    def _rendered(self, stats: TableStats) -> TableStats:
        copy = replace(stats)
        return self.validation.render(copy) if self.validation is not None else copy

    # -- what the validator sees of the task (standin_validation.TaskView) ---------------------------------
    def connection(self, endpoint: EndpointInfo, purpose: str) -> Any:
        return self._connection(endpoint, purpose)

    def replication_position(self) -> tuple[int, float | None]:
        with self.lock:
            return self.replicated_lsn, self.stream_idle_since

    def _fail(self, message: str) -> None:
        with self.lock:
            if self.status not in ("starting", "running"):
                return
            log.error("task %s failed: %s", self.info.identifier, message)
            self.status = "failed"
            self.stop_reason = "Stop Reason FATAL_ERROR"
            self.failure = message
            self.ended = time.monotonic()
        self.stop_event.set()
        self._cancel_all()

    def _cancel_all(self) -> None:
        with self.lock:
            connections = list(self._connections)
        for conn in connections:
            with contextlib.suppress(Exception):
                conn.cancel()

    # -- connections -------------------------------------------------------------------------------------
    @contextlib.contextmanager
    def _connection(self, endpoint: EndpointInfo, purpose: str) -> Iterator[Any]:
        """A tracked connection (cancelled on stop); target sessions run the AfterConnectScript first."""
        conn = connect(endpoint, f"pg2rds-dms-standin-{purpose}")
        with self.lock:
            self._connections.add(conn)
        try:
            if self.stop_event.is_set():
                raise _Stopped()
            script = endpoint.postgres_settings.get("AfterConnectScript")
            if endpoint.endpoint_type == "target" and script:
                conn.autocommit = True
                with conn.cursor() as cur:
                    cur.execute(script)
            conn.autocommit = False
            yield conn
        finally:
            with self.lock:
                self._connections.discard(conn)
            conn.close()

    # -- the task's main thread --------------------------------------------------------------------------
    def _run(self) -> None:
        try:
            with self._connection(self.info.source, "metadata") as src:
                src.autocommit = True
                tables = dms_selected_tables(src, self.info.table_mappings)
                metadata = table_metadata(src, tables)
                self.metadata = metadata
                source_major = src.server_version // 10000
                if self.uses_cdc and not self._check_slot(src):
                    return
                if self.validation is not None:
                    self.validation.prepare(self, src, metadata)
            with self._connection(self.info.target, "metadata") as tgt:
                self.binary = source_major == tgt.server_version // 10000
            with self.lock:
                for name in tables:
                    self.tables.setdefault(name, TableStats(schema_name=name.schema, table_name=name.table))
                if self.status == "starting":
                    self.status = "running"
            if self.info.migration_type != "cdc" and not self.resume:
                self._full_load([metadata[name] for name in tables if name in metadata])
            elif self.validation is not None and not self.resume:
                # a cdc task validates the rows already there before the changes (page "AWS DMS data
                # validation")
                for name in tables:
                    self.validation.table_loaded(name, 0)
            if self.stop_event.is_set():
                return
            if self.validation is not None and not self.uses_cdc:
                self.validation.wait_done(self.stop_event)  # a full-load task ends once it is validated
                if self.stop_event.is_set():
                    return
            with self.lock:
                # a cdc-only task has no full load to finish (DMS reports no FullLoadFinishDate)
                self.full_load_finished = self.info.migration_type != "cdc"
                if self.info.migration_type == "cdc":
                    for stats in self.tables.values():
                        stats.state = "Table completed"
                if not self.uses_cdc and self.status == "running":
                    self.status = "stopped"
                    self.stop_reason = FULL_LOAD_ONLY_FINISHED
                    self.ended = time.monotonic()
            if self.uses_cdc:
                self._replicate(tables)
        except _Stopped:
            pass
        except Exception as error:
            if not self.stop_event.is_set():
                log.exception("task %s", self.info.identifier)
                self._fail(server_message(error, self.info.source.password))

    def _check_slot(self, src: Any) -> bool:
        """The slot must exist in the source database with our plugin (DMS checks the endpoint's slot
        before a CDC load); without ``SlotName`` DMS makes its own, and so does the stand-in. A
        ``CdcStartPosition`` later than the slot's confirmed position moves the slot there. False after
        failing the task."""
        start = self.info.cdc_start_position
        if start and not _LSN.match(start):
            self._fail(
                f"Invalid CdcStartPosition '{start}': for a PostgreSQL source it must be a log sequence "
                "number such as 0/16B3748"
            )
            return False
        with src.cursor() as cur:
            cur.execute(
                "SELECT plugin FROM pg_replication_slots "
                "WHERE slot_name = %s AND database = current_database()",
                (self.slot,),
            )
            row = cur.fetchone()
            if row is None and not self.given_slot:
                cur.execute("SELECT pg_create_logical_replication_slot(%s, %s)", (self.slot, PLUGIN))
                row = (PLUGIN,)
        if row is None:
            self._fail(missing_slot_message(self.slot, self.info.source.database_name))
            return False
        if row[0] != PLUGIN:
            self._fail(
                f"Replication slot '{self.slot}' uses the output plugin '{row[0]}', but the endpoint's "
                f"PluginName is test-decoding ({PLUGIN})"
            )
            return False
        if start:
            # START_REPLICATION at a later LSN still sends the transactions between the slot's confirmed
            # position and it; confirming up to the start position first is how a consumer skips them
            with src.cursor() as cur:
                cur.execute(
                    "SELECT pg_replication_slot_advance(slot_name, %s::pg_lsn) FROM pg_replication_slots "
                    "WHERE slot_name = %s AND confirmed_flush_lsn < %s::pg_lsn",
                    (start, self.slot, start),
                )
        return True

    # -- full load ---------------------------------------------------------------------------------------
    def _full_load(self, tables: list[TableMeta]) -> None:
        with ThreadPoolExecutor(self.subtasks, thread_name_prefix=f"standin-{self.info.identifier}") as pool:
            for future in [pool.submit(self._load_table, meta) for meta in tables]:
                future.result()

    def _set_table(self, name: TableName, **changes: Any) -> None:
        with self.lock:
            stats = self.tables[name]
            for key, value in changes.items():
                setattr(stats, key, value)

    def _load_table(self, meta: TableMeta) -> None:
        if self.stop_event.is_set():
            return
        self._set_table(meta.name, state="Table loading", full_load_rows=0)
        try:
            with (
                self._connection(self.info.source, "load") as src,
                self._connection(self.info.target, "load") as tgt,
            ):
                if self.uses_cdc:
                    # one snapshot for the copy and for telling which streamed changes it already holds
                    src.set_session(
                        isolation_level=psycopg2.extensions.ISOLATION_LEVEL_REPEATABLE_READ, readonly=True
                    )
                    with src.cursor() as cur:
                        cur.execute("SELECT pg_current_snapshot()::text")
                        snapshot = LoadSnapshot.parse(cur.fetchone()[0])
                if self.validation_only:
                    # ValidationOnly: nothing is migrated, the target is validated as it is
                    src.rollback()
                    raise _ValidateOnly()
                self._check_lob_sizes(src, meta)
                with tgt.cursor() as cur:
                    if self.prep_mode == "TRUNCATE_BEFORE_LOAD":
                        cur.execute(truncate_statement(meta))
                    elif self.prep_mode == "DROP_AND_CREATE":
                        for statement in drop_and_create_statements(
                            meta, primary_key=not self.key_after_rows
                        ):
                            cur.execute(statement)
                binary = self.binary and binary_possible(meta, self.lobs)
                rows = piped_copy(
                    src,
                    copy_out_statement(meta, binary, self.lobs),
                    tgt,
                    copy_in_statement(meta, binary, self.lobs),
                )
                if self.stop_event.is_set():
                    raise _Stopped()
                key = add_primary_key_statement(meta) if self.key_after_rows else None
                if key is not None:  # before the table counts as loaded, and before changes apply to it
                    with tgt.cursor() as cur:
                        cur.execute(key)
                tgt.commit()
                src.rollback()
            with self.lock:
                if self.uses_cdc:
                    self.snapshots[meta.name] = snapshot
                self.tables[meta.name].state = "Table completed"
                self.tables[meta.name].full_load_rows = rows
            if self.validation is not None:
                self.validation.table_loaded(meta.name, rows)
        except _ValidateOnly:
            with self.lock:
                if self.uses_cdc:
                    self.snapshots[meta.name] = snapshot
                self.tables[meta.name].state = "Table completed"
            if self.validation is not None:
                self.validation.table_loaded(meta.name, 0)
        except Exception as error:
            if self.stop_event.is_set():
                self._set_table(meta.name, state="Before load", full_load_rows=0)
                return
            self._set_table(meta.name, state="Table error")
            if self.validation is not None:
                self.validation.table_failed(meta.name)
            message = server_message(error, self.info.target.password)
            message = f"Failed to load table '{meta.name.schema}'.'{meta.name.table}': {message}"
            if self.errors.table_error_stops:
                self._fail(message)
            else:  # TableErrorPolicy SUSPEND_TABLE: the other tables go on
                log.warning("task %s: %s (table suspended)", self.info.identifier, message)

    def _check_lob_sizes(self, src: Any, meta: TableMeta) -> None:
        """Limited LOB mode with FailTasksOnLobTruncation: a LOB above LobMaxSize fails the table (and so
        the task) before anything of it is written, naming the column."""
        statement = oversized_lobs_statement(meta, self.lobs)
        if statement is None:
            return
        with src.cursor() as cur:
            cur.execute(statement)
            message = first_oversized(meta, self.lobs, tuple(cur.fetchone()))
        if message:
            raise LobTruncation(message)

    def lob_value(self, schema: str, table: str, column: str, value: Any) -> Any:
        """A changed column's value as the task's LOB mode writes it (cut, or LobTruncation raised)."""
        meta = self.metadata.get(TableName(schema, table))
        kind = meta.lob_kind(column) if meta else ""
        where = f"'{column}' of table '{schema}'.'{table}'"
        return self.lobs.apply_to_text(where, kind, value) if isinstance(value, str) else value

    def apply_error(self, table: tuple[str, str], operation: str, message: str) -> None:
        """An apply error on ``table``, answered as the task's ErrorBehavior says: ApplyStopped raised (the
        task fails with the message), the table suspended, or the change skipped and counted."""
        with self.lock:
            count = self.apply_errors[table] = self.apply_errors.get(table, 0) + 1
        decision = self.errors.decide(operation, count)
        policy = f"ApplyError{operation.title()}Policy {self.errors.for_change(operation)}"
        if decision == "stop":
            raise ApplyStopped(f"{message} ({policy}, {count} apply error(s) on the table)")
        log.warning("task %s: %s.%s: %s (%s: %s)", self.info.identifier, *table, message, policy, decision)
        if decision == "suspend":
            with self.lock:
                self.suspended.add(table)
                stats = self.tables.get(TableName(*table))
                if stats is not None:
                    stats.state = "Table error"

    def is_suspended(self, table: tuple[str, str]) -> bool:
        with self.lock:
            return table in self.suspended

    def lob_copied(self, schema: str, table: str, column: str) -> bool:
        """False for a LOB column when the task was created without LOB support (SupportLobs false)."""
        meta = self.metadata.get(TableName(schema, table))
        return self.lobs.copies(meta.lob_kind(column) if meta else "")

    # -- CDC ---------------------------------------------------------------------------------------------
    def _replicate(self, tables: list[TableName]) -> None:
        """Stream the slot until stopped. A lost connection (a source or target restart, a network cut) is a
        recoverable error, as DMS's ``ErrorBehavior`` says: after ``RecoverableErrorInterval`` seconds the
        stream resumes from the last transaction applied, up to ``RecoverableErrorCount`` times in a row
        (-1: for ever). Anything else fails the task."""
        failures = 0
        repl = None
        try:
            while not self.stop_event.is_set():
                try:
                    if repl is None:
                        repl = connect(self.info.source, "pg2rds-dms-standin-cdc", replication=True)
                    self._stream(repl, tables)
                    return
                except psycopg2.Error as error:
                    if self.stop_event.is_set():
                        return
                    if not _connection_lost(error, repl):
                        raise
                    failures += 1
                    if 0 <= self.recoverable_count < failures:
                        raise
                    log.warning(
                        "task %s: recoverable error (retry %s in %ss): %s", self.info.identifier, failures,
                        self.recoverable_interval, server_message(error, self.info.source.password),
                    )  # fmt: skip
                    with self.lock:
                        self.outage_since = self.outage_since or time.time()
                    with contextlib.suppress(Exception):
                        repl.close()
                    repl = None
                    self.stop_event.wait(self.recoverable_interval)
        finally:
            if repl is not None:
                self._release_slot(repl)

    def _release_slot(self, repl: Any) -> None:
        """Close the replication connection and wait until its walsender has let go of the slot: the server
        ends it a moment after the client goes, and a stopped or failed task holds no slot (pg2rds's
        cleanup, or a test's teardown, drops it right after the stop). Bounded; a source that cannot be
        reached has no walsender left to wait for."""
        pid = None
        with contextlib.suppress(Exception):
            pid = repl.get_backend_pid()
        with contextlib.suppress(Exception):
            repl.close()
        if not pid:
            return
        deadline = time.monotonic() + SLOT_RELEASE_SECONDS
        try:
            conn = connect(self.info.source, "pg2rds-dms-standin-stop")
        except psycopg2.Error:
            return
        try:
            conn.autocommit = True
            with conn.cursor() as cur:
                while time.monotonic() < deadline:
                    cur.execute(
                        "SELECT 1 FROM pg_replication_slots WHERE slot_name = %s AND active_pid = %s",
                        (self.slot, pid),
                    )
                    if cur.fetchone() is None:
                        return
                    time.sleep(0.05)
            log.warning(
                "task %s: slot %s still active after %ss",
                self.info.identifier,
                self.slot,
                SLOT_RELEASE_SECONDS,
            )
        except psycopg2.Error:
            pass
        finally:
            conn.close()

    def _stream(self, repl: Any, tables: list[TableName]) -> None:
        """Stream the slot from the end of the last transaction committed on the target: after a lost
        connection the slot may not have confirmed it yet, and START_REPLICATION skips every transaction
        committed before the position it is given, so none is applied twice."""
        with (
            self._connection(self.info.source, "catalog") as catalog,
            self._connection(self.info.target, "cdc-apply") as tgt,
        ):
            catalog.autocommit = True
            translator = Translator(table_shapes(catalog, tables), self.snapshots)
            codec = payload_codec(catalog)
            if self.stop_event.is_set():  # stopped meanwhile: do not take the slot a cleanup may be dropping
                raise _Stopped()
            cur = repl.cursor()
            cur.start_replication(
                slot_name=self.slot,
                decode=False,
                start_lsn=self.applied_lsn,
                options=PLUGIN_OPTIONS,
                status_interval=10,
            )
            self._apply_stream(cur, _Applier(tgt, self), translator, catalog, tables, codec)

    def _apply_stream(
        self,
        cur: Any,
        applier: "_Applier",
        translator: Translator,
        catalog: Any,
        tables: list[TableName],
        codec: str,
    ) -> None:
        last_message = time.monotonic()
        confirmed = _Confirmed()
        try:
            while not self.stop_event.is_set():
                message = cur.read_message()
                with self.lock:
                    self.outage_since = None  # streaming again
                if message is None:
                    if not applier.in_transaction and cur.wal_end > applier.flushed:
                        # idle: the server's keepalives carry how far it has decoded; every commit
                        # before that was sent and applied, so the slot may move on (pg_recvlogical
                        # does the same), and WAL of tables not selected is not retained for ever
                        applier.flushed = cur.wal_end
                    if not applier.in_transaction and applier.flushed > confirmed.lsn:
                        confirmed.send(cur, applier.flushed)
                    if not applier.in_transaction:
                        with self.lock:
                            self.replicated_lsn = max(self.replicated_lsn, applier.flushed)
                            self.stream_idle_since = self.stream_idle_since or time.monotonic()
                    if not applier.in_transaction and time.monotonic() - last_message > IDLE_SECONDS:
                        with self.lock:
                            self.latency_source = self.latency_target = 0
                    select.select([cur], [], [], POLL_SECONDS)
                    continue
                last_message = time.monotonic()
                with self.lock:
                    self.stream_idle_since = None
                event = parse(bytes(message.payload).decode(codec))
                try:
                    changes = translator.messages(event, message.data_start)
                except UnknownColumns:
                    translator.refresh(table_shapes(catalog, tables))  # a column added meanwhile
                    changes = translator.messages(event, message.data_start)
                try:
                    for change in changes:
                        flushed = applier.handle(change)
                        if flushed:
                            confirmed.send(cur, flushed, at_once=False)
                except _RECOVERABLE:
                    raise  # the target's connection is gone: retried like the source's
                except (psycopg2.Error, LobTruncation, ApplyStopped) as error:
                    where = applier.current or ("?", "?")
                    self._fail(
                        f"Failed to apply changes to table '{where[0]}'.'{where[1]}': "
                        + server_message(error, self.info.target.password)
                    )
                    return
        finally:
            if applier.in_transaction:
                with contextlib.suppress(Exception):
                    applier.conn.rollback()
            if applier.flushed:
                with contextlib.suppress(Exception):
                    cur.send_feedback(flush_lsn=applier.flushed, force=True)

    def record_commit(
        self, counts: dict[tuple[str, str], list[int]], commit_time: datetime, received: float
    ) -> None:
        now = time.time()
        with self.lock:
            for (schema, table), (inserts, updates, deletes) in counts.items():
                stats = self.tables.setdefault(
                    TableName(schema, table),
                    TableStats(schema_name=schema, table_name=table, state="Table completed"),
                )
                stats.inserts += inserts
                stats.updates += updates
                stats.deletes += deletes
            self.latency_source = max(0, round(received - commit_time.timestamp()))
            self.latency_target = max(0, round(now - commit_time.timestamp()))


class _Applier:
    """Applies the slot's changes as SQL on one target session, a transaction per source one."""

    def __init__(self, conn: Any, task: _Task) -> None:
        self.conn = conn
        self.task = task
        self.relations: dict[int, Relation] = {}
        self.in_transaction = False
        self.received = 0.0
        self.counts: dict[tuple[str, str], list[int]] = {}
        self.flushed = 0
        #: (schema, table) of the change being applied, for failure messages
        self.current: tuple[str, str] | None = None
        #: Keys of the rows this transaction changed, per table: pending validation once it commits.
        self.changed: dict[TableName, list[Key]] = {}

    def _mark(self, relation: Relation, values: list[Value] | None) -> None:
        """Note the validation key of a changed row (DMS re-validates every row CDC changes)."""
        validation = self.task.validation
        if validation is None or values is None:
            return
        name = TableName(relation.namespace, relation.name)
        columns = validation.key_columns(name)
        if not columns:
            return
        row = dict(zip((c.name for c in relation.columns), values, strict=True))
        key = [row.get(column) for column in columns]
        if all(isinstance(value, str) for value in key):
            self.changed.setdefault(name, []).append(tuple(str(value) for value in key))

    def _relation(self, oid: int) -> Relation:
        relation = self.relations[oid]
        self.current = (relation.namespace, relation.name)
        return relation

    def _change(self, relation: Relation, operation: str, statement: sql.Composable, params: list) -> None:
        """Run one change as DMS applies it: a failure, or an UPDATE/DELETE that finds no row on the target
        (DMS's "zero rows affected"), is an apply error the task's ErrorBehavior answers. Unless the policy
        stops the task, the change runs under a savepoint so that skipping it keeps its transaction."""
        table = (relation.namespace, relation.name)
        if self.task.is_suspended(table) or self.task.validation_only:
            return  # a validation-only task applies nothing
        guarded = not self.task.errors.stops_at_once(operation)
        with self.conn.cursor() as cur:
            try:
                cur.execute(sql.SQL("SAVEPOINT dms_change; ") + statement if guarded else statement, params)
            except _RECOVERABLE:
                raise
            except psycopg2.Error as error:
                if not guarded:
                    raise
                cur.execute("ROLLBACK TO SAVEPOINT dms_change")
                self.task.apply_error(table, operation, server_message(error, self.task.info.target.password))
                return
            missing = operation != "INSERT" and cur.rowcount == 0
            if guarded:
                cur.execute("RELEASE SAVEPOINT dms_change")
        if missing:
            self.task.apply_error(
                table, operation, f"{operation} affected no row: the row is missing on the target"
            )
            return
        self._count(relation, ("INSERT", "UPDATE", "DELETE").index(operation))

    def _written(self, relation: Relation, pairs: list[tuple[str, Value]]) -> list[tuple[str, Value]]:
        """(column, value) as the task writes them: LOB columns cut, refused or left out by its LOB mode;
        TIMESTAMP's infinities as DMS writes them."""
        schema, table = relation.namespace, relation.name
        types = {column.name: column.type_oid for column in relation.columns}
        return [
            (name, self.task.lob_value(schema, table, name, timestamp_as_dms(types[name], value)))
            for name, value in pairs
            if self.task.lob_copied(schema, table, name)
        ]

    def _count(self, relation: Relation, index: int) -> None:
        self.counts.setdefault((relation.namespace, relation.name), [0, 0, 0])[index] += 1

    def handle(self, message: Any) -> int | None:
        """Apply one message; returns the LSN to confirm after a commit."""
        if isinstance(message, Begin):
            self.in_transaction = True
            self.received = time.time()
            self.counts = {}
            self.changed = {}
        elif isinstance(message, Relation):
            self.relations[message.oid] = message
        elif isinstance(message, Commit):
            return self._commit(message)
        elif isinstance(message, Insert):
            relation = self._relation(message.relation_oid)
            self._mark(relation, message.new)
            pairs = self._written(
                relation, [(c.name, v) for c, v in zip(relation.columns, message.new, strict=True)]
            )
            statement = sql.SQL("INSERT INTO {} ({}) VALUES ({})").format(
                _ident(relation),
                sql.SQL(", ").join(sql.Identifier(n) for n, _ in pairs),
                sql.SQL(", ").join(sql.Placeholder() for _ in pairs),
            )
            self._change(relation, "INSERT", statement, [v for _, v in pairs])
        elif isinstance(message, Update):
            relation = self._relation(message.relation_oid)
            self._mark(relation, message.new)
            if message.old:
                self._mark(relation, message.old)  # the key may have changed
            if message.key_moved:  # DMS ignores an update of a primary key: the target keeps the old row
                return None
            assignments = self._written(
                relation,
                [
                    (c.name, v)
                    for c, v in zip(relation.columns, message.new, strict=True)
                    if v is not UNCHANGED
                ],
            )
            where, params = _identity(relation, message.old_kind, message.old if message.old else message.new)
            if not assignments:  # only LOB columns changed, and the task migrates none
                self._count(relation, 1)
                return None
            statement = sql.SQL("UPDATE {} SET {} WHERE {}").format(
                _ident(relation),
                sql.SQL(", ").join(sql.SQL("{} = %s").format(sql.Identifier(n)) for n, _ in assignments),
                where,
            )
            self._change(relation, "UPDATE", statement, [v for _, v in assignments] + params)
        elif isinstance(message, Delete):
            relation = self._relation(message.relation_oid)
            self._mark(relation, message.old)
            where, params = _identity(relation, message.old_kind, message.old)
            statement = sql.SQL("DELETE FROM {} WHERE {}").format(_ident(relation), where)
            self._change(relation, "DELETE", statement, params)
        return None

    def _commit(self, message: Commit) -> int:
        self.conn.commit()
        self.task.record_commit(self.counts, message.commit_time, self.received)
        self.task.applied_lsn = message.end_lsn
        with self.task.lock:
            self.task.replicated_lsn = max(self.task.replicated_lsn, message.end_lsn)
        if self.task.validation is not None:
            for name, keys in self.changed.items():
                self.task.validation.changed(name, keys)
        self.changed = {}
        self.in_transaction = False
        self.flushed = message.end_lsn
        return message.end_lsn


class _Confirmed:
    """What the slot was last told (flush position) and when: the driver sends feedback by itself only
    every status interval (10 s), so the applier forces it, at most every ``CONFIRM_SECONDS`` while
    changes stream in (``at_once=False``) and at once when the stream goes idle."""

    def __init__(self) -> None:
        self.lsn = 0
        self.at = 0.0

    def send(self, cur: Any, lsn: int, at_once: bool = True) -> None:
        now = time.monotonic()
        force = at_once or now - self.at >= CONFIRM_SECONDS
        cur.send_feedback(flush_lsn=lsn, force=force)
        if force:
            self.lsn, self.at = lsn, now


#: What a lost connection raises: the server went away (restart, network) or the COPY stream broke with it.
_RECOVERABLE = (psycopg2.OperationalError, psycopg2.InterfaceError)


def _connection_lost(error: psycopg2.Error, repl: Any) -> bool:
    """Whether ``error`` means the replication connection went away (then DMS retries), not bad data. When
    the server ends a session the walsender's COPY ends with it: psycopg2 then says "no COPY in progress"."""
    closed = repl is None or bool(getattr(repl, "closed", 0))
    return isinstance(error, _RECOVERABLE) or closed or "no COPY in progress" in str(error)


def _at_least(latency: int | None, outage_seconds: int) -> int | None:
    return max(latency or 0, outage_seconds) if outage_seconds else latency


def _ident(relation: Relation) -> sql.Identifier:
    return sql.Identifier(relation.namespace, relation.name)


def _identity(relation: Relation, old_kind: str | None, values: list[Value]) -> tuple[sql.Composable, list]:
    """WHERE clause finding the row: key columns (primary key / replica identity index), or for
    REPLICA IDENTITY FULL ('O') every sent column of the old row, compared as text, one row only; each
    value as DMS wrote it to the target."""
    values = [timestamp_as_dms(c.type_oid, v) for c, v in zip(relation.columns, values, strict=True)]
    if old_kind == "O":
        pairs = [(c.name, v) for c, v in zip(relation.columns, values, strict=True) if v is not UNCHANGED]
        conditions = sql.SQL(" AND ").join(
            sql.SQL("{}::text IS NOT DISTINCT FROM %s").format(sql.Identifier(n)) for n, _ in pairs
        )
        where = sql.SQL("ctid = (SELECT ctid FROM {} WHERE {} LIMIT 1)").format(_ident(relation), conditions)
        return where, [v for _, v in pairs]
    pairs = [(c.name, v) for c, v in zip(relation.columns, values, strict=True) if c.is_key]
    if not pairs:
        raise RuntimeError(f"table {relation.namespace}.{relation.name} has no replica identity")
    where = sql.SQL(" AND ").join(sql.SQL("{} = %s").format(sql.Identifier(n)) for n, _ in pairs)
    return where, [v for _, v in pairs]
