"""The ten phases, each a function of the migration state.

This is the glue between the state machine's view (one state in, one result out) and the domain modules,
which take only what they need. Anything a phase decides about failure is decided here, so the rules
("fatal findings stop the migration before anything costs money") are in one readable place.
"""

import os
from collections.abc import Mapping, Sequence
from contextlib import AbstractContextManager
from typing import Any

from pg2rds import lease
from pg2rds.aws import client
from pg2rds.bounded import clipped, joined
from pg2rds.dms import cleanup as dms_cleanup
from pg2rds.dms import validation
from pg2rds.dms.connections import test_connections as dms_test_connections
from pg2rds.dms.endpoints import ensure_endpoints
from pg2rds.dms.instance import ensure_instance
from pg2rds.dms.progress import CutoverPosition, table_statistics
from pg2rds.dms.progress import poll_task as dms_poll_task
from pg2rds.dms.table_mappings import table_mappings
from pg2rds.dms.task import CONTROL_SCHEMA, ensure_task_started
from pg2rds.errors import SourceNotReady, SpecInvalid, TargetNotReady, VerificationFailed
from pg2rds.naming import ResourceNames
from pg2rds.postgres.chunks import Planned, check_chunk, plan_next
from pg2rds.postgres.connection import connect
from pg2rds.postgres.finalize import finish_target as finish_on_target
from pg2rds.postgres.foreign_keys import foreign_key_tables
from pg2rds.postgres.selection import partitioned_parents
from pg2rds.postgres.slots import current_wal_lsn, ensure_slot, slot_has_confirmed
from pg2rds.postgres.source_checks import validate_source as check_source
from pg2rds.postgres.target_prep import prepare_target
from pg2rds.postgres.validation_failures import FailureReader
from pg2rds.secrets import get_credentials
from pg2rds.spec import MigrationSpec
from pg2rds.state import (
    MAX_OBJECTS_PER_FINDING,
    Chunk,
    ChunkCheck,
    ChunkFailure,
    CleanupState,
    ConnectionsState,
    DatabaseReport,
    EndpointsState,
    FinishReport,
    InstanceState,
    LeaseState,
    MigrationState,
    Progress,
    SlotState,
    SourceReport,
    TableSums,
    TargetReport,
    TaskState,
    VerificationState,
    qualified,
)

#: The role DMS assumes to read the two secrets; the template passes it to the functions that need it.
ACCESS_ROLE_ENV = "DMS_SECRETS_ACCESS_ROLE_ARN"


def _raise_on_fatal(report: DatabaseReport, side: str, error_class: type[Exception]) -> None:
    fatal = report.fatal
    if fatal:
        details = " | ".join(finding.render() for finding in fatal)
        raise error_class(f"{side} is not ready for this migration ({len(fatal)} fatal): {details}")


def take_lease(state: MigrationState) -> LeaseState:
    """The first state: this execution becomes the one live execution of its migration id, or is refused
    (:class:`MigrationAlreadyRunning`, naming the live one) before anything is created or deleted."""
    lineage = state.lineage or state.execution_arn
    lease.take(state.spec.migration_id, lineage, state.execution_arn)
    return LeaseState(lineage=lineage, execution_arn=state.execution_arn)


def validate_source(state: MigrationState) -> SourceReport:
    """Both secrets are read and checked against the spec first: a spec that names a server its secret
    is not for is SpecInvalid before anything connects anywhere."""
    source = get_credentials(state.spec.source, "source")
    get_credentials(state.spec.target, "target")
    report = check_source(state.spec, source)
    if state.spec.mode != "check":  # a check goes on to the target and reports both sides
        _raise_on_fatal(report, "the source", SourceNotReady)
    return report


def prep_target(state: MigrationState) -> TargetReport:
    if state.source_report is None:
        raise TargetNotReady("prep-target needs the source report; run validate-source first")
    report = prepare_target(state.spec, get_credentials(state.spec.target, "target"), state.source_report)
    if state.spec.mode == "check":
        report.check_fatal, report.check_cause = check_outcome(state.source_report, report)
        return report
    _raise_on_fatal(report, "the target", TargetNotReady)
    return report


def check_outcome(source: SourceReport, target: TargetReport) -> tuple[int, str]:
    """How many fatal findings a check found on both sides, and the Cause that lists them with their fixes.

    A check ends in the state machine's "Check found fatal problems" Fail state rather than by raising: a
    raised error would go through cleanup, which must not run for a check (nothing was created, and a
    migration with the same id may be running)."""
    fatal = [("the source", f) for f in source.fatal] + [("the target", f) for f in target.fatal]
    if not fatal:
        return 0, ""
    details = " | ".join(f"{side}: {finding.render()}" for side, finding in fatal)
    return len(fatal), f"the check found {len(fatal)} fatal problem(s): {details}"


