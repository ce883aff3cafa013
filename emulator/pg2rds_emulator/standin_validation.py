"""DMS data validation in the stand-in: source and target compared row by row, as the AWS pages "AWS DMS
data validation" (CHAP_Validating), "Data validation task settings" (TaskSettings.DataValidation) and the
API reference of ``TableStatistics`` and ``ReloadTables`` describe it.

- A task's ``ValidationSettings.EnableValidation`` turns it on. Each table is validated right after its
  full load (a ``cdc`` task validates the existing rows first): rows are read from both sides by key in
  partitions of ``PartitionSize`` rows (keyset order, one short query per side, never a whole table in
  memory), and compared column by column in their text form (both sessions set to the same TimeZone,
  DateStyle, IntervalStyle, extra_float_digits and bytea_output). A row missing on the target is a
  ``MISSING_TARGET`` failure, a row only on the target ``MISSING_SOURCE``, a row that differs
  ``RECORD_DIFF`` with the differing columns in ``DETAILS``. Partitions run on up to ``ThreadCount``
  threads (capped locally). ``HandleCollationDiff`` orders string keys with the "C" collation on both
  sides; without it each side sorts by its own collation, as DMS does, and differing collations show as
  missing rows.
- The key is the primary key, else a unique index without expressions or predicate over NOT NULL columns.
  Without one, or with a key column DMS cannot validate (a LOB type, or a string of 1024 characters or
  more: the page's limitations), the table is "No primary key".
- During CDC every change the stand-in applies marks its key pending; pending keys are compared again
  ``ValidationQueryCdcDelaySeconds`` (default 0; 180 for a validation-only task) after the change, once
  the stand-in has applied the source's changes up to the moment the source row was read. A difference
  seen during CDC is retried once more (after ``RecordFailureDelayInMinutes`` or
  ``RecordFailureDelayLimitInMinutes`` when set) before it is
  reported, as DMS delays and retries CDC failures so that a row not yet applied is not one. A record
  stays pending until its failure is counted: a table is never "Validated" while one is being written.
- Failures are written to ``<ControlSchema>.awsdms_validation_failures_v1`` on the target (ControlSchema
  from ``ControlTablesSettings``, else ``awsdms_control``), created with the page's columns (TASK_NAME,
  TABLE_OWNER, TABLE_NAME, FAILURE_TIME, KEY_TYPE 'Row', KEY as ``{"key": ["..."]}``, FAILURE_TYPE,
  DETAILS), one row each time a record fails. A failed row that changes again is re-validated.
- More than ``TableFailureMaxCount`` failed rows in a table suspend validation for the table, more than
  ``FailureMaxCount`` in the task for every table: the rows not compared count as suspended.
- ``ReloadTables`` with ``validate-only`` forgets a table's failures and validates it again in full
  ("Pending revalidation" until it starts).
- ``ValidationOnly``: nothing is copied or applied; a full load validates the target as it is, CDC marks
  the changed keys and validates them after the delay.

DescribeTableStatistics shows ValidationState ("Pending validation", "Pending revalidation", "Pending
records", "Mismatched records", "Suspended records", "No primary key", "Table error", "Error",
"Validated"), ValidationPendingRecords (rows of a running or queued pass not compared yet, plus pending
keys), ValidationFailedRecords, ValidationSuspendedRecords and ValidationStateDetails.

Not modelled: ``ValidationMode`` GROUP_LEVEL (rows are compared one by one), rows suspended for changing
all the time, ``RecordSuspendDelayInMinutes``.
"""

import contextlib
import json
import logging
import re
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from typing import Any, Protocol

from psycopg2 import sql

from pg2rds.postgres.selection import TableName
from pg2rds.postgres.slots import wal_end
from pg2rds_emulator.dms_engine import EndpointInfo, TableStats
from pg2rds_emulator.standin_copy import TableMeta
from pg2rds_emulator.standin_lobs import LobSettings

log = logging.getLogger(__name__)

