"""The migration's state as it travels between the Lambdas.

The execution input (the spec) is moved under ``spec`` by the first state; each phase then writes its
result under its own key (its ``ResultPath``), so the execution output is a readable record of the run.
Every model here is what one handler returns and what later handlers read back.

The state must stay well under Step Functions' 256 KiB payload limit whatever the database's size, so no
list here grows with the database: findings carry at most ``MAX_OBJECTS_PER_FINDING`` object names and a
count, every other list of names is a :data:`Names` (cut to its first few, then "and N more"), and every
message from elsewhere a :data:`Message` (cut to a fixed length); see :mod:`pg2rds.bounded`.
"""

from collections.abc import Sequence
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field

from pg2rds.bounded import MAX_NAMES, capped, clipped, joined
from pg2rds.spec import MigrationSpec

MAX_OBJECTS_PER_FINDING = MAX_NAMES


def _cap_names(names: Sequence[str]) -> list[str]:
    """Idempotent: a list already capped (its names and "and N more") is left as it is when read back."""
    return list(names) if len(names) <= MAX_NAMES + 1 else capped(names)


#: A list of names in the state: at most ``MAX_NAMES`` of them, then "and N more".
Names = Annotated[list[str], AfterValidator(_cap_names)]
#: Text in the state that may come from elsewhere (a server's message, DMS's): cut to a fixed length.
Message = Annotated[str, AfterValidator(clipped)]


Severity = Literal["fatal", "warning", "info"]


class _Result(BaseModel):
    #: Assignments are validated too: a phase that fills a field after building its result (prep-target's
    #: schemas and notes) gets it capped like one given to the constructor.
    model_config = ConfigDict(extra="ignore", validate_assignment=True)


class Finding(_Result):
    """One named check result: what is wrong, where, why it matters and how to fix it."""

    name: str
    severity: Severity
    message: Message
    fix: Message = ""
    objects: list[str] = Field(default_factory=list, max_length=MAX_OBJECTS_PER_FINDING)
    object_count: int = 0

    def render(self) -> str:
        where = f" [{joined(self.objects, total=self.object_count)}]" if self.objects else ""
        fix = f" Fix: {self.fix}" if self.fix else ""
        return f"{self.name}: {self.message}{where}.{fix}"


class DatabaseReport(_Result):
    #: Where the server is, as its secret says (never the credentials): later phases that do not read
    #: the secret (create-endpoints, test-connections) take the database name and messages from here.
    host: str = ""
    port: int = 0
    database: str = ""
    server_version: str
    server_version_num: int
    findings: list[Finding] = Field(default_factory=list)

    @property
    def fatal(self) -> list[Finding]:
        return [finding for finding in self.findings if finding.severity == "fatal"]


class SourceReport(DatabaseReport):
    tables_selected: int = 0
    schemas_selected: Names = Field(default_factory=list)
    catalog_queries: int = 0
    #: The LobMaxSize the task uses in limited LOB mode: the spec's, or sized from what was measured.
    lob_max_size_kb: int = 0


class TargetReport(DatabaseReport):
    after_connect_script: str = ""
    #: What prep-target changed or relies on, to be restored or checked after the load.
    restore: Names = Field(default_factory=list)
    schemas_created: Names = Field(default_factory=list)
    #: Check mode only: fatal findings of both sides, and their rendering (the Fail state's Cause).
    check_fatal: int = 0
    check_cause: Message = ""


class Waiting(_Result):
    """A phase that the state machine polls: ``ready`` ends the loop, ``wait_seconds`` feeds the Wait."""

    ready: bool = False
    wait_seconds: int = 0
    started_at: str = ""
    polls: int = 0


class InstanceState(Waiting):
    arn: str
    identifier: str
    status: str
    owned: bool


class EndpointsState(_Result):
    source_arn: str
    target_arn: str
    #: The source endpoint's SlotName ("" for a full load, which reads no slot).
    slot_name: str


class SlotState(_Result):
    """The logical replication slot pg2rds created on the source for a CDC migration (or found there,
    already its own), handed to DMS as the source endpoint's ``SlotName``."""

    name: str
    plugin: str
    #: Where the slot's stream begins (its consistent point, or how far a reused slot has confirmed):
    #: a CDC-only task starts there (``CdcStartPosition``).
    lsn: str
    #: True when this execution created it; False when a previous attempt of this migration had.
    created: bool


