"""The ten phases, each a function of the migration state.

This is the glue between the state machine's view (one state in, one result out) and the domain modules,
which take only what they need. Anything a phase decides about failure is decided here, so the rules
("fatal findings stop the migration before anything costs money") are in one readable place.
"""

import os
from contextlib import AbstractContextManager

from pg2rds import lease
from pg2rds.aws import client
from pg2rds.bounded import clipped, joined
from pg2rds.dms import cleanup as dms_cleanup
from pg2rds.dms import validation
from pg2rds.dms.connections import test_connections as dms_test_connections
from pg2rds.dms.endpoints import ensure_endpoints
from pg2rds.dms.instance import ensure_instance
from pg2rds.dms.progress import poll_task as dms_poll_task
from pg2rds.dms.progress import table_statistics
from pg2rds.dms.table_mappings import table_mappings
from pg2rds.dms.task import CONTROL_SCHEMA, ensure_task_started
from pg2rds.errors import SourceNotReady, SpecInvalid, TargetNotReady, VerificationFailed
from pg2rds.naming import ResourceNames
from pg2rds.postgres.chunks import check_chunk, plan_next
from pg2rds.postgres.connection import connect
from pg2rds.postgres.finalize import finish_target as finish_on_target
from pg2rds.postgres.selection import partitioned_parents
from pg2rds.postgres.slots import current_wal_lsn, ensure_slot, slot_has_confirmed
from pg2rds.postgres.source_checks import validate_source as check_source
from pg2rds.postgres.target_prep import prepare_target
from pg2rds.postgres.validation_failures import FailureReader
from pg2rds.secrets import get_credentials
from pg2rds.spec import MigrationSpec
from pg2rds.state import (
    MAX_OBJECTS_PER_FINDING,
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
    TargetReport,
    TaskState,
    VerificationState,
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
    cutover_position = (lambda: _cutover_position(state)) if state.cutover is not None else None
    failure_keys = FailureReader(
        spec.target, lambda: get_credentials(spec.target, "target"), CONTROL_SCHEMA,
        state.task.arn.rsplit(":", 1)[-1],
    ) if spec.verification == "dms" else None  # fmt: skip
    progress = dms_poll_task(client("dms"), spec, state.task, state.progress, cutover_position, failure_keys)
    progress.cutover_timeout_seconds = state.spec.cdc.cutover_timeout_seconds
    return progress


def _cutover_position(state: MigrationState) -> tuple[str, bool]:
    """After the decision the application no longer writes: note the source's WAL position once, and report
    whether the slot has confirmed it. That proves every write before the decision is applied, which a
    latency figure (a per-minute CloudWatch maximum) cannot."""
    spec = state.spec
    credentials = get_credentials(spec.source, "source")
    lsn = (state.progress.cutover_lsn if state.progress else "") or current_wal_lsn(spec.source, credentials)
    slot = ResourceNames(spec.migration_id).slot
    return lsn, slot_has_confirmed(spec.source, credentials, slot, lsn)


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


def plan_verification(state: MigrationState) -> VerificationState:
    """Take in the last round's chunk results, then plan the next round from the cursor; once every table
    is planned and checked, fail naming the differences and foreign-key violations (table and key range),
    if any. Foreign keys are checked in the same chunks, also when ``verification`` is ``none``. A chunk that
    failed (its error is its result) ends the verification with that error (``failure``)."""
    spec = state.spec
    previous = state.verification or VerificationState()
    failure = _chunk_failure(previous)
    if failure is not None:
        return previous.model_copy(update={"chunks": [], "results": [], "failure": failure})
    summary = _take_in(previous)
    summary.concurrency = spec.verification_concurrency
    validated = _validated_by_dms(state)
    summary.tables_validated_by_dms = len(validated)
    summary.chunks, summary.next_table, summary.next_lower, summary.tables_checked, planned = plan_next(
        spec, get_credentials(spec.source, "source"), get_credentials(spec.target, "target"),
        previous.next_table, previous.next_lower, MAX_CHUNKS_PER_ROUND, validated,
    )  # fmt: skip
    summary.done = planned and not summary.chunks
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
    for result in previous.results:
        if isinstance(result, ChunkFailure):
            name, cause = result.failure.get("Error"), result.failure.get("Cause")
            return {"Error": str(name or "Error"), "Cause": clipped(str(cause or ""))}
    return None


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


def _validated_by_dms(state: MigrationState) -> set[tuple[str, str]]:
    """With ``verification: dms``, the tables DMS validated (its statistics, read again from the stopped
    task): pg2rds checksums only the others. Anything DMS did not report "Validated" is checksummed."""
    if state.spec.verification != "dms" or state.task is None:
        return set()
    rows = table_statistics(client("dms"), state.task.arn)
    return validation.validated_names(validation.read_tables(rows))


def _take_in(previous: VerificationState) -> VerificationState:
    """The running totals with the last round's results added (and no chunks or results left over)."""
    summary = previous.model_copy(
        update={
            "chunks": [],
            "results": [],
            "mismatched": list(previous.mismatched),
            "violations": list(previous.violations),
        }
    )
    for check in previous.results:
        assert isinstance(check, ChunkCheck), "a failed chunk ends the verification (_chunk_failure)"
        summary.chunks_checked += 1
        summary.rows_checked += check.source_rows
        if not check.matches:
            summary.mismatch_count += 1
            if len(summary.mismatched) < MAX_OBJECTS_PER_FINDING:
                summary.mismatched.append(check.render())
        summary.violation_count += check.violation_count
        room = MAX_OBJECTS_PER_FINDING - len(summary.violations)
        summary.violations.extend(check.violations[: max(room, 0)])
    return summary


def verify_chunk(state: MigrationState) -> ChunkCheck:
    """One Map item: the chunk's rows compared on both sides (a bounded amount of work)."""
    spec, chunk = state.spec, state.chunk
    assert chunk is not None
    return check_chunk(
        spec, get_credentials(spec.source, "source"), get_credentials(spec.target, "target"), chunk
    )


def cleanup(state: MigrationState) -> CleanupState:
    return dms_cleanup.cleanup(client("dms"), state)