def _creating(state: MigrationState, phase: str) -> AbstractContextManager[None]:
    """While a phase that creates something runs, its lineage's cleanup waits for it (see lease.py)."""
    return lease.running_phase(state.spec.migration_id, state.lineage, phase)


def create_instance(state: MigrationState) -> InstanceState:
    with _creating(state, "create-instance"):
        return ensure_instance(client("dms"), state.spec, state.instance, state.lineage)


def create_endpoints(state: MigrationState) -> EndpointsState:
    assert state.instance is not None and state.target_report is not None
    assert state.source_report is not None
    with _creating(state, "create-endpoints"):
        return ensure_endpoints(
            client("dms"),
            state.spec,
            state.source_report,
            state.target_report,
            os.environ[ACCESS_ROLE_ENV],
            state.lineage,
        )


def test_connections(state: MigrationState) -> ConnectionsState:
    assert state.instance is not None and state.endpoints is not None
    assert state.source_report is not None and state.target_report is not None
    return dms_test_connections(
        client("dms"),
        state.spec,
        state.instance,
        state.endpoints,
        state.connections,
        (state.source_report, state.target_report),
    )


def create_slot(state: MigrationState) -> SlotState:
    """The slot DMS will read, created by its owner before the task: only CDC migrations have one."""
    spec = state.spec
    if not spec.uses_cdc:
        raise SpecInvalid(f"a {spec.migration_type} migration replicates no changes and needs no slot")
    with _creating(state, "create-slot"):
        return ensure_slot(
            spec.source, get_credentials(spec.source, "source"), ResourceNames(spec.migration_id).slot
        )


def start_task(state: MigrationState) -> TaskState:
    assert state.instance is not None and state.endpoints is not None
    if state.spec.uses_cdc and state.slot is None:
        raise SourceNotReady("a CDC task needs this migration's replication slot; run create-slot first")
    spec = _with_sized_lobs(state)

    def mappings() -> str:
        # read when the task is created, so the partitioned tables excluded are those DMS will see
        credentials = get_credentials(spec.source, "source")
        with connect(spec.source, credentials, "source", application_name="pg2rds-start-task") as conn:
            return table_mappings(spec.tables, partitioned_parents(conn, spec.tables))

    with _creating(state, "start-task"):
        return ensure_task_started(
            client("dms"),
            spec,
            state.instance,
            state.endpoints,
            state.task,
            mappings,
            slot=state.slot,
            lineage=state.lineage,
        )


def _with_sized_lobs(state: MigrationState) -> MigrationSpec:
    """The spec with ``task.lob_max_size_kb`` filled in from validate-source's measurement when the user
    left it out (AWS: limited LOB mode with a limit above the largest LOB)."""
    spec, measured = state.spec, state.source_report.lob_max_size_kb if state.source_report else 0
    if spec.task.lob_max_size_kb is not None or not measured:
        return spec
    return spec.model_copy(update={"task": spec.task.model_copy(update={"lob_max_size_kb": measured})})


def poll_task(state: MigrationState) -> Progress:
    """Task progress; what it means is decided by :func:`pg2rds.dms.poll_outcome.decide_poll_outcome`.
    After the cutover decision the poll also asks whether every change before it has been applied."""
    assert state.task is not None
    spec = state.spec
    cutover_position = _cutover_position(state) if state.cutover is not None else None
    failure_keys = FailureReader(
        spec.target, lambda: get_credentials(spec.target, "target"), CONTROL_SCHEMA,
        state.task.arn.rsplit(":", 1)[-1],
    ) if spec.verification == "dms" else None  # fmt: skip
    progress = dms_poll_task(client("dms"), spec, state.task, state.progress, cutover_position, failure_keys)
    progress.cutover_timeout_seconds = state.spec.cdc.cutover_timeout_seconds
    return progress


def _cutover_position(state: MigrationState) -> CutoverPosition:
    """After the decision the application no longer writes: note the source's WAL position once (kept in
    the progress across polls, and across this poll's reads of the slot), and report whether the slot has
    confirmed it. That proves every write before the decision is applied, which a latency figure (a
    per-minute CloudWatch maximum) cannot."""
    spec = state.spec
    slot = ResourceNames(spec.migration_id).slot
    noted = state.progress.cutover_lsn if state.progress else ""

    def position() -> tuple[str, bool]:
        nonlocal noted
        credentials = get_credentials(spec.source, "source")
        noted = noted or current_wal_lsn(spec.source, credentials)
        return noted, slot_has_confirmed(spec.source, credentials, slot, noted)

    return position


