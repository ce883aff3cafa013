"""EventBridge in the embedded AWS: delivery to Lambda and Step Functions targets, and Step Functions'
execution status change events.

moto matches an event against the rules of its bus and delivers to logs, SQS, archives and other buses; a
rule whose target is a Lambda function or a state machine matches and nothing happens (moto raises
``NotImplementedError``). EventBridge invokes the function asynchronously with the event, or starts an
execution with the event as its input, after the target's ``Input``, ``InputPath`` or
``InputTransformer``. :func:`install` makes moto do the same, on a thread of its own (``PutEvents``
returns at once, as in AWS), for both target kinds: this is the one place delivery is written.

Step Functions sends "Step Functions Execution Status Change" to the default bus when a Standard
execution ends (EventBridge's "Step Functions events" page); moto's interpreter sends nothing, so
:func:`install` also emits that event when an execution ends SUCCEEDED, FAILED, TIMED_OUT or ABORTED.
"""

import copy
import json
import logging
import threading
import time
from datetime import UTC, datetime
from typing import Any

import boto3
from moto.events.models import EventMessageType, Rule, events_backends
from moto.events.utils import EventTemplateParser
from moto.stepfunctions.parser.backend.execution import BaseExecutionWorkerCommunication
from moto.utilities.arns import parse_arn

log = logging.getLogger(__name__)

#: Target services moto does not deliver to, and delivery here does.
DELIVERED_HERE = ("lambda", "states")
STATUS_CHANGE = "Step Functions Execution Status Change"

_original_send_to_targets = Rule.send_to_targets
_original_reflect_status = BaseExecutionWorkerCommunication._reflect_execution_status

#: Deliveries under way and the executions deliveries started, so that an account can let them end before
#: it closes; once it is closing (muted), nothing more is delivered (:mod:`pg2rds_emulator.account_close`).
_deliveries: set[threading.Thread] = set()
_started: set[str] = set()
_lock = threading.Lock()
_muted = threading.Event()


def target_input(target: dict[str, Any], event: EventMessageType) -> Any:
    """What EventBridge hands the target: the constant ``Input``, the ``InputPath`` part of the event, the
    ``InputTransformer``'s rendering, or the whole event."""
    if "Input" in target:
        return json.loads(target["Input"])
    if "InputPath" in target:
        return _json_path(event, target["InputPath"])
    transformer = target.get("InputTransformer")
    if transformer:
        return EventTemplateParser.parse(
            input_template=transformer.get("InputTemplate"),
            input_paths_map=transformer.get("InputPathsMap", {}),
            event=event,
        )
    return event


def _json_path(document: Any, path: str) -> Any:
    """``$`` or ``$.a.b`` (the dotted paths an InputPath uses)."""
    value = document
    for part in [p for p in path.removeprefix("$").split(".") if p]:
        value = value.get(part) if isinstance(value, dict) else None
    return value


def deliver(target_arn: str, payload: Any) -> None:
    """Invoke the function with ``payload``, or start an execution of the state machine with it."""
    arn = parse_arn(target_arn)
    if arn.service == "lambda":
        response = boto3.client("lambda", region_name=arn.region).invoke(
            FunctionName=target_arn, Payload=json.dumps(payload).encode()
        )
        if response.get("FunctionError"):
            log.warning("%s failed on an event: %s", target_arn, response["Payload"].read()[:2000])
    else:
        started = boto3.client("stepfunctions", region_name=arn.region).start_execution(
            stateMachineArn=target_arn, input=json.dumps(payload)
        )
        with _lock:
            _started.add(started["executionArn"])


def _deliver_logged(target_arn: str, payload: Any) -> None:
    try:
        deliver(target_arn, payload)
    except Exception:  # a failed delivery is EventBridge's concern, not the sender's
        log.exception("delivering an event to %s failed", target_arn)
    finally:
        with _lock:
            _deliveries.discard(threading.current_thread())


def _start_delivery(target_arn: str, payload: Any) -> None:
    thread = threading.Thread(target=_deliver_logged, args=(target_arn, payload), daemon=True)
    with _lock:
        if _muted.is_set():
            log.info("the account is closing: an event for %s is not delivered", target_arn)
            return
        _deliveries.add(thread)
    thread.start()


def open_account() -> None:
    """A new account: deliveries on, none started yet."""
    with _lock:
        _muted.clear()
        _started.clear()


def mute() -> None:
    """The account closes: nothing more is delivered."""
    _muted.set()


def in_flight() -> bool:
    with _lock:
        return bool(_deliveries)


def started_executions() -> set[str]:
    with _lock:
        return set(_started)


def settle(deadline: float) -> None:
    """Wait, until ``deadline`` (``time.monotonic()``), for the deliveries under way."""
    while (remaining := deadline - time.monotonic()) > 0:
        with _lock:
            thread = next(iter(_deliveries), None)
        if thread is None:
            return
        thread.join(remaining)


def _send_to_targets(self: Rule, original_event: EventMessageType, transform_input: bool = True) -> None:
    """moto's delivery for the targets it knows; ours, on a thread, for Lambda and Step Functions."""
    ours = [t for t in self.targets if parse_arn(t["Arn"]).service in DELIVERED_HERE]
    if len(ours) < len(self.targets):
        theirs = copy.copy(self)
        theirs.targets = [t for t in self.targets if t not in ours]
        _original_send_to_targets(theirs, original_event, transform_input)
    if not ours or self.state != "ENABLED" or not self.event_pattern.matches_event(original_event):
        return
    event = dict(original_event)
    if isinstance(event.get("time"), int | float):
        event["time"] = datetime.fromtimestamp(event["time"], UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    for target in ours:
        payload = target_input(target, event)
        _start_delivery(target["Arn"], payload)


def _millis(moment: datetime | None) -> int | None:
    return int(moment.timestamp() * 1000) if moment else None


def _reflect_status_and_announce(self: BaseExecutionWorkerCommunication) -> None:
    _original_reflect_status(self)
    execution = self.execution
    arn = execution.exec_arn
    detail = {
        "executionArn": arn,
        "stateMachineArn": execution.state_machine_arn,
        "name": execution.name,
        "status": execution.exec_status.value,
        "startDate": _millis(execution.start_date),
        "stopDate": _millis(execution.stop_date),
        "input": execution.execution_input,
        "output": json.dumps(execution.output) if execution.output is not None else None,
        "error": getattr(execution, "error", None),
        "cause": getattr(execution, "cause", None),
    }
    where = parse_arn(arn)
    events_backends[where.account][where.region].put_events(
        [
            {
                "Source": "aws.states",
                "DetailType": STATUS_CHANGE,
                "Detail": json.dumps(detail),
                "Resources": [arn],
            }
        ]
    )


def install() -> None:
    Rule.send_to_targets = _send_to_targets  # type: ignore[method-assign]
    BaseExecutionWorkerCommunication._reflect_execution_status = _reflect_status_and_announce  # type: ignore[method-assign]
