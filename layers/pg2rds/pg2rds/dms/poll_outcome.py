"""What one poll of the replication task means: the riskiest decision in pg2rds, in one pure function.

Everything the decision needs is gathered first (:class:`PollFacts`); :func:`decide_poll_outcome` then
says what the state machine does next, whether the task must be stopped now (the cutover's end), or why the
migration fails. No I/O here, so the whole rule set is one table of cases (tests/unit/test_poll_outcome.py).
"""

from dataclasses import dataclass, replace
from typing import Literal

Outcome = Literal["running", "full-load-complete", "cdc-caught-up", "stopped", "continue"]
MigrationType = Literal["full-load", "full-load-and-cdc", "cdc"]

FULL_LOAD_FINISHED = "FULL_LOAD_ONLY_FINISHED"


@dataclass(frozen=True)
class PollFacts:
    """What a poll observed. ``None`` means "not measured": latency before DMS publishes a data point, the
    slot's confirmation before the cutover decision."""

    migration_type: MigrationType
    status: str
    stop_reason: str = ""
    tables_errored: int = 0
    full_load_done: bool = False
    latency_source_seconds: int | None = None
    latency_target_seconds: int | None = None
    max_latency_seconds: int = 0
    #: The operator decided to cut over: pg2rds now stops the task itself.
    after_cutover: bool = False
    #: After the decision: has the slot confirmed the source's WAL position at the decision?
    cutover_position_applied: bool | None = None
    #: Polls this execution has made, this one included, and how many one execution may make.
    execution_polls: int = 1
    polls_per_execution: int = 2500
    #: ``verification: dms``: DMS validates the tables with a key; then, per DescribeTableStatistics, the
    #: tables still being validated (pending records, or not yet "Validated") and those that differ
    #: (failed or suspended records, "Mismatched records", an error).
    validating: bool = False
    validation_pending_tables: int = 0
    validation_failing_tables: int = 0
    #: Tables whose full validation pass has not started, records still to validate, and how many may
    #: remain when the cutover is offered (spec.cdc.max_pending_validation_records): they are validated
    #: after the decision, so they bound its downtime, as max_latency_seconds bounds the changes to apply.
    validation_waiting_tables: int = 0
    validation_pending_records: int = 0
    max_pending_validation_records: int = 0
    #: After the decision: DMS has taken longer than spec.cdc.validation_timeout_minutes to settle.
    validation_timed_out: bool = False
    #: The previous poll offered the cutover (this is the watcher of the wait): changes made meanwhile
    #: wait for validation as a matter of course, and are validated after the decision; only a
    #: difference withdraws the offer.
    offered: bool = False


@dataclass(frozen=True)
class PollDecision:
    outcome: Outcome
    #: Stop the task now: after the decision, once every change before it is applied.
    stop_task: bool = False
    #: Set when the migration must fail: the reason, for the TaskFailed message.
    failure: str | None = None
    #: Set when the migration must fail because DMS's validation proved the target different (or could not
    #: finish in time after the decision): the reason, for the VerificationFailed message.
    verification_failure: str | None = None
    #: Before the decision: the cutover is withheld because DMS's validation found differences.
    differs: bool = False

    @property
    def ready(self) -> bool:
        """This phase's wait is over; a ``continue`` keeps waiting, in the next execution."""
        return self.outcome not in ("running", "continue")


def _finished_full_load(facts: PollFacts) -> bool:
    return (
        facts.migration_type == "full-load"
        and facts.status == "stopped"
        and FULL_LOAD_FINISHED in facts.stop_reason
    )


def _failure(facts: PollFacts) -> str | None:
    if facts.tables_errored:
        return f"{facts.tables_errored} table(s) errored"
    if facts.status == "failed":
        return "the task failed"
    after_cutover = facts.after_cutover and facts.migration_type != "full-load"
    if facts.status == "stopped" and after_cutover and not facts.cutover_position_applied:
        # pg2rds stops the task only once the slot has confirmed the decision's position, so this stop
        # was someone else's (or DMS's own): what the application wrote last may not be on the target
        return (
            "the task stopped after the cutover decision before the replication slot had confirmed the "
            "source's position at the decision: the last changes made before it may be missing on the target"
        )
    if facts.status == "stopped" and not (_finished_full_load(facts) or after_cutover):
        return "the task stopped before the migration was complete"
    return None