#: Validation threads per task at most, whatever ThreadCount says: two cores locally.
LOCAL_MAX_THREADS = 2
#: A LOB value longer than this is compared by its md5, so a partition's memory stays bounded.
LOB_INLINE_BYTES = 8192
#: Pending keys kept per table; beyond, the table is validated again in full instead ("Pending
#: revalidation"), so a burst of changes cannot grow memory without bound.
MAX_PENDING_KEYS = 100_000
#: With no message from the slot for this long after the source was read, the stand-in has applied
#: every change made before: a safety net, should the stream never report the position read.
IDLE_CAUGHT_UP_SECONDS = 3.0
POLL_SECONDS = 0.2
#: How often a comparison waiting for the target to apply the source's changes looks again: short, as the
#: wait usually ends within milliseconds, and each look only reads a number under a lock.
APPLIED_POLL_SECONDS = 0.01
FAILURES_TABLE = "awsdms_validation_failures_v1"
DEFAULT_CONTROL_SCHEMA = "awsdms_control"
#: Both sides print values the same way, so equal values compare equal as text.
TEXT_SETTINGS = (
    "SET TimeZone = 'UTC'; SET DateStyle = 'ISO, MDY'; SET IntervalStyle = 'postgres'; "
    "SET extra_float_digits = 1; SET bytea_output = 'hex'"
)
_LONG_STRING = re.compile(r"^(character varying|character|varchar|char)\((\d+)\)")

Key = tuple[str, ...]


@dataclass(frozen=True)
class ValidationSettings:
    """``ValidationSettings`` of a task, with DMS's defaults (page "Data validation task settings")."""

    enabled: bool = False
    partition_size: int = 10_000
    thread_count: int = 5
    failure_max_count: int = 10_000
    table_failure_max_count: int = 1_000
    cdc_delay_seconds: float = 0.0
    failure_delay_seconds: float = 0.0
    handle_collation_diff: bool = False
    validation_only: bool = False
    skip_lob_columns: bool = False
    partial_lob_kb: int = 0

    @classmethod
    def of_task(cls, settings: dict[str, Any]) -> "ValidationSettings":
        given = settings.get("ValidationSettings") or {}
        only = bool(given.get("ValidationOnly", False))

        def number(name: str, default: float) -> float:
            value = given.get(name)
            return default if value is None else float(value)

        failure_delay_minutes = max(
            number("RecordFailureDelayInMinutes", 0), number("RecordFailureDelayLimitInMinutes", 0)
        )
        return cls(
            enabled=bool(given.get("EnableValidation", False)),
            partition_size=max(1, int(number("PartitionSize", 10_000))),
            thread_count=max(1, int(number("ThreadCount", 5))),
            failure_max_count=int(number("FailureMaxCount", 10_000)),
            table_failure_max_count=int(number("TableFailureMaxCount", 1_000)),
            cdc_delay_seconds=number("ValidationQueryCdcDelaySeconds", 180 if only else 0),
            failure_delay_seconds=60 * failure_delay_minutes,
            handle_collation_diff=bool(given.get("HandleCollationDiff", False)),
            validation_only=only,
            skip_lob_columns=bool(given.get("SkipLobColumns", False)),
            partial_lob_kb=int(number("ValidationPartialLobSize", 0)),
        )


@dataclass(frozen=True)
class ValidationKey:
    columns: tuple[str, ...]
    types: tuple[str, ...]
    collatable: tuple[bool, ...]


#: The table's unique indexes usable as a validation key, the primary key first: key columns only (not
#: INCLUDE ones), no expressions, no predicate.
KEY_QUERY = """
SELECT i.indisprimary,
       array_agg(a.attname::text ORDER BY k.ord),
       bool_and(a.attnotnull),
       array_agg(a.attcollation <> 0 ORDER BY k.ord)
FROM pg_class c
JOIN pg_namespace n ON n.oid = c.relnamespace
JOIN pg_index i ON i.indrelid = c.oid
CROSS JOIN LATERAL unnest(i.indkey::int2[]) WITH ORDINALITY AS k(attnum, ord)
JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum = k.attnum
WHERE n.nspname = %s AND c.relname = %s AND i.indisunique AND i.indisvalid
  AND i.indpred IS NULL AND i.indexprs IS NULL AND k.ord <= i.indnkeyatts
GROUP BY i.indexrelid, i.indisprimary
ORDER BY i.indisprimary DESC, i.indexrelid
"""


def validation_key(conn: Any, meta: TableMeta) -> tuple[ValidationKey | None, str]:
    """The key DMS validates ``meta``'s table by, or None and why not (page "AWS DMS data validation",
    limitations: a primary key or unique index; no LOB key column; string keys shorter than 1024)."""
    with conn.cursor() as cur:
        cur.execute(KEY_QUERY, (meta.name.schema, meta.name.table))
        candidates = cur.fetchall()
    usable = [(cols, coll) for primary, cols, not_null, coll in candidates if primary or not_null]
    if not usable:
        return None, "The table has no primary key or unique index on NOT NULL columns"
    columns, collatable = usable[0]
    types = dict(zip(meta.columns, meta.types, strict=False))
    for column in columns:
        if meta.lob_kind(column):
            return None, f"Key column '{column}' is a LOB ({types.get(column)}), which DMS cannot validate by"
        length = _LONG_STRING.match(types.get(column, ""))
        if length and int(length.group(2)) >= 1024:
            return None, f"Key column '{column}' is a string of 1024 characters or more"
    return ValidationKey(tuple(columns), tuple(types[c] for c in columns), tuple(collatable)), ""


