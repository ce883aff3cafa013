"""The ASL matches errors by name and the handlers raise them by class: the two lists must agree, or a
transient error is never retried and a renamed one slips past its Catch."""

import inspect
import json
from pathlib import Path

from pg2rds import errors

ASL = Path(__file__).resolve().parents[2] / "statemachine" / "migration.asl.json"
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


def _matched(kind: str) -> set[str]:
    states = _states(json.loads(ASL.read_text())["States"])
    return {name for state in states for rule in state.get(kind, []) for name in rule["ErrorEquals"]}


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


def test_errors_meant_to_be_caught_by_name_are_caught() -> None:
    assert {cls.__name__ for cls in errors.CAUGHT_BY_NAME} <= _ours(_matched("Catch"))


def test_every_class_is_documented_for_the_operator() -> None:
    assert all(inspect.getdoc(cls) for cls in _classes().values())
