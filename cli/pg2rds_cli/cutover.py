"""The operator's cutover decision, sent to an execution waiting in "Wait for cutover decision".

The task token travels in the SNS message the waiting state publishes, so it is in the execution history
(``TaskScheduled``'s parameters): anyone allowed to read the execution can find it, and nothing else needs
storing. The same code serves AWS and the embedded account.
"""

import getpass
import json
from datetime import UTC, datetime
from typing import Any

from pg2rds_cli.executions import history, is_watcher_state

WAITING_STATE = "Wait for cutover decision"


class NotWaitingForCutover(RuntimeError):
    """The execution is not (or no longer) waiting for a decision."""


def pending_token(sfn: Any, execution_arn: str) -> str:
    """The task token of the decision the execution waits for now."""
    described = sfn.describe_execution(executionArn=execution_arn)
    if described["status"] != "RUNNING":
        raise NotWaitingForCutover(
            f"the execution is {described['status']}, not waiting for a cutover decision"
        )
    for event in reversed(history(sfn, execution_arn)):
        kind = event["type"]
        if kind.endswith(("StateEntered", "StateExited")):
            details = event.get("stateEnteredEventDetails") or event.get("stateExitedEventDetails") or {}
            if is_watcher_state(details["name"]):
                continue  # the watcher runs alongside the wait
            if kind.endswith("StateExited") or details["name"] != WAITING_STATE:
                break  # the wait is over, or the newest state is another one: not waiting
        if kind == "TaskScheduled":
            parameters = json.loads(event["taskScheduledEventDetails"]["parameters"])
            message = parameters["Message"]
            if isinstance(message, str):
                message = json.loads(message)
            return message["task_token"]
    raise NotWaitingForCutover(
        "the execution is not waiting for a cutover decision (it has not caught up yet)"
    )


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
