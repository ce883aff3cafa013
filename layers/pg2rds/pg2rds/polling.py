"""Wait intervals for the state machine's poll loops.

Each poll costs about nine history events (Task, Choice, Wait), and an execution may hold 25,000. The
interval therefore starts short, so quick phases finish quickly, and grows geometrically to a cap, so a
migration that replicates for weeks costs few events per hour.
"""

from datetime import UTC, datetime

from pg2rds.spec import PollingSpec

#: Polls one execution makes before it continues in a new one. A poll costs 9 history events (Task: 5,
#: Choice: 2, Wait: 2), so 2,500 polls stay well inside the 25,000-event limit with room for the rest.
POLLS_PER_EXECUTION = 2500


def next_wait(polling: PollingSpec, polls_so_far: int) -> int:
    """Seconds to wait before poll number ``polls_so_far + 1``."""
    seconds = polling.initial_seconds * polling.backoff**polls_so_far
    return int(min(seconds, polling.max_seconds))


def now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def elapsed_seconds(started_at: str) -> float:
    if not started_at:
        return 0.0
    return (datetime.now(UTC) - datetime.fromisoformat(started_at)).total_seconds()