@dataclass
class _Due:
    """A key to compare again: when, after how many differences seen, and which change marked it."""

    due: float
    attempts: int
    version: int


@dataclass
class _Table:
    meta: TableMeta
    key: ValidationKey | None
    reason: str = ""
    #: "waiting" (not loaded yet), "queued" / "running" (a full pass), "done", "halted", "table-error"
    phase: str = "waiting"
    revalidation: bool = False
    #: Rows of the queued or running full pass not compared yet (an estimate for a revalidation).
    remaining: int = 0
    #: Rows the last full pass compared: what a revalidation expects.
    rows: int = 0
    generation: int = 0
    pending: dict[Key, _Due] = field(default_factory=dict)
    failed: dict[Key, str] = field(default_factory=dict)
    suspended: int = 0
    details: str = ""
    error: str = ""


class TaskView(Protocol):
    """What the validator needs from the stand-in's task."""

    lock: Any
    stop_event: threading.Event

    def connection(self, endpoint: EndpointInfo, purpose: str) -> Any:
        """A tracked connection context manager (cancelled when the task stops)."""

    def replication_position(self) -> tuple[int, float | None]:
        """(LSN up to which the source's changes are applied on the target, monotonic time since when
        the stream has been idle or None)."""


@dataclass(frozen=True)
class _Mismatch:
    key: Key
    kind: str  # RECORD_DIFF | MISSING_SOURCE | MISSING_TARGET
    details: str
    #: The pending entry (key as marked, its mark) this failure settles: it stays pending until the
    #: failure is counted, so the table never reads "Validated" while its failures are being written.
    settles: tuple[Key, "_Due"] | None = field(default=None, compare=False)