def finish_target(state: MigrationState) -> FinishReport:
    spec = state.spec
    report = finish_on_target(
        spec, get_credentials(spec.source, "source"), get_credentials(spec.target, "target")
    )
    problems = []
    if report.mismatched:
        problems.append(f"{len(report.mismatched)} tables differ: " + "; ".join(report.mismatched))
    if problems:
        raise VerificationFailed(
            "the target does not match the source after the load: "
            + " | ".join(problems)
            + ". Fix: check that "
            "nothing wrote to the source during a full-load-only migration (use full-load-and-cdc for a live "
            "source) and that the target tables were empty; then run the migration again."
        )
    return report


#: Chunks one round hands to the Map state: bounds the state (and the Map's output) per round.
MAX_CHUNKS_PER_ROUND = 100


#: Bytes of names and counters the baseline of the check before the decision keeps: a few hundred tables
#: with foreign keys; the tables beyond are checked again after the decision.
MAX_BASELINE_BYTES = 24_000


def plan_verification(state: MigrationState) -> VerificationState:
    """Take in the last round's chunk results, then plan the next round from the cursor; once every table
    is planned and checked, fail naming the differences and foreign-key violations (table and key range),
    if any. Foreign keys are checked in the same chunks, also when ``verification`` is ``none``. A chunk that
    failed (its error is its result) ends the verification with that error (``failure``).

    A CDC migration checks its foreign keys before the cutover is offered, while DMS replicates
    (:func:`_check_before_decision`); after the decision only the tables whose DMS change counters moved
    since then (or whose referenced tables' did) are checked again: the time after the decision, which is
    the application's downtime, no longer grows with the tables' size. With ``verification: dms`` not
    even those, when DMS validated the table and the tables it references and the source holds the same
    constraints, validated: the target's rows are the source's, which the source's constraint holds
    (:func:`pg2rds.postgres.foreign_keys.held_by_validation`; DMS validation's blind spot is theirs)."""
    spec = state.spec
    previous = state.verification or VerificationState()
    failure = _chunk_failure(previous)
    if failure is not None:
        return previous.model_copy(update={"chunks": [], "results": [], "failure": failure})
    if spec.uses_cdc and state.cutover is None:
        return _check_before_decision(state)
    if previous.before_decision:  # the check before the decision is done: the one after it starts
        previous = VerificationState(
            baseline=previous.baseline, foreign_keys_checked_before=previous.foreign_keys_checked_before
        )
    summary = _take_in(previous)
    summary.concurrency = spec.verification_concurrency
    rows = _statistics(state) if spec.verification == "dms" or summary.baseline else []
    validated = _validated_by_dms(state, rows)
    summary.tables_validated_by_dms = len(validated)
    credentials = get_credentials(spec.source, "source"), get_credentials(spec.target, "target")
    unchanged = _unchanged(summary.baseline, rows)
    planned = plan_next(
        spec, *credentials, previous.next_table, previous.next_lower, MAX_CHUNKS_PER_ROUND, validated,
        unchanged, only=_located_tables(summary),
    )  # fmt: skip
    _take_round_after_decision(summary, planned)
    if summary.done and summary.locate and not summary.locating:
        summary.locating = True  # every table read; those whose blocks differ are read again by key range
        planned = plan_next(
            spec, *credentials, 0, None, MAX_CHUNKS_PER_ROUND, validated, unchanged,
            only=_located_tables(summary),
        )  # fmt: skip
        _take_round_after_decision(summary, planned)
    if summary.done and summary.locating:
        _not_located(summary)
    if summary.done and (summary.mismatch_count or summary.violation_count):
        raise VerificationFailed(
            "the target does not match the source: "
            + " | ".join(_problems(summary))
            + ". Fix: check that nothing wrote to the target, and that nothing wrote to the source during "
            "a full-load-only migration (use full-load-and-cdc for a live source); then run the migration "
            "again."
        )
    return summary


def _chunk_failure(previous: VerificationState) -> dict[str, str] | None:
    """The first failed chunk's error of the last round, as the state machine hands it to cleanup.

    Returned, not raised: raising it here would name this state's own failure after the chunk's error, and
    its Retry rules would retry a transient name (SourceBusy up to 6 times, AwsThrottled 8) though the
    same input fails the same way every time. The state machine's "A chunk failed" passes it on unchanged,
    so the execution fails with the function's error name and message, as a chunk's Catch would have."""
    for chunk, result in zip(previous.chunks, previous.results, strict=True):
        if isinstance(result, ChunkFailure):
            name = str(result.failure.get("Error") or "Error")
            cause = str(result.failure.get("Cause") or "") or (
                # Step Functions' own errors (a time-out) carry no message: say where it happened
                f"verify-chunk ended with {name} on {chunk.describe()}, without a message: see the child "
                "executions of the VerifyChunk Map Run"
            )
            return {"Error": name, "Cause": clipped(cause)}
    return None


