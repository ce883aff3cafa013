"""The operator's cutover decision, sent to an execution waiting in "Wait for cutover decision".

The task token travels in the SNS message the waiting state publishes, so it is in the execution history
(``TaskScheduled``'s parameters): anyone allowed to read the execution can find it, and nothing else needs
storing. The same code serves AWS and the embedded account.
"""

import getpass
import json
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any

from pg2rds_cli.executions import events, is_watcher_state

WAITING_STATE = "Wait for cutover decision"


class NotWaitingForCutover(RuntimeError):
    """The execution is not (or no longer) waiting for a decision."""


#: Events per history call when looking for the wait's token, newest first: it is usually within the last
#: few dozen (the watcher's polls since the offer), and the application is stopped meanwhile. A page of
#: the API's 1,000 events, each with its input and output, cost 0.5 s to send in the embedded account
#: after a 60 s local run, for the 211 events needed.
DECISION_PAGE = 100


def pending_token(sfn: Any, execution_arn: str) -> str:
    """The task token of the decision the execution waits for now."""
    described = sfn.describe_execution(executionArn=execution_arn)
    if described["status"] != "RUNNING":
        raise NotWaitingForCutover(
            f"the execution is {described['status']}, not waiting for a cutover decision"
        )
    token = _waiting_token(events(sfn, execution_arn, newest_first=True, page_size=DECISION_PAGE))
    if token:
        return token
    raise NotWaitingForCutover(
        "the execution is not waiting for a cutover decision (it has not caught up yet)"
    )


def _waiting_token(events: Iterable[dict[str, Any]]) -> str | None:
    """The token of the wait the execution is in now, if it is in one, read from the newest event back.

    The application is stopped while the operator cuts over, so this reads only as far back as the wait's
    entry (one page, usually), never the whole history of weeks of polls. The watcher branch's states
    interleave with the wait's and are skipped; any other state entered since means the wait is over."""
    token = None
    for event in events:
        kind = event["type"]
        if kind.endswith("StateEntered"):
            name = event["stateEnteredEventDetails"]["name"]
            if name == WAITING_STATE:
                return token
            if not is_watcher_state(name):
                return None
        elif kind.endswith("StateExited") and event["stateExitedEventDetails"]["name"] == WAITING_STATE:
            return None
        elif kind == "TaskScheduled":  # newest first: the wait's own publish is the last one seen
            message = json.loads(event["taskScheduledEventDetails"]["parameters"]).get("Message")
            if isinstance(message, str):
                message = json.loads(message)
            token = (message or {}).get("task_token") or token
    return None


def send_decision(sfn: Any, execution_arn: str, abort: bool = False, reason: str = "") -> str:
    """Cut over (the migration stops replication at zero latency and finishes) or abort (cleanup, FAILED)."""
    token = pending_token(sfn, execution_arn)
    who = getpass.getuser()
    if abort:
        sfn.send_task_failure(
            taskToken=token,
            error="CutoverAborted",
            cause=f"the operator ({who}) aborted the migration at the cutover decision"
            + (f": {reason}" if reason else ""),
        )
        return "aborted"
    decision = {
        "decision": "cutover",
        "decided_by": who,
        "decided_at": datetime.now(UTC).isoformat(timespec="seconds"),
    }
    sfn.send_task_success(taskToken=token, output=json.dumps(decision))
    return "cutover"
