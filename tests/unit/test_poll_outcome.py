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
        "after the decision, stopped",
        PollFacts("full-load-and-cdc", "stopped", "Stop Reason NORMAL", after_cutover=True),
        "stopped",
        False,
        False,
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