class ConnectionsState(Waiting):
    source_status: str = ""
    target_status: str = ""


class TaskState(Waiting):
    arn: str
    identifier: str
    status: str


class TableProgress(_Result):
    schema_name: str
    table_name: str
    state: str = ""
    full_load_rows: int = 0
    inserts: int = 0
    updates: int = 0
    deletes: int = 0


class Revalidation(_Result):
    """A ReloadTables(validate-only) pg2rds requested for a table DMS found different (when, to pace them)."""

    table: str
    at: str


class ValidationProgress(_Result):
    """DMS data validation (``verification: dms``) as the last poll saw it: counts and a few names, so it
    stays small whatever the number of tables."""

    enabled: bool = False
    #: Tables by DMS ValidationState ("Validated", "Pending records", "No primary key", ...).
    states: dict[str, int] = Field(default_factory=dict)
    pending_records: int = 0
    failed_records: int = 0
    suspended_records: int = 0
    #: Tables DMS found different, each named with its failed record count and first keys.
    difference_count: int = 0
    differences: list[str] = Field(default_factory=list)
    #: Tables DMS does not validate (no primary key): pg2rds checksums them after the decision.
    unvalidated_count: int = 0
    unvalidated_rows: int = 0
    unvalidated: list[str] = Field(default_factory=list)
    #: What the cutover will cost, in one line: what is left to re-check after the decision.
    summary: str = ""
    #: The differences, when they changed since the previous poll: the state machine tells the topic.
    notify: str = ""
    #: Which tables differ and by how many records (compared between polls to notify once per change).
    signature: str = ""
    #: The last re-validation requested per table (at most one per spec.cdc.revalidate_minutes).
    revalidations: list[Revalidation] = Field(default_factory=list)


class Progress(Waiting):
    """What poll-task returns; ``outcome`` is what the Choice state branches on."""

    outcome: Literal["running", "full-load-complete", "cdc-caught-up", "stopped", "continue"]
    task_status: str
    stop_reason: Message = ""
    full_load_percent: int = 0
    tables_loaded: int = 0
    tables_loading: int = 0
    tables_queued: int = 0
    tables_errored: int = 0
    rows_loaded: int = 0
    cdc_latency_source_seconds: int | None = None
    cdc_latency_target_seconds: int | None = None
    #: The first tables DMS reported (errored ones first; :data:`pg2rds.dms.progress.MAX_TABLES`), and how
    #: many more it reported.
    tables: list[TableProgress] = Field(default_factory=list)
    tables_not_shown: int = 0
    #: Polls in this execution (``polls`` counts across continuations and drives the backoff).
    execution_polls: int = 0
    #: How long "Wait for cutover decision" waits (its ``TimeoutSecondsPath``).
    cutover_timeout_seconds: int = 0
    #: The source's WAL position when the cutover was decided; the task stops once the slot confirms it.
    cutover_lsn: str = ""
    #: Polls since the decision: its waits back off from the spec's initial interval again.
    cutover_polls: int = 0
    #: When the first poll after the decision ran: DMS's validation of the last changes is timed from it.
    cutover_polled_at: str = ""
    #: Why the cutover is not offered (yet, or any more): "" when it is.
    withheld: str = ""
    validation: ValidationProgress = Field(default_factory=ValidationProgress)


class TableCheck(_Result):
    table: str
    source_rows: int
    target_rows: int
    matches: bool


class FinishReport(_Result):
    """What finish-target did after the load: sequences and large objects (tables and foreign keys are
    checked next, in chunks: :class:`VerificationState`)."""

    sequences_set: int = 0
    verification: str = "none"
    tables_checked: int = 0
    mismatched: Names = Field(default_factory=list)
    #: Per-table results, capped so the state stays small (``mismatched`` names the differences).
    tables: list[TableCheck] = Field(default_factory=list, max_length=MAX_OBJECTS_PER_FINDING)


