"""Wait intervals for the state machine's poll loops.

Each poll costs about nine history events (Task, Choice, Wait), and an execution may hold 25,000. The
interval therefore starts short, so quick phases finish quickly, and grows geometrically to a cap, so a
migration that replicates for weeks costs few events per hour.
"""

import math
from datetime import UTC, datetime
from typing import Any

from pg2rds.errors import PhaseTimedOut
from pg2rds.spec import MigrationSpec, PollingSpec
from pg2rds.state import Waiting

#: Polls one execution makes before it continues in a new one. A poll costs 9 history events (Task: 5,
#: Choice: 2, Wait: 2), so 2,500 polls stay well inside the 25,000-event limit with room for the rest.
POLLS_PER_EXECUTION = 2500


def next_wait(polling: PollingSpec, polls_so_far: int) -> int:
    """Seconds to wait before poll number ``polls_so_far + 1``.

    The exponent stops growing once the cap is reached: ``polls`` counts across continuations, and
    ``1.5 ** 1751`` is beyond a float (OverflowError, after about 12 days of polling at the defaults)."""
    if polling.backoff == 1:
        return polling.initial_seconds
    polls_to_cap = math.log(polling.max_seconds / polling.initial_seconds, polling.backoff)
    if polls_so_far >= polls_to_cap:
        return polling.max_seconds
    return int(min(polling.initial_seconds * polling.backoff**polls_so_far, polling.max_seconds))


#: After the cutover decision the application is stopped, so every second of wait is downtime: the polls
#: start at 2 s (or the spec's initial interval if shorter) and back off to 30 s at most (or the spec's cap
#: if lower) — short waits, yet a DMS that lags for an hour after the decision costs about 125 polls.
#: Measured locally, the task stopped 2 to 4 polls after the decision: at 5 s ×1.5 that was 5 to 23 s of
#: waiting at AWS's clock, at 2 s ×1.5 it is 2 to 9 s.
CUTOVER_FIRST_WAIT_SECONDS = 2
CUTOVER_MAX_WAIT_SECONDS = 30


def cutover_wait(polling: PollingSpec, polls_since_decision: int) -> int:
    """Seconds to wait before the next poll after the decision (``polls_since_decision`` made so far)."""
    return next_wait(
        polling.model_copy(
            update={
                "initial_seconds": min(polling.initial_seconds, CUTOVER_FIRST_WAIT_SECONDS),
                "max_seconds": min(polling.max_seconds, CUTOVER_MAX_WAIT_SECONDS),
            }
        ),
        polls_since_decision,
    )


def now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def elapsed_seconds(started_at: str) -> float:
    if not started_at:
        return 0.0
    return (datetime.now(UTC) - datetime.fromisoformat(started_at)).total_seconds()


def poll_fields(spec: MigrationSpec, previous: Waiting | None, ready: bool) -> dict[str, Any]:
    """``ready``/``wait_seconds``/``started_at``/``polls`` for a poll result: the count grows by one, the
    start is kept from the first poll, and the wait grows geometrically from the spec's initial interval."""
    polls_before = previous.polls if previous else 0
    started_at = previous.started_at if previous and previous.started_at else now_iso()
    return {
        "ready": ready,
        "polls": polls_before + 1,
        "started_at": started_at,
        "wait_seconds": 0 if ready else next_wait(spec.polling, polls_before),
    }


def check_timeout(previous: Waiting | None, limit_seconds: float, what: str, fix: str) -> None:
    """Raise :class:`PhaseTimedOut` when more than ``limit_seconds`` passed since the first poll."""
    if previous is None or not previous.started_at:
        return
    elapsed = elapsed_seconds(previous.started_at)
    if elapsed > limit_seconds:
        raise PhaseTimedOut(
            f"{what} after {_duration(elapsed)} (limit {_duration(limit_seconds)}, polled {previous.polls} "
            f"times since {previous.started_at}). Fix: {fix}"
        )


def _duration(seconds: float) -> str:
    minutes = seconds / 60
    if minutes >= 120:
        return f"{minutes / 60:.1f} h"
    return f"{minutes:.0f} min" if minutes >= 1 else f"{seconds:.0f} s"
