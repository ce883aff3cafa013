"""Closing an embedded account: nothing it started goes on once it is gone.

An account's executions and the handlers they invoke run on threads of moto's interpreter, and its
EventBridge rules start more (the cleanup state machine, when a migration ends FAILED, TIMED_OUT or
ABORTED). When the account closed as soon as its owner was done, a failed local run's cleanup was still
running: the mock stopped under it, the environment went back to the user's, and its next Lambda call
left the machine for the real AWS endpoint, signed with the user's own credentials, asking about
resources named as the user's real migration's are (``pg2rds-<migration id>``); a handler in flight went
on to the source database after the account had closed (it dropped a slot a test was reading) and wrote
its CA bundle into the system's temporary directory instead of the account's.

So an account closes in order (:func:`quiesce`): every execution still running is stopped (as its owner
has left; its end starts its cleanup through the rule, as in AWS); what the rules started is given
:data:`GRACE_SECONDS` to end; then nothing more is delivered and no handler starts, what still runs is
stopped, and the handlers under way are waited for. A Lambda client of the interpreter refuses to send
once the account is closed (:func:`refuse_once_closed`), whatever thread holds it.
"""

import logging
import threading
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from typing import Any

from botocore.exceptions import BotoCoreError

from pg2rds_emulator import event_delivery

log = logging.getLogger(__name__)

#: How long the executions the account's rules started (cleanups) may take to end by themselves: at the
#: local clock a cleanup takes well under a second; one retrying against an unreachable server, longer.
GRACE_SECONDS = 20.0
#: How long handler invocations under way at the close may take to return (a verify chunk's is seconds).
INVOCATION_GRACE_SECONDS = 30.0
_POLL_SECONDS = 0.02


class AccountClosed(BotoCoreError):
    """A call of an embedded account made after it closed (or while it closes): refused, never sent."""

    fmt = "the embedded AWS account is closed: {what} was not sent"


class Invocations:
    """The handler invocations under way, by function; none starts once the account is closing."""

    def __init__(self) -> None:
        self._changed = threading.Condition()
        self._running: Counter[str] = Counter()
        self.closed = False

    def reopen(self) -> None:
        with self._changed:
            self.closed = False

    @contextmanager
    def running(self, function_name: str) -> Iterator[None]:
        with self._changed:
            if self.closed:
                raise AccountClosed(what=f"an invocation of {function_name}")
            self._running[function_name] += 1
        try:
            yield
        finally:
            with self._changed:
                self._running[function_name] -= 1
                self._running += Counter()  # drop the functions that no longer run
                self._changed.notify_all()

    def close(self, timeout: float) -> list[str]:
        """Refuse new invocations and wait up to ``timeout`` for those under way; the functions still
        running then (none, normally)."""
        with self._changed:
            self.closed = True
            self._changed.wait_for(lambda: not self._running, timeout)
            return sorted(self._running)


INVOCATIONS = Invocations()


def refuse_once_closed(request: Any = None, **_: Any) -> None:
    """A ``before-send`` handler for the interpreter's clients. moto's stubber answers first while the
    account is open; once it has stopped, this refuses instead of letting the request leave."""
    if INVOCATIONS.closed:
        raise AccountClosed(what=f"{getattr(request, 'method', 'a')} {getattr(request, 'url', 'request')}")


def _running(sfn: Any) -> list[str]:
    """The account's running executions (every state machine, top level)."""
    arns = []
    for page in sfn.get_paginator("list_state_machines").paginate():
        for machine in page["stateMachines"]:
            pages = sfn.get_paginator("list_executions").paginate(
                stateMachineArn=machine["stateMachineArn"], statusFilter="RUNNING"
            )
            arns += [e["executionArn"] for p in pages for e in p["executions"]]
    return arns


def _stop(sfn: Any, arns: list[str], cause: str) -> None:
    for arn in arns:
        with suppress(sfn.exceptions.ExecutionDoesNotExist):
            sfn.stop_execution(executionArn=arn, error="AccountClosed", cause=cause)


def quiesce(sfn: Any) -> None:
    """Bring the account's executions to an end before it closes (see the module's docstring); ``sfn``
    is the operator's Step Functions client, used while moto still answers."""
    deadline = time.monotonic() + GRACE_SECONDS
    event_delivery.settle(deadline)  # a delivery under way has started what it starts
    delivered = event_delivery.started_executions()
    _stop(sfn, [arn for arn in _running(sfn) if arn not in delivered], "the embedded account closed")
    while time.monotonic() < deadline:
        event_delivery.settle(deadline)
        if not event_delivery.in_flight() and not _running(sfn):
            break
        time.sleep(_POLL_SECONDS)
    event_delivery.mute()
    left = _running(sfn)
    if left:
        log.warning("stopping %d execution(s) still running as the embedded account closes", len(left))
        _stop(sfn, left, "the embedded account closed before it ended")
    still = INVOCATIONS.close(INVOCATION_GRACE_SECONDS)
    if still:
        log.warning("the embedded account closes while these functions still run: %s", ", ".join(still))