def _check_before_decision(state: MigrationState) -> VerificationState:
    """Before the cutover is offered: every foreign key checked on the target, in the same chunks (foreign
    keys only, no rows compared), while DMS goes on replicating. DMS's change counters of the tables
    involved are noted first, so that after the decision a table unchanged since (by those counters) need
    not be checked again. A violation seen now fails nothing, since a change may be half applied (DMS's
    batch apply orders statements by table), but its table is checked again after the decision.

    This relies on DescribeTableStatistics counting a change (Inserts, Updates, Deletes, Ddls) no later
    than the change is on the target, and on the stopped task's counters being final."""
    spec = state.spec
    previous = state.verification
    if previous is None or not previous.before_decision:
        summary = VerificationState(before_decision=True, baseline=_baseline(state))
    else:
        summary = _take_in(previous)
        for check in previous.results:
            if isinstance(check, ChunkCheck) and check.violation_count:  # checked after the decision too
                summary.baseline.pop(check.table, None)
    summary.concurrency = spec.verification_concurrency
    planned = plan_next(
        spec, get_credentials(spec.source, "source"), get_credentials(spec.target, "target"),
        summary.next_table, summary.next_lower, MAX_CHUNKS_PER_ROUND, foreign_keys_only=True,
    )  # fmt: skip
    _take_plan(summary, planned)
    summary.foreign_keys_checked_before += _tables_started(planned.chunks)
    return summary


def _take_plan(summary: VerificationState, planned: Planned) -> None:
    """The round just planned, and the cursor after it, into the state."""
    summary.chunks, summary.next_table = planned.chunks, planned.next_table
    summary.next_lower = planned.next_lower
    if not summary.locating:  # the cursor then walks the tables read again, not the selection
        summary.tables_checked = planned.tables_checked
    summary.done = planned.finished and not planned.chunks


def _take_round_after_decision(summary: VerificationState, planned: Planned) -> None:
    """A round planned after the load (or the decision), with its foreign-key counts: each round's, also
    the main pass's last (it may have left tables out without planning a chunk) when the second reading
    of differing tables is planned in the same invocation."""
    _take_plan(summary, planned)
    summary.foreign_keys_unchanged += planned.unchanged
    summary.foreign_keys_held_by_validation += planned.held
    summary.foreign_keys_checked_after += _tables_started(planned.chunks)


def _located_tables(summary: VerificationState) -> list[str] | None:
    """The tables the rounds now read again by key range, or None while every selected table is read."""
    return [sums.table for sums in summary.locate] if summary.locating else None


def _not_located(summary: VerificationState) -> None:
    """A table whose block ranges differed but none of whose key ranges did, read again: it is named
    whole, with its first totals (something wrote to one side between the two readings)."""
    for sums in summary.locate:
        if sums.table not in summary.located:
            _mismatch(summary, sums.render() + " (no key range differed when read again: written meanwhile?)")


def _tables_started(chunks: Sequence[Chunk]) -> int:
    """Tables whose foreign-key check starts in this round (a table's first chunk is open below)."""
    return sum(chunk.foreign_keys and chunk.starts_table for chunk in chunks)


def _counters(row: Mapping[str, Any]) -> str:
    """A table's DMS change counters, in one comparable text."""
    return "/".join(str(int(row.get(field, 0) or 0)) for field in _COUNTERS)


_COUNTERS = ("FullLoadRows", "Inserts", "Updates", "Deletes", "Ddls")


def _baseline(state: MigrationState) -> dict[str, str]:
    """DMS's change counters of the tables with a foreign key or referenced by one (read before the check
    begins: a change made while it runs counts as a change), at most ``MAX_BASELINE_BYTES`` of them."""
    spec = state.spec
    if state.task is None:
        return {}
    rows = _statistics(state)
    credentials = get_credentials(spec.target, "target")
    with connect(spec.target, credentials, "target", application_name="pg2rds-verify") as target:
        related = foreign_key_tables(target)
    baseline: dict[str, str] = {}
    size = 0
    for row in sorted(rows, key=lambda r: (r.get("SchemaName", ""), r.get("TableName", ""))):
        schema, table = row.get("SchemaName", ""), row.get("TableName", "")
        if (schema, table) not in related:
            continue
        name, counters = qualified(schema, table), _counters(row)
        size += len(name) + len(counters) + 6
        if size > MAX_BASELINE_BYTES:
            break
        baseline[name] = counters
    return baseline


