"""A phase's error as the state machine sees it: its class name (what Retry and Catch match) and message.

verify-chunk's errors become a Distributed Map's results, and a round's up to 100 results travel together
in the state, which Step Functions caps at 256 KiB: its messages are cut, under the same name."""

import json
from pathlib import Path

import psycopg2
import pytest

from pg2rds.errors import SourceBusy
from pg2rds.lambda_support import phase_handler
from pg2rds.state import MigrationState
from pg2rds_emulator.embedded import _LambdaContext

EVENT = json.loads((Path(__file__).resolve().parents[2] / "events" / "phases" / "poll-task.json").read_text())
CONTEXT = _LambdaContext("verify-chunk", "arn:aws:lambda:us-east-1:123456789012:function:verify-chunk")


class TwoArguments(Exception):
    def __init__(self, what: str, why: str) -> None:
        super().__init__(f"{what}: {why}")


def raising(error: Exception):
    def run(state: MigrationState):
        raise error

    return run


@pytest.mark.parametrize(
    "error",
    [
        SourceBusy("public.t is locked by pid 42 for 3 s: " + "x" * 5000),
        psycopg2.errors.QueryCanceled("canceling statement due to statement timeout " + "y" * 5000),
        TwoArguments("chunk", "z" * 5000),
    ],
    ids=lambda e: type(e).__name__,
)
def test_a_long_message_is_cut_under_the_same_name(error: Exception) -> None:
    handler = phase_handler("verify-chunk", raising(error), max_error_chars=1000)
    with pytest.raises(Exception) as raised:
        handler(EVENT, CONTEXT)
    assert type(raised.value).__name__ == type(error).__name__
    message = str(raised.value)
    assert message.startswith(str(error)[:1000]) and len(message) < 1100
    assert f"(and {len(str(error)) - 1000} more characters)" in message


def test_a_short_message_is_the_error_itself_and_other_phases_keep_theirs() -> None:
    short = SourceBusy("public.t is locked by pid 42")
    with pytest.raises(SourceBusy) as raised:
        phase_handler("verify-chunk", raising(short), max_error_chars=1000)(EVENT, CONTEXT)
    assert raised.value is short
    long = SourceBusy("w" * 5000)
    with pytest.raises(SourceBusy) as raised:
        phase_handler("finish-target", raising(long))(EVENT, CONTEXT)
    assert raised.value is long