#: A key value in a chunk's description is cut to this many characters, and a bound (all the key's
#: values) to ``MAX_BOUND_CHARS``: the Map's results and the failure's cause stay small.
MAX_VALUE_CHARS = 40
MAX_BOUND_CHARS = 120
#: Foreign-key violations one chunk's result names (the others are counted).
MAX_VIOLATIONS_PER_CHUNK = 2


def render_key_value(text: str, bare: bool) -> str:
    """One key value as it reads in a report: numbers bare, anything else a quoted SQL literal, cut."""
    if len(text) > MAX_VALUE_CHARS:
        text = text[:MAX_VALUE_CHARS] + "…"
    return text if bare else "'" + text.replace("'", "''") + "'"


class Chunk(_Result):
    """One bounded piece of a table: the rows whose key is in ``[lower, upper)`` (``None``: open); or, for
    a table whose key order the two servers do not share (no key, or a text key they collate differently),
    the rows stored in its blocks ``[first_block, end_block)`` on each side (``end_block`` ``None``: to
    the end), whose counts and checksums only add up to the table's (see ``TableSums``); or the whole table
    when it has neither (servers before PostgreSQL 14, which cannot scan a block range).

    Key values travel as their text (``value::text`` with the text rendering pinned); a comparison hands
    them to the server as untyped literals, which take each key column's own type on either side.
    ``collate_c`` marks key columns compared in byte order (``COLLATE "C"``) on both sides, because the
    two servers' collations of that column could order it differently.
    """

    schema_name: str
    table_name: str
    key: list[str] = Field(default_factory=list)
    lower: list[str] | None = None
    upper: list[str] | None = None
    #: Per key column: rendered without quotes (a number) in descriptions.
    bare: list[bool] = Field(default_factory=list)
    collate_c: list[bool] = Field(default_factory=list)
    #: Compare the rows on both sides (``spec.verification`` is not ``none``).
    compare: bool = True
    #: Check the foreign keys of this table (on the target) for the rows in this range.
    foreign_keys: bool = False
    #: A block range (``ctid``) instead of a key range: the same block numbers on both sides hold different
    #: rows, so such a chunk is judged only with its table's other ranges (``TableSums``).
    first_block: int | None = Field(default=None, ge=0)
    end_block: int | None = Field(default=None, ge=1)
    #: A block range of a table with a key both servers order alike: a difference in its totals is then
    #: located by reading the table again by key range (``VerificationState.locate``).
    keyed: bool = False

    @property
    def in_blocks(self) -> bool:
        return self.first_block is not None

    @property
    def starts_table(self) -> bool:
        """Whether this is its table's first chunk."""
        return self.first_block == 0 if self.in_blocks else self.lower is None

    @property
    def resume_at(self) -> list[str] | None:
        """The planning cursor that starts at this chunk: its lower key, or its first block as text."""
        return [str(self.first_block)] if self.in_blocks else self.lower

    def describe(self) -> str:
        table = f"{self.schema_name}.{self.table_name}"
        if self.in_blocks:
            end = "+inf" if self.end_block is None else str(self.end_block)
            return f"{table} (blocks [{self.first_block}, {end}))"
        if not self.key:
            return f"{table} (whole table)"
        lower, upper = self._bound(self.lower, "-inf"), self._bound(self.upper, "+inf")
        return f"{table} ({', '.join(self.key)}) in [{lower}, {upper})"

    def _bound(self, values: list[str] | None, infinite: str) -> str:
        if values is None:
            return infinite
        rendered = [render_key_value(v, b) for v, b in zip(values, self.bare, strict=True)]
        bound = rendered[0] if len(rendered) == 1 else "(" + ", ".join(rendered) + ")"
        return bound if len(bound) <= MAX_BOUND_CHARS else bound[:MAX_BOUND_CHARS] + "…"


def qualified(schema: str, table: str) -> str:
    """A table's name as the state keeps it: ``schema.table``, each part double-quoted when it holds a dot
    or a double quote, so that no two tables share a name."""

    def part(name: str) -> str:
        return '"' + name.replace('"', '""') + '"' if "." in name or '"' in name else name

    return f"{part(schema)}.{part(table)}"