def needs_latency(facts: PollFacts) -> bool:
    """Whether the caller should read the CDC latency (a CloudWatch call) before deciding."""
    return (
        facts.migration_type != "full-load"
        and not facts.after_cutover
        and facts.status == "running"
        and facts.full_load_done
    )


def _validation_settled(facts: PollFacts) -> bool:
    return not facts.validating or (
        facts.validation_pending_tables == 0 and facts.validation_failing_tables == 0
    )


def _validation_allows_offer(facts: PollFacts) -> bool:
    """Offered once every table's pass has started, nothing differs and at most
    ``max_pending_validation_records`` remain (all of them validated after the decision); kept while
    nothing differs (see ``offered``)."""
    if not facts.validating:
        return True
    if facts.offered:
        return facts.validation_failing_tables == 0
    return (
        facts.validation_failing_tables == 0
        and facts.validation_waiting_tables == 0
        and facts.validation_pending_records <= facts.max_pending_validation_records
    )


def _after_decision(facts: PollFacts) -> PollDecision:
    """Stop the task once the slot confirmed the decision's position and DMS validated every change (with
    ``verification: dms``); a difference found now, or validation that does not settle in time, fails."""
    applied = bool(facts.cutover_position_applied)
    if facts.status == "stopped":
        return PollDecision("stopped")
    if facts.validating and applied and facts.validation_failing_tables:
        return PollDecision(
            "running", verification_failure="DMS's validation found differences after the cutover decision"
        )
    if facts.validating and facts.validation_timed_out and not _validation_settled(facts):
        return PollDecision(
            "running",
            verification_failure="DMS's validation of the last changes did not finish within "
            "spec.cdc.validation_timeout_minutes after the cutover decision",
        )
    return PollDecision(
        "running", stop_task=facts.status == "running" and applied and _validation_settled(facts)
    )


def decide_poll_outcome(facts: PollFacts) -> PollDecision:
    """The outcome the Choice state branches on.

    - a failed task, an errored table, or a stop pg2rds did not expect: the migration fails;
    - full load: ``full-load-complete`` once DMS stopped with FULL_LOAD_ONLY_FINISHED;
    - CDC before the decision: ``cdc-caught-up`` when running, loaded and within the latency limit
      (unknown latency counts as caught up: the operator decides, and verification compares the data);
    - with ``verification: dms``, caught up also needs no table different (failed or suspended records)
      or waiting for its validation pass, and at most ``max_pending_validation_records`` pending (0: every
      table "Validated"); differences withhold the offer (``differs``), or withdraw it, while records
      changed during the wait only wait for validation (after the decision);
    - CDC after the decision: never back to the cutover wait; ``stopped`` once the task stopped, and the
      task is stopped only once the slot has confirmed the decision's WAL position (and, with
      ``verification: dms``, DMS has validated every change: a difference now fails the migration); a
      task found stopped before the slot confirmed that position was stopped by someone else, and fails;
    - a still-running poll loop, or the watcher of a long cutover wait, hands over to a new execution after
      ``polls_per_execution`` polls.
    """
    failure = _failure(facts)
    if failure:
        return PollDecision("running", failure=failure)
    differs = False
    if facts.migration_type == "full-load":
        decision = PollDecision("full-load-complete" if _finished_full_load(facts) else "running")
    elif facts.after_cutover:
        decision = _after_decision(facts)
    else:
        known = [v for v in (facts.latency_source_seconds, facts.latency_target_seconds) if v is not None]
        differs = facts.validating and facts.validation_failing_tables > 0
        caught_up = (
            facts.status == "running"
            and facts.full_load_done
            and max(known, default=0) <= facts.max_latency_seconds
            and _validation_allows_offer(facts)
        )
        decision = PollDecision("cdc-caught-up" if caught_up else "running", differs=differs)
    if (
        decision.outcome in ("running", "cdc-caught-up")
        and not decision.verification_failure
        and facts.execution_polls >= facts.polls_per_execution
    ):
        decision = replace(decision, outcome="continue")
    return decision
