"""The poll decision as a table: every combination the state machine depends on, one row each."""

import pytest

from pg2rds.dms.poll_outcome import PollFacts, decide_poll_outcome, needs_latency

FINISHED = "Stop Reason FULL_LOAD_ONLY_FINISHED"

# (case, facts, expected outcome, expected stop_task, failure expected)
CASES = [
    ("full load running", PollFacts("full-load", "running"), "running", False, False),
    ("full load finished", PollFacts("full-load", "stopped", FINISHED), "full-load-complete", False, False),
    (
        "full load stopped by someone",
        PollFacts("full-load", "stopped", "Stop Reason NORMAL"),
        "running",
        False,
        True,
    ),
    ("full load failed", PollFacts("full-load", "failed", "Stop Reason FATAL_ERROR"), "running", False, True),
    (
        "table errored while running",
        PollFacts("full-load", "running", tables_errored=2),
        "running",
        False,
        True,
    ),
    (
        "CDC still loading",
        PollFacts("full-load-and-cdc", "running", full_load_done=False, max_latency_seconds=5),
        "running",
        False,
        False,
    ),
    (
        "CDC caught up",
        PollFacts(
            "full-load-and-cdc",
            "running",
            full_load_done=True,
            latency_source_seconds=2,
            latency_target_seconds=4,
            max_latency_seconds=5,
        ),
        "cdc-caught-up",
        False,
        False,
    ),
    (
        "CDC behind",
        PollFacts(
            "full-load-and-cdc",
            "running",
            full_load_done=True,
            latency_source_seconds=1,
            latency_target_seconds=60,
            max_latency_seconds=5,
        ),
        "running",
        False,
        False,
    ),
    (
        "CDC latency unknown counts as caught up once loaded",
        PollFacts("cdc", "running", full_load_done=True, max_latency_seconds=5),
        "cdc-caught-up",
        False,
        False,
    ),
    (
        "CDC task starting is not caught up",
        PollFacts("cdc", "starting", full_load_done=True, max_latency_seconds=5),
        "running",
        False,
        False,
    ),
    (
        "CDC stopped before the decision",
        PollFacts("full-load-and-cdc", "stopped", "Stop Reason NORMAL", full_load_done=True),
        "running",
        False,
        True,
    ),
    (
        "after the decision, position not yet applied",
        PollFacts("full-load-and-cdc", "running", after_cutover=True, cutover_position_applied=False),
        "running",
        False,
        False,
    ),
    (
        "after the decision, position applied: stop the task",
        PollFacts("full-load-and-cdc", "running", after_cutover=True, cutover_position_applied=True),
        "running",
        True,
        False,
    ),
    (
        "after the decision, stopping",
        PollFacts("full-load-and-cdc", "stopping", after_cutover=True),
        "running",
        False,
        False,
    ),
    (
        "after the decision, stopped once the slot confirmed the decision's position (pg2rds's stop)",
        PollFacts(
            "full-load-and-cdc",
            "stopped",
            "Stop Reason NORMAL",
            after_cutover=True,
            cutover_position_applied=True,
        ),
        "stopped",
        False,
        False,
    ),
    (
        "after the decision, stopped before the slot confirmed it (someone else's stop: changes missing)",
        PollFacts(
            "full-load-and-cdc",
            "stopped",
            "Stop Reason NORMAL",
            after_cutover=True,
            cutover_position_applied=False,
        ),
        "running",
        False,
        True,
    ),
    (
        "after the decision, failed",
        PollFacts("cdc", "failed", "Stop Reason FATAL_ERROR", after_cutover=True),
        "running",
        False,
        True,
    ),
    (
        "caught up at the poll budget continues too (the cutover wait's watcher polls on while caught up)",
        PollFacts("cdc", "running", full_load_done=True, execution_polls=2500),
        "continue",
        False,
        False,
    ),
    (
        "a running loop at the poll budget continues in a new execution",
        PollFacts("full-load", "running", execution_polls=2500),
        "continue",
        False,
        False,
    ),
    (
        "verification dms: caught up, yet DMS has more records to validate than the spec allows",
        PollFacts(
            "cdc",
            "running",
            full_load_done=True,
            validating=True,
            validation_pending_tables=1,
            validation_pending_records=120,
            max_pending_validation_records=100,
        ),  # fmt: skip
        "running",
        False,
        False,
    ),
    (
        "verification dms: caught up, a few records left to validate (after the decision)",
        PollFacts(
            "cdc",
            "running",
            full_load_done=True,
            validating=True,
            validation_pending_tables=1,
            validation_pending_records=120,
            max_pending_validation_records=10000,
        ),  # fmt: skip
        "cdc-caught-up",
        False,
        False,
    ),
    (
        "verification dms: a table's validation pass has not started",
        PollFacts(
            "cdc",
            "running",
            full_load_done=True,
            validating=True,
            validation_pending_tables=1,
            validation_waiting_tables=1,
            max_pending_validation_records=10000,
        ),  # fmt: skip
        "running",
        False,
        False,
    ),
    (
        "verification dms: caught up, yet DMS found a table different (the offer is withheld)",
        PollFacts("cdc", "running", full_load_done=True, validating=True, validation_failing_tables=1),
        "running",
        False,
        False,
    ),
    (
        "verification dms: caught up and every table validated",
        PollFacts("cdc", "running", full_load_done=True, validating=True),
        "cdc-caught-up",
        False,
        False,
    ),
    (
        "verification dms, offered: changes made during the wait are pending validation, the offer stays",
        PollFacts(
            "cdc", "running", full_load_done=True, validating=True, validation_pending_tables=3, offered=True
        ),
        "cdc-caught-up",
        False,
        False,
    ),
    (
        "verification dms, offered: a difference withdraws the offer",
        PollFacts(
            "cdc", "running", full_load_done=True, validating=True, validation_failing_tables=1, offered=True
        ),
        "running",
        False,
        False,
    ),
    (
        "verification dms, after the decision: applied, but DMS has not validated the last changes yet",
        PollFacts(
            "cdc",
            "running",
            after_cutover=True,
            cutover_position_applied=True,
            validating=True,
            validation_pending_tables=2,
        ),  # fmt: skip
        "running",
        False,
        False,
    ),
    (
        "verification dms, after the decision: applied and validated",
        PollFacts("cdc", "running", after_cutover=True, cutover_position_applied=True, validating=True),
        "running",
        True,
        False,
    ),
    (
        "verification dms, after the decision: validated but not yet applied",
        PollFacts("cdc", "running", after_cutover=True, cutover_position_applied=False, validating=True),
        "running",
        False,
        False,
    ),
    (
        "after the decision at the poll budget",
        PollFacts("cdc", "running", after_cutover=True, cutover_position_applied=False, execution_polls=2500),
        "continue",
        False,
        False,
    ),
]