def render_difference(where: str, source_rows: int, target_rows: int) -> str:
    """A difference as a report names it: by its row counts, or, when they agree, by its content."""
    if source_rows != target_rows:
        return f"{where}: {source_rows} rows on the source, {target_rows} on the target"
    return f"{where}: same {source_rows} rows, different content"


class ChunkCheck(_Result):
    """What verify-chunk found for one chunk (one item of the Map's result)."""

    chunk: str
    source_rows: int
    target_rows: int
    matches: bool
    #: The chunk's table, "schema.table" (a foreign-key violation found before the cutover decision makes
    #: it re-checked after it).
    table: str = ""
    #: Foreign keys the chunk's target rows violate, each naming the constraint, the rows and the range
    #: (at most MAX_VIOLATIONS_PER_CHUNK; ``violation_count`` counts them all).
    violations: list[str] = Field(default_factory=list)
    violation_count: int = 0
    #: A block range's checksums on each side (decimal text; "" when only rows are counted, and for key
    #: ranges, which are judged by ``matches`` alone): added up to its table's (``TableSums``).
    source_sum: str = ""
    target_sum: str = ""

    def render(self) -> str:
        return render_difference(self.chunk, self.source_rows, self.target_rows)


class TableSums(_Result):
    """A table checked in block ranges: its ranges' row counts and checksums added up on each side. The
    checksum is a sum of row hashes, so a side's total does not depend on how its rows are spread over its
    blocks, which differs between the servers; only the totals, at the table's last range, are compared."""

    table: str
    ranges: int = 0
    source_rows: int = 0
    target_rows: int = 0
    source_sum: str = ""
    target_sum: str = ""

    def plus(self, check: ChunkCheck) -> "TableSums":
        return self.model_copy(
            update={
                "ranges": self.ranges + 1,
                "source_rows": self.source_rows + check.source_rows,
                "target_rows": self.target_rows + check.target_rows,
                "source_sum": _added(self.source_sum, check.source_sum),
                "target_sum": _added(self.target_sum, check.target_sum),
            }
        )

    @property
    def matches(self) -> bool:
        return (self.source_rows, self.source_sum) == (self.target_rows, self.target_sum)

    def render(self) -> str:
        return render_difference(
            f"{self.table} (whole table, {self.ranges} block ranges)", self.source_rows, self.target_rows
        )


def _added(total: str, part: str) -> str:
    """Two checksums (decimal text, "" for none) added: sums of 64-bit hashes outgrow JSON's safe integers,
    so they travel as text."""
    if not part:
        return total
    return str(int(total or 0) + int(part))


class ChunkFailure(_Result):
    """A chunk whose verify-chunk failed once its Retry rules were spent (one item of the Map's result).
    The Distributed Map's item processor catches the error and returns it as the chunk's result, because a
    failed child execution fails the Map Run with a generic ``States.ExceedToleratedFailureThreshold`` and
    the function's message would be lost. ``failure`` is ``{"Error": ..., "Cause": ...}``, the Cause cut
    down to the function's message where it was the Lambda runtime's error JSON."""

    failure: dict[str, Any]