class Validator:
    """One task's data validation: full passes on a thread pool, pending keys on one CDC thread."""

    def __init__(
        self,
        settings: ValidationSettings,
        task_name: str,
        source: EndpointInfo,
        target: EndpointInfo,
        control_schema: str,
        lobs: LobSettings,
        uses_cdc: bool,
        previous: "Validator | None" = None,
    ) -> None:
        self.settings = settings
        self.task_name = task_name
        self.source = source
        self.target = target
        self.control_schema = control_schema
        self.lobs = lobs
        self.uses_cdc = uses_cdc
        self.tables: dict[TableName, _Table] = dict(previous.tables) if previous else {}
        self.version: int = previous.version if previous else 0
        self.task: TaskView | None = None
        self.pool: ThreadPoolExecutor | None = None
        self.cdc_thread: threading.Thread | None = None
        self.lock = threading.RLock()
        self.idle = threading.Condition(self.lock)
        #: Set when a committed change marks keys: the CDC thread compares them at once, not at its next
        #: look (every POLL_SECONDS), which after a cutover decision would count as downtime.
        self.changes_marked = threading.Event()

    # -- set-up (the task's main thread) -----------------------------------------------------------------
    def prepare(self, task: TaskView, source_conn: Any, metadata: dict[TableName, TableMeta]) -> None:
        """Find each table's key, create the failures table on the target, and start the threads."""
        self.task = task
        found = {name: validation_key(source_conn, meta) for name, meta in metadata.items()}
        with self.lock:
            for name, meta in metadata.items():
                previous = self.tables.get(name)
                key, reason = found[name]
                if previous is None or previous.key != key:
                    self.tables[name] = _Table(meta, key, reason, phase="waiting" if key else "done")
                elif previous.phase in ("queued", "running"):
                    previous.phase = "waiting"  # a resumed task validates it again from the start
                    previous.revalidation = True
        self._create_failures_table()
        prefix = task_name_prefix(self.task_name)
        self.pool = ThreadPoolExecutor(
            min(self.settings.thread_count, LOCAL_MAX_THREADS), thread_name_prefix=f"{prefix}-validation"
        )
        for table_name, table in self.tables.items():
            if table.key is not None and table.revalidation and table.phase == "waiting":
                self._queue(table_name, table, revalidation=True)
        if self.uses_cdc:
            self.cdc_thread = threading.Thread(target=self._revalidate_changes, name=f"{prefix}-revalidate")
            self.cdc_thread.start()

    def _create_failures_table(self) -> None:
        schema = sql.Identifier(self.control_schema)
        table = sql.Identifier(self.control_schema, FAILURES_TABLE)
        statements = [
            sql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(schema),
            sql.SQL(
                'CREATE TABLE IF NOT EXISTS {} ("TASK_NAME" varchar(128) NOT NULL, '
                '"TABLE_OWNER" varchar(128) NOT NULL, "TABLE_NAME" varchar(128) NOT NULL, '
                '"FAILURE_TIME" timestamp(3) NOT NULL, "KEY_TYPE" varchar(128) NOT NULL, '
                '"KEY" text NOT NULL, "FAILURE_TYPE" varchar(128) NOT NULL, '
                '"DETAILS" varchar(8000) NOT NULL)'
            ).format(table),
        ]
        assert self.task is not None
        with self.task.connection(self.target, "validation-setup") as tgt:
            tgt.autocommit = True
            with tgt.cursor() as cur:
                for statement in statements:
                    # two tasks creating it at once: the loser's error only says it exists now
                    with contextlib.suppress(Exception):
                        cur.execute(statement)

    # -- events from the task ------------------------------------------------------------------------------
    def key_columns(self, name: TableName) -> tuple[str, ...]:
        """The columns ``name`` is validated by (none: not validated)."""
        with self.lock:
            table = self.tables.get(name)
            return table.key.columns if table is not None and table.key is not None else ()

    def table_loaded(self, name: TableName, rows: int) -> None:
        with self.lock:
            table = self.tables.get(name)
            if table is None or table.key is None:
                return
            table.remaining = rows
            self._queue(name, table, revalidation=False)

    def table_failed(self, name: TableName) -> None:
        with self.lock:
            table = self.tables.get(name)
            if table is not None:
                table.phase = "table-error"
                self.idle.notify_all()

    def revalidate(self, names: list[TableName]) -> None:
        """ReloadTables validate-only: the tables' failures are forgotten and each is validated in full."""
        with self.lock:
            for name in names:
                table = self.tables.get(name)
                if table is None or table.key is None or table.phase in ("waiting", "table-error"):
                    continue
                table.failed.clear()
                table.pending.clear()
                table.suspended = 0
                table.details = table.error = ""
                table.remaining = table.rows
                self._queue(name, table, revalidation=True)

    def changed(self, name: TableName, keys: list[Key]) -> None:
        """Keys whose rows a committed change touched: compared again after the CDC delay."""
        due = time.monotonic() + self.settings.cdc_delay_seconds
        with self.lock:
            table = self.tables.get(name)
            if table is None or table.key is None or table.phase in ("halted", "table-error"):
                return
            for key in keys:
                self.version += 1
                table.failed.pop(key, None)
                table.pending[key] = _Due(due, 0, self.version)
            if len(table.pending) > MAX_PENDING_KEYS and table.phase == "done":
                table.pending.clear()
                table.remaining = table.rows
                self._queue(name, table, revalidation=True)
        self.changes_marked.set()

    def _queue(self, name: TableName, table: _Table, revalidation: bool) -> None:
        table.generation += 1
        table.phase = "queued"
        table.revalidation = revalidation
        if self.pool is not None:
            self.pool.submit(self._full_pass, name, table, table.generation)

    # -- statistics ------------------------------------------------------------------------------------------
    def render(self, stats: TableStats) -> TableStats:
        """``stats`` with its Validation* fields as DescribeTableStatistics reports them."""
        with self.lock:
            table = self.tables.get(TableName(stats.schema_name, stats.table_name))
            if table is None:
                state, details, pending, failed, suspended = "Pending validation", "", 0, 0, 0
            else:
                state, details = _state(table, stats.state)
                pending = len(table.pending) + _unchecked_rows(table)
                failed, suspended = len(table.failed), table.suspended
        stats.validation_state = state
        stats.validation_state_details = details
        stats.validation_pending_records = pending
        stats.validation_failed_records = failed
        stats.validation_suspended_records = suspended
        return stats

    def wait_done(self, stop: threading.Event) -> None:
        """Until every table's full pass is over (a full-load task ends when its validation does)."""
        with self.lock:
            busy = ("waiting", "queued", "running")
            while not stop.is_set() and any(t.phase in busy for t in self.tables.values()):
                self.idle.wait(POLL_SECONDS)

    def join(self, timeout: float) -> None:
        if self.pool is not None:
            self.pool.shutdown(wait=True, cancel_futures=True)
        if self.cdc_thread is not None:
            self.cdc_thread.join(timeout)

    # -- comparing -------------------------------------------------------------------------------------------
    @contextlib.contextmanager
    def _sessions(self, purpose: str) -> Iterator[tuple[Any, Any]]:
        assert self.task is not None
        with (
            self.task.connection(self.source, f"validation-{purpose}") as src,
            self.task.connection(self.target, f"validation-{purpose}") as tgt,
        ):
            timeout = int(float(self.source.postgres_settings.get("ExecuteTimeout", 60)) * 1000)
            src.set_session(readonly=True, autocommit=True)
            with src.cursor() as cur:
                cur.execute(TEXT_SETTINGS + "; SET statement_timeout = %s", (timeout,))
            with tgt.cursor() as cur:
                cur.execute(TEXT_SETTINGS)
            tgt.commit()
            yield src, tgt

    def _full_pass(self, name: TableName, table: _Table, generation: int) -> None:
        assert self.task is not None
        stop = self.task.stop_event
        with self.lock:
            if table.generation != generation or stop.is_set():
                return
            table.phase = "running"
        compared = 0
        try:
            with self._sessions("full") as (src, tgt):
                after: Key | None = None
                while True:
                    with self.lock:
                        if table.generation != generation or table.phase == "halted" or stop.is_set():
                            return
                    after, count = self._compare_range(src, tgt, table, after)
                    compared += count
                    with self.lock:
                        table.remaining = max(0, table.remaining - count)
                    if after is None:
                        break
        except Exception as error:
            if stop.is_set():
                return
            log.exception("validation of %s.%s", *name)
            with self.lock:
                if table.generation == generation:
                    table.error = str(error).strip()
                    table.phase = "done"
                    self.idle.notify_all()
            return
        with self.lock:
            if table.generation == generation and table.phase == "running":
                table.phase, table.rows, table.remaining = "done", compared, 0
                self.idle.notify_all()

    def _compare_range(self, src: Any, tgt: Any, table: _Table, after: Key | None) -> tuple[Key | None, int]:
        """One partition: the next PartitionSize source rows after ``after`` and the target's rows in the
        same key range (streamed). Returns the last key compared (None after the last partition) and the
        number of source rows read."""
        assert table.key is not None
        size = self.settings.partition_size
        lower = self._bound(table.key, ">", after)
        with src.cursor() as cur:
            cur.execute(self._select(table, lower.sql, size), lower.params)
            rows = cur.fetchall()
            position = wal_end(cur) if self.uses_cdc else None
        width = len(table.key.columns)
        source = {tuple(row[:width]): tuple(row[width:]) for row in rows}
        last = tuple(rows[-1][:width]) if len(rows) == size else None
        upper = self._bound(table.key, "<=", last)
        self._wait_applied(position)
        failures: list[_Mismatch] = []
        where = lower.sql if last is None else sql.SQL("{} AND {}").format(lower.sql, upper.sql)
        with tgt.cursor(name="pg2rds_dms_validation") as cur:
            cur.itersize = size
            cur.execute(self._select(table, where, None), lower.params + upper.params)
            enough = False
            for row in cur:
                key = tuple(row[:width])
                expected = source.pop(key, None)
                if expected is None:
                    enough = self._found(table, _Mismatch(key, "MISSING_SOURCE", ""), False, failures)
                elif expected != tuple(row[width:]):
                    diff = _details(self._compared(table), expected, tuple(row[width:]))
                    enough = self._found(table, _Mismatch(key, "RECORD_DIFF", diff), False, failures)
                if enough:
                    break
        tgt.rollback()
        for key in source:
            if enough or self._found(table, _Mismatch(key, "MISSING_TARGET", ""), False, failures):
                break
        self._record(table, failures)
        return last, len(rows)

    def _check_keys(self, src: Any, tgt: Any, name: TableName, table: _Table, due: dict[Key, _Due]) -> None:
        """Compare the rows of pending keys (after the source's changes up to now are applied)."""
        assert table.key is not None
        canonical = _canonical(src, table.key, list(due))
        listed = self._in_list(table.key, list(due))
        with src.cursor() as cur:
            cur.execute(self._select(table, listed.sql, None), listed.params)
            rows = cur.fetchall()
            position = wal_end(cur) if self.uses_cdc else None
        width = len(table.key.columns)
        source = {tuple(row[:width]): tuple(row[width:]) for row in rows}
        self._wait_applied(position)
        with tgt.cursor() as cur:
            cur.execute(self._select(table, listed.sql, None), listed.params)
            target = {tuple(row[:width]): tuple(row[width:]) for row in cur.fetchall()}
        tgt.rollback()
        failures: list[_Mismatch] = []
        retried = not self.settings.validation_only  # a validation-only task's delay was the wait
        for raw, marked in due.items():
            key = canonical[raw]
            expected, actual = source.get(key), target.get(key)
            # each outcome in one step under the lock: the key is never seen neither pending nor failed
            with self.lock:
                if table.pending.get(raw) is not marked:
                    continue  # changed again meanwhile: it waits for its own turn
                if expected == actual:
                    del table.pending[raw]
                    table.failed.pop(key, None)
                    continue
                if retried and marked.attempts == 0:
                    del table.pending[raw]
                    self._retry_later(table, key)
                    continue
            kind = _failure_type(expected, actual)
            details = _details(self._compared(table), expected, actual)
            if self._found(table, _Mismatch(key, kind, details, settles=(raw, marked)), True, failures):
                break
        self._record(table, failures)

    def _found(
        self, table: _Table, mismatch: _Mismatch, checked_before: bool, failures: list[_Mismatch]
    ) -> bool:
        """A difference: during CDC first retried after the delay (the change may not be applied yet);
        otherwise a failure, added to ``failures``. True once they reach a limit that suspends validation
        (nothing more to collect)."""
        if self.uses_cdc and not checked_before and not self.settings.validation_only:
            with self.lock:
                self._retry_later(table, mismatch.key)
            return False
        with self.lock:
            if table.phase == "halted":
                return True
            marked = table.pending.get(mismatch.key)
            if mismatch.settles is None and marked is not None:
                mismatch = replace(mismatch, settles=(mismatch.key, marked))  # a change the pass settles
            failures.append(mismatch)
            total = sum(len(t.failed) for t in self.tables.values()) + len(failures)
            in_table = len(table.failed) + len(failures)
            return total > self.settings.failure_max_count or in_table > self.settings.table_failure_max_count

    def _retry_later(self, table: _Table, key: Key) -> None:
        """Under the lock: ``key`` differs for the first time during CDC; compared once more after the
        delay (DMS retries CDC differences before it reports them: the change may not be applied yet)."""
        delay = max(self.settings.cdc_delay_seconds, self.settings.failure_delay_seconds, POLL_SECONDS)
        self.version += 1
        table.pending[key] = _Due(time.monotonic() + delay, 1, self.version)

    def _record(self, table: _Table, failures: list[_Mismatch]) -> None:
        """Failures are written to the failures table first, then counted: whoever sees them counted in
        DescribeTableStatistics finds their rows. Until counted their keys stay pending: a table whose
        failures are being written reads "Pending records", never "Validated" (a poll that saw it
        "Validated" then would take a target still different for a fixed one)."""
        self._write_failures(table, failures)
        with self.lock:
            for mismatch in failures:
                table.failed[mismatch.key] = mismatch.kind
                if mismatch.settles is not None:
                    pending_key, marked = mismatch.settles
                    if table.pending.get(pending_key) is marked:  # not changed again meanwhile
                        del table.pending[pending_key]
        self._enforce_limits(table)

    def _write_failures(self, table: _Table, failures: list[_Mismatch]) -> None:
        """One row per failed record in the failures table on the target (page "AWS DMS data
        validation", Troubleshooting)."""
        if not failures:
            return
        assert self.task is not None
        statement = sql.SQL(
            'INSERT INTO {} ("TASK_NAME", "TABLE_OWNER", "TABLE_NAME", "FAILURE_TIME", "KEY_TYPE", "KEY", '
            '"FAILURE_TYPE", "DETAILS") VALUES (%s, %s, %s, clock_timestamp() AT TIME ZONE \'UTC\', '
            "'Row', %s, %s, %s)"
        ).format(sql.Identifier(self.control_schema, FAILURES_TABLE))
        owner, name = table.meta.name.schema, table.meta.name.table
        rows = [
            (self.task_name, owner, name, json.dumps({"key": list(m.key)}), m.kind, m.details[:8000])
            for m in failures
        ]
        with self.task.connection(self.target, "validation-failures") as tgt:
            with tgt.cursor() as cur:
                cur.executemany(statement, rows)
            tgt.commit()

    def _enforce_limits(self, table: _Table) -> None:
        """More failed rows than TableFailureMaxCount suspend the table's validation, than FailureMaxCount
        the task's (page "Data validation task settings")."""
        with self.lock:
            total = sum(len(t.failed) for t in self.tables.values())
            if total > self.settings.failure_max_count:
                limit = self.settings.failure_max_count
                why = f"more than FailureMaxCount ({limit}) records failed in the task"
                for other in self.tables.values():
                    if other.key is not None and other.phase not in ("halted", "table-error"):
                        _halt(other, why)
                self.idle.notify_all()
            elif len(table.failed) > self.settings.table_failure_max_count:
                limit = self.settings.table_failure_max_count
                _halt(table, f"more than TableFailureMaxCount ({limit}) records failed in the table")
                self.idle.notify_all()

    def _halted(self, table: _Table) -> bool:
        with self.lock:
            return table.phase == "halted"

    def _wait_applied(self, position: int | None) -> None:
        """Until the target holds every change the source had when it was read: else a row not yet
        applied would look different. A validation-only task applies nothing: its delay is the wait."""
        if position is None or self.settings.validation_only:
            return
        assert self.task is not None
        read_at = time.monotonic()
        while not self.task.stop_event.is_set():
            applied, idle_since = self.task.replication_position()
            if applied >= position:
                return
            quiet = time.monotonic() - max(idle_since, read_at) if idle_since is not None else 0.0
            if quiet >= IDLE_CAUGHT_UP_SECONDS:
                return
            self.task.stop_event.wait(APPLIED_POLL_SECONDS)

    # -- CDC -------------------------------------------------------------------------------------------------
    def _revalidate_changes(self) -> None:
        """Compare pending keys once due, table by table, PartitionSize keys at a time; a lost connection
        is retried."""
        assert self.task is not None
        stop = self.task.stop_event
        while not stop.is_set():
            try:
                with self._sessions("cdc") as (src, tgt):
                    while not stop.is_set():
                        self.changes_marked.clear()  # before looking: a change marked after is not missed
                        if not self._revalidate_due(src, tgt):
                            self.changes_marked.wait(POLL_SECONDS)  # or until keys are marked
            except Exception:
                if stop.is_set():
                    return
                log.exception("task %s: validation of changes", self.task_name)
                stop.wait(1.0)

    def _revalidate_due(self, src: Any, tgt: Any) -> bool:
        """One batch of due keys per table whose full pass is over; False if nothing was due."""
        now = time.monotonic()
        work: list[tuple[TableName, _Table, dict[Key, _Due]]] = []
        with self.lock:
            for name, table in self.tables.items():
                if table.key is None or table.phase != "done" or not table.pending:
                    continue
                due: dict[Key, _Due] = {}
                for key, marked in table.pending.items():
                    if marked.due <= now:
                        due[key] = marked
                        if len(due) >= self.settings.partition_size:
                            break
                if due:
                    work.append((name, table, due))
        for name, table, due in work:
            self._check_keys(src, tgt, name, table, due)
        return bool(work)

    # -- SQL ----------------------------------------------------------------------------------------------
    def _compared(self, table: _Table) -> list[tuple[str, str]]:
        """(column, LOB kind) compared: the migrated columns but the key (and LOBs with SkipLobColumns)."""
        assert table.key is not None
        return [
            (column, kind)
            for column, kind in table.meta.copied(self.lobs)
            if column not in table.key.columns and not (kind and self.settings.skip_lob_columns)
        ]

    def _value(self, column: str, kind: str) -> sql.Composable:
        text = sql.SQL("{}::text").format(sql.Identifier(column))
        if not kind:
            return text
        if self.settings.partial_lob_kb > 0:
            text = sql.SQL("left({}, {})").format(text, sql.Literal(self.settings.partial_lob_kb * 1024))
        return sql.SQL("CASE WHEN octet_length({t}) > {n} THEN 'md5:' || md5({t}) ELSE {t} END").format(
            t=text, n=sql.Literal(LOB_INLINE_BYTES)
        )

    def _key_sql(self, key: ValidationKey) -> sql.Composable:
        return sql.SQL("({})").format(
            sql.SQL(", ").join(
                sql.SQL("{}{}").format(sql.Identifier(c), self._collate(collatable))
                for c, collatable in zip(key.columns, key.collatable, strict=True)
            )
        )

    def _collate(self, collatable: bool) -> sql.Composable:
        return sql.SQL(' COLLATE "C"' if collatable and self.settings.handle_collation_diff else "")

    def _values_sql(self, key: ValidationKey) -> sql.Composable:
        return sql.SQL("({})").format(
            sql.SQL(", ").join(
                sql.SQL("%s::{}{}").format(sql.SQL(t), self._collate(collatable))
                for t, collatable in zip(key.types, key.collatable, strict=True)
            )
        )

    def _bound(self, key: ValidationKey, operator: str, value: Key | None) -> "_Where":
        if value is None:
            return _Where(sql.SQL("true"), [])
        return _Where(
            sql.SQL("{} {} {}").format(self._key_sql(key), sql.SQL(operator), self._values_sql(key)),
            list(value),
        )

    def _in_list(self, key: ValidationKey, keys: list[Key]) -> "_Where":
        rows = sql.SQL(", ").join(self._values_sql(key) for _ in keys)
        where = sql.SQL("{} IN (VALUES {})").format(self._key_sql(key), rows)
        return _Where(where, [value for k in keys for value in k])

    def _select(self, table: _Table, where: sql.Composable, limit: int | None) -> sql.Composed:
        assert table.key is not None
        # aliased: ORDER BY a name that is also an output column's would sort by the text
        keys = [
            sql.SQL("{}::text AS {}").format(sql.Identifier(c), sql.Identifier(f"k{i}"))
            for i, c in enumerate(table.key.columns)
        ]
        values = [
            sql.SQL("{} AS {}").format(self._value(column, kind), sql.Identifier(f"v{i}"))
            for i, (column, kind) in enumerate(self._compared(table))
        ]
        meta = table.meta
        return sql.SQL("SELECT {} FROM {}{} WHERE {} ORDER BY {}{}").format(
            sql.SQL(", ").join(keys + values),
            sql.SQL("" if meta.partitioned else "ONLY "),
            meta.ident,
            where,
            sql.SQL(", ").join(
                sql.SQL("{}{}").format(sql.Identifier(c), self._collate(collatable))
                for c, collatable in zip(table.key.columns, table.key.collatable, strict=True)
            ),
            sql.SQL(" LIMIT {}").format(sql.Literal(limit)) if limit else sql.SQL(""),
        )