def _unchanged(baseline: Mapping[str, str], rows: Sequence[Mapping[str, Any]]) -> set[tuple[str, str]]:
    """(schema, table) of the tables whose counters are those of the baseline (absent: changed)."""
    unchanged = set()
    for row in rows:
        schema, table = row.get("SchemaName", ""), row.get("TableName", "")
        noted = baseline.get(qualified(schema, table))
        if noted is not None and noted == _counters(row):
            unchanged.add((schema, table))
    return unchanged


def _statistics(state: MigrationState) -> list[Mapping[str, Any]]:
    return table_statistics(client("dms"), state.task.arn) if state.task is not None else []


def _problems(summary: VerificationState) -> list[str]:
    """The differing chunks and the violated foreign keys, each list named and capped."""
    problems = []
    for count, named, what in (
        (summary.mismatch_count, summary.mismatched, "chunk(s) differ"),
        (summary.violation_count, summary.violations, "foreign key violation(s) on the target"),
    ):
        if count:
            problems.append(f"{count} {what}: " + joined(named, "; ", total=count))
    return problems


def _validated_by_dms(state: MigrationState, rows: Sequence[Mapping[str, Any]]) -> set[tuple[str, str]]:
    """With ``verification: dms``, the tables DMS validated (its statistics, ``rows``, read again from the
    stopped task): pg2rds checksums only the others. Anything DMS did not report "Validated" is
    checksummed."""
    if state.spec.verification != "dms" or state.task is None:
        return set()
    return validation.validated_names(validation.read_tables(rows))


def _take_in(previous: VerificationState) -> VerificationState:
    """The running totals with the last round's results added (and no chunks or results left over)."""
    summary = previous.model_copy(
        update={
            "chunks": [],
            "results": [],
            "mismatched": list(previous.mismatched),
            "violations": list(previous.violations),
            "locate": list(previous.locate),
            "located": list(previous.located),
            "baseline": dict(previous.baseline),
        }
    )
    for chunk, check in zip(previous.chunks, previous.results, strict=True):
        assert isinstance(check, ChunkCheck), "a failed chunk ends the verification (_chunk_failure)"
        summary.chunks_checked += 1
        if not previous.locating:  # a table read again by key range: its rows were counted once
            summary.rows_checked += check.source_rows
        if chunk.in_blocks and chunk.compare:
            _add_block_range(summary, chunk, check)
        elif not check.matches:
            _mismatch(summary, check.render())
            if previous.locating and check.table not in summary.located:
                summary.located.append(check.table)
        summary.violation_count += check.violation_count
        room = MAX_OBJECTS_PER_FINDING - len(summary.violations)
        summary.violations.extend(check.violations[: max(room, 0)])
    return summary


def _mismatch(summary: VerificationState, described: str) -> None:
    summary.mismatch_count += 1
    if len(summary.mismatched) < MAX_OBJECTS_PER_FINDING:
        summary.mismatched.append(described)


def _add_block_range(summary: VerificationState, chunk: Chunk, check: ChunkCheck) -> None:
    """A block range's counts and sums added to its table's; at the table's last range the totals are
    compared. Tables are planned one after the other, so at most one table's totals are open across
    rounds; a range of another table while one is open would mean ranges went missing."""
    sums, table = summary.open_sums, qualified(chunk.schema_name, chunk.table_name)
    if chunk.first_block == 0:
        assert sums is None, f"{sums and sums.table}: its last block range never came"
        sums = TableSums(table=table)
    assert sums is not None and sums.table == table, f"{table}: a block range out of order"
    sums = sums.plus(check)
    summary.open_sums = sums if chunk.end_block is not None else None
    if chunk.end_block is None and not sums.matches:
        if chunk.keyed and len(summary.locate) < MAX_OBJECTS_PER_FINDING:
            summary.locate.append(sums)  # named by key range once every table is read
        else:
            _mismatch(summary, sums.render())


def verify_chunk(state: MigrationState) -> ChunkCheck:
    """One Map item: the chunk's rows compared on both sides (a bounded amount of work)."""
    spec, chunk = state.spec, state.chunk
    assert chunk is not None
    return check_chunk(
        spec, get_credentials(spec.source, "source"), get_credentials(spec.target, "target"), chunk
    )


def cleanup(state: MigrationState) -> CleanupState:
    return dms_cleanup.cleanup(client("dms"), state)