class VerificationState(_Result):
    """Chunked verification, round by round: the next round's chunks (the Map's items), the cursor after
    them, and running totals. Bounded whatever the database's size: at most ``MAX_CHUNKS_PER_ROUND``
    chunks and ``MAX_OBJECTS_PER_FINDING`` named differences."""

    done: bool = False
    #: The Map's MaxConcurrency (spec.verification_concurrency, here because the raw spec may omit it).
    concurrency: int = 1
    next_table: int = 0
    #: Where the next chunk of table ``next_table`` starts (its key values); ``None``: at the table's start.
    next_lower: list[str] | None = None
    chunks: list[Chunk] = Field(default_factory=list)
    #: The Map's output for ``chunks``, written by the state machine (ResultPath), read by the next round.
    results: list[ChunkCheck | ChunkFailure] = Field(default_factory=list)
    #: A failed chunk's error, ``{"Error": ..., "Cause": ...}``: the state machine hands it to cleanup as
    #: the migration's error (set instead of planning another round).
    failure: dict[str, str] | None = None
    tables_checked: int = 0
    chunks_checked: int = 0
    rows_checked: int = 0
    mismatch_count: int = 0
    #: The table checked in block ranges whose ranges continue in the next round: its totals so far.
    open_sums: TableSums | None = None
    #: Keyed tables whose block ranges' totals differ: once every table is read, they are read again by key
    #: range (``locating``), so that a difference names its range. At most ``MAX_OBJECTS_PER_FINDING``; a
    #: table beyond that is named whole.
    locate: list[TableSums] = Field(default_factory=list, max_length=MAX_OBJECTS_PER_FINDING)
    #: The rounds now plan the tables in ``locate``, by key range (the cursor walks that list).
    locating: bool = False
    #: The tables of ``locate`` in which a key range was found to differ.
    located: list[str] = Field(default_factory=list, max_length=MAX_OBJECTS_PER_FINDING)
    #: The first ``MAX_OBJECTS_PER_FINDING`` differences (``mismatch_count`` counts them all).
    mismatched: list[str] = Field(default_factory=list, max_length=MAX_OBJECTS_PER_FINDING)
    violation_count: int = 0
    #: Foreign-key violations found so far (constraint, table, key range), at most MAX_OBJECTS_PER_FINDING.
    violations: list[str] = Field(default_factory=list, max_length=MAX_OBJECTS_PER_FINDING)
    #: Tables left out because DMS validated them (``verification: dms``).
    tables_validated_by_dms: int = 0
    #: CDC: this is the foreign-key check made before the cutover is offered (while DMS replicates), not
    #: the verification after the decision; its violations fail nothing (a change may be half applied),
    #: they make the table re-checked after the decision.
    before_decision: bool = False
    #: DMS's change counters ("full load rows/inserts/updates/deletes/DDLs", DescribeTableStatistics) of
    #: the tables with foreign keys or referenced by one, read before the check before the decision began;
    #: a table with a violation then is dropped. At most ``MAX_BASELINE_BYTES`` of names: a table left out
    #: is re-checked after the decision.
    baseline: dict[str, str] = Field(default_factory=dict)
    #: Tables whose foreign keys were checked before the decision.
    foreign_keys_checked_before: int = 0
    #: Tables with foreign keys that DMS's counters show unchanged since then (with the tables they
    #: reference): not checked again after the decision.
    foreign_keys_unchanged: int = 0
    #: Tables whose foreign keys were checked after the decision.
    foreign_keys_checked_after: int = 0
    #: ``verification: dms``: tables with foreign keys not checked after the decision because DMS validated
    #: them and the tables they reference, and the source holds the same constraints, validated
    #: (:func:`pg2rds.postgres.foreign_keys.held_by_validation`).
    foreign_keys_held_by_validation: int = 0


class LeaseState(_Result):
    """The migration id's lease, as taken by this execution."""

    lineage: str
    execution_arn: str


class Failure(_Result):
    error: str
    cause: Message


class CleanupState(Waiting):
    removed: Names = Field(default_factory=list)
    remaining: Names = Field(default_factory=list)
    kept: Names = Field(default_factory=list)
    failure: Failure | None = None


class MigrationState(_Result):
    """The whole state as a handler receives it; later phases read earlier phases' results from it."""

    spec: MigrationSpec
    #: The first execution of this chain (its ARN; continuations carry it): tags what the chain creates.
    lineage: str = ""
    #: The execution handling this state now (set for the lease, which names it to a refused duplicate).
    execution_arn: str = ""
    source_report: SourceReport | None = None
    target_report: TargetReport | None = None
    instance: InstanceState | None = None
    endpoints: EndpointsState | None = None
    connections: ConnectionsState | None = None
    #: Set by "Create replication slot" (CDC migrations only).
    slot: SlotState | None = None
    task: TaskState | None = None
    progress: Progress | None = None
    #: The operator's decision (``pg2rds cutover``), as sent with SendTaskSuccess.
    cutover: dict[str, Any] | None = None
    finish: FinishReport | None = None
    verification: VerificationState | None = None
    #: The one chunk a verify-chunk invocation checks (set by the Map's ItemSelector).
    chunk: Chunk | None = None
    cleanup: CleanupState | None = None
    #: Set by the ``Catch`` of any failed state: ``{"Error": ..., "Cause": ...}``.
    error: dict[str, Any] | None = None