@dataclass(frozen=True)
class _Where:
    sql: sql.Composable
    params: list[Any]


def task_name_prefix(task_name: str) -> str:
    """Thread names start "standin-" so the tests can tell none is left running."""
    return f"standin-{task_name}"


def _canonical(conn: Any, key: ValidationKey, keys: list[Key]) -> dict[Key, Key]:
    """Each key as the validator's session prints it: a change's key comes as the slot's session printed
    it (a timestamptz in the server's TimeZone, for one), the compared rows' keys in UTC."""
    width = len(key.columns)
    rows = sql.SQL(", ").join(
        sql.SQL("({}, {})").format(
            sql.Literal(index), sql.SQL(", ").join(sql.SQL("%s::{}").format(sql.SQL(t)) for t in key.types)
        )
        for index in range(len(keys))
    )
    names = [sql.Identifier(f"k{i}") for i in range(width)]
    statement = sql.SQL("SELECT {} FROM (VALUES {}) AS v(i, {}) ORDER BY i").format(
        sql.SQL(", ").join(sql.SQL("{}::text").format(n) for n in names), rows, sql.SQL(", ").join(names)
    )
    with conn.cursor() as cur:
        cur.execute(statement, [value for k in keys for value in k])
        return {raw: tuple(row) for raw, row in zip(keys, cur.fetchall(), strict=True)}


