"""What one poll of the replication task means: the riskiest decision in pg2rds, in one pure function.

Everything the decision needs is gathered first (:class:`PollFacts`); :func:`decide_poll_outcome` then
says what the state machine does next, whether the task must be stopped now (the cutover's end), or why the
migration fails. No I/O here, so the whole rule set is one table of cases (tests/unit/test_poll_outcome.py).
"""

from dataclasses import dataclass
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


@dataclass(frozen=True)
class PollDecision:
    outcome: Outcome
    #: Stop the task now: after the decision, once every change before it is applied.
    stop_task: bool = False
    #: Set when the migration must fail: the reason, for the TaskFailed message.
    failure: str | None = None

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
    expected_stop = _finished_full_load(facts) or (
        facts.after_cutover and facts.migration_type != "full-load"
    )
    if facts.status == "stopped" and not expected_stop:
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


def decide_poll_outcome(facts: PollFacts) -> PollDecision:
    """The outcome the Choice state branches on.

    - a failed task, an errored table, or a stop pg2rds did not expect: the migration fails;
    - full load: ``full-load-complete`` once DMS stopped with FULL_LOAD_ONLY_FINISHED;
    - CDC before the decision: ``cdc-caught-up`` when running, loaded and within the latency limit
      (unknown latency counts as caught up: the operator decides, and verification compares the data);
    - CDC after the decision: never back to the cutover wait; ``stopped`` once the task stopped, and the
      task is stopped only once the slot has confirmed the decision's WAL position;
    - a still-running poll loop, or the watcher of a long cutover wait, hands over to a new execution after
      ``polls_per_execution`` polls.
    """
    failure = _failure(facts)
    if failure:
        return PollDecision("running", failure=failure)
    stop_task = False
    if facts.migration_type == "full-load":
        outcome: Outcome = "full-load-complete" if _finished_full_load(facts) else "running"
    elif facts.after_cutover:
        outcome = "stopped" if facts.status == "stopped" else "running"
        stop_task = facts.status == "running" and bool(facts.cutover_position_applied)
    else:
        known = [v for v in (facts.latency_source_seconds, facts.latency_target_seconds) if v is not None]
        caught_up = (
            facts.status == "running"
            and facts.full_load_done
            and max(known, default=0) <= facts.max_latency_seconds
        )
        outcome = "cdc-caught-up" if caught_up else "running"
    if outcome in ("running", "cdc-caught-up") and facts.execution_polls >= facts.polls_per_execution:
        outcome = "continue"
    return PollDecision(outcome, stop_task=stop_task)
