"""The ASL matches errors by name and the handlers raise them by class: the two lists must agree, or a
transient error is never retried and a renamed one slips past its Catch. Both state machines: the
migration's and the end-of-execution cleanup's."""

import inspect
import json
from pathlib import Path

from pg2rds import errors

STATE_MACHINES = Path(__file__).resolve().parents[2] / "statemachine"
ASLS = [STATE_MACHINES / "migration.asl.json", STATE_MACHINES / "cleanup.asl.json"]
#: Names Step Functions and its service integrations raise, not our classes.
SERVICE_PREFIXES = ("States.", "Lambda.", "SNS.", "DynamoDB.", "StepFunctions.", "SFN.")


def _states(states: dict) -> list[dict]:
    found = []
    for state in states.values():
        found.append(state)
        for branch in state.get("Branches", []):
            found += _states(branch["States"])
        processor = state.get("ItemProcessor") or state.get("Iterator")
        if processor:
            found += _states(processor["States"])
    return found


def _all_states() -> list[dict]:
    return [state for path in ASLS for state in _states(json.loads(path.read_text())["States"])]


def _matched(kind: str) -> set[str]:
    return {name for state in _all_states() for rule in state.get(kind, []) for name in rule["ErrorEquals"]}


def _ours(names: set[str]) -> set[str]:
    return {name for name in names if not name.startswith(SERVICE_PREFIXES)}


def _classes() -> dict[str, type]:
    return {
        name: cls
        for name, cls in inspect.getmembers(errors, inspect.isclass)
        if issubclass(cls, errors.Pg2RdsError) and cls is not errors.Pg2RdsError
    }


def test_every_error_the_asl_names_is_a_class_in_errors_py() -> None:
    named = _ours(_matched("Retry") | _matched("Catch"))
    assert named, "the ASL names none of our errors: the test would prove nothing"
    assert named - set(_classes()) == set()


def test_every_transient_error_is_retried_and_only_those() -> None:
    transient = {cls.__name__ for cls in errors.TRANSIENT}
    assert _ours(_matched("Retry")) == transient


def test_every_state_invoking_a_function_retries_every_transient_error() -> None:
    """A function's state must retry each transient error the function can raise. Which ones a phase can
    raise is not visible from the ASL (every phase runs inside named_aws_errors, most read a secret or
    connect), so every state that invokes one of our functions retries them all: a state that leaves one
    out (the cutover poll once failed on a source restart it should have ridden out) fails here."""
    transient = {cls.__name__ for cls in errors.TRANSIENT}
    invoking = [
        state
        for state in _all_states()
        if state["Type"] == "Task" and state["Resource"].endswith("FunctionArn}")
    ]
    assert len(invoking) >= 15, "fewer function states than the state machines have: the test would miss some"
    for state in invoking:
        retried = {name for rule in state.get("Retry", []) for name in rule["ErrorEquals"]}
        assert transient <= retried, (state.get("Comment", state["Resource"]), transient - retried)


def test_errors_meant_to_be_caught_by_name_are_caught() -> None:
    assert {cls.__name__ for cls in errors.CAUGHT_BY_NAME} == _ours(_matched("Catch"))


def test_no_transient_error_is_caught_before_its_retries() -> None:
    """A Catch naming a transient error would take it away from cleanup's path; States.ALL catches it only
    once the Retry rules are spent, which is what Step Functions does."""
    transient = {cls.__name__ for cls in errors.TRANSIENT}
    assert not transient & _matched("Catch")


def test_every_class_is_documented_for_the_operator() -> None:
    assert all(inspect.getdoc(cls) for cls in _classes().values())