def _details(columns: list[tuple[str, str]], source: tuple | None, target: tuple | None) -> str:
    """DETAILS of a RECORD_DIFF: each differing column's source and target value (JSON)."""
    if source is None or target is None:
        return ""
    pairs = [
        [{column: mine}, {column: theirs}]
        for (column, _), mine, theirs in zip(columns, source, target, strict=True)
        if mine != theirs
    ]
    return json.dumps(pairs)


def _unchecked_rows(table: _Table) -> int:
    """Rows of a queued or running full pass not compared yet."""
    return table.remaining if table.phase in ("queued", "running") else 0


def _failure_type(source: tuple | None, target: tuple | None) -> str:
    if target is None:
        return "MISSING_TARGET"
    return "MISSING_SOURCE" if source is None else "RECORD_DIFF"


def _halt(table: _Table, why: str) -> None:
    table.suspended += len(table.pending) + _unchecked_rows(table)
    table.pending.clear()
    table.remaining = 0
    table.phase = "halted"
    table.details = f"Validation suspended for the table: {why}"


def _state(table: _Table, table_state: str) -> tuple[str, str]:
    """ValidationState and ValidationStateDetails (API reference, TableStatistics)."""
    if table.key is None:
        return "No primary key", table.reason
    if table_state == "Table error" or table.phase == "table-error":
        return "Table error", ""
    if table.error:
        return "Error", table.error
    if table.phase == "waiting":
        return "Pending validation", ""
    if table.phase == "queued":
        return ("Pending revalidation" if table.revalidation else "Pending validation"), ""
    if table.failed:
        return "Mismatched records", table.details
    if table.suspended:
        return "Suspended records", table.details
    if table.pending or table.phase == "running":
        return "Pending records", ""
    return "Validated", ""


def control_schema(settings: dict[str, Any]) -> str:
    return (settings.get("ControlTablesSettings") or {}).get("ControlSchema") or DEFAULT_CONTROL_SCHEMA