@pytest.mark.parametrize(("case", "facts", "outcome", "stop_task", "fails"), CASES, ids=[c[0] for c in CASES])
def test_poll_outcome(case: str, facts: PollFacts, outcome: str, stop_task: bool, fails: bool) -> None:
    decision = decide_poll_outcome(facts)
    assert (decision.outcome, decision.stop_task, decision.failure is not None) == (outcome, stop_task, fails)


def test_differences_withhold_the_cutover_before_the_decision_and_fail_the_migration_after() -> None:
    before = decide_poll_outcome(
        PollFacts("cdc", "running", full_load_done=True, validating=True, validation_failing_tables=1)
    )
    assert before.differs and before.outcome == "running" and before.verification_failure is None
    after = decide_poll_outcome(
        PollFacts(
            "cdc",
            "running",
            after_cutover=True,
            cutover_position_applied=True,
            validating=True,
            validation_failing_tables=1,
        )  # fmt: skip
    )
    assert not after.stop_task and "found differences after the cutover decision" in (
        after.verification_failure or ""
    )


def test_validation_that_does_not_settle_in_time_after_the_decision_fails() -> None:
    facts = PollFacts(
        "cdc", "running", after_cutover=True, cutover_position_applied=True, validating=True,
        validation_pending_tables=1, validation_timed_out=True,
    )  # fmt: skip
    assert "validation_timeout_minutes" in (decide_poll_outcome(facts).verification_failure or "")
    settled = PollFacts(
        "cdc", "running", after_cutover=True, cutover_position_applied=True, validating=True,
        validation_timed_out=True,
    )  # fmt: skip
    assert decide_poll_outcome(settled).stop_task


def test_ready_means_the_phase_wait_is_over() -> None:
    assert decide_poll_outcome(PollFacts("full-load", "stopped", FINISHED)).ready
    assert not decide_poll_outcome(PollFacts("full-load", "running")).ready
    assert not decide_poll_outcome(PollFacts("full-load", "running", execution_polls=2500)).ready


@pytest.mark.parametrize(
    ("facts", "needed"),
    [
        (PollFacts("full-load", "running", full_load_done=True), False),
        (PollFacts("cdc", "running", full_load_done=True), True),
        (PollFacts("full-load-and-cdc", "running", full_load_done=False), False),
        (PollFacts("cdc", "running", full_load_done=True, after_cutover=True), False),
        (PollFacts("cdc", "starting", full_load_done=True), False),
    ],
)
def test_latency_is_read_only_when_it_can_decide(facts: PollFacts, needed: bool) -> None:
    assert needs_latency(facts) is needed
