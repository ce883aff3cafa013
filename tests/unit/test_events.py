"""The sample inputs in events/ and the template's wiring stay true to the code."""

import json
import re
from pathlib import Path

import pytest

from pg2rds.lambda_support import parse_state
from pg2rds.spec import parse_spec
from pg2rds_emulator.embedded import DEFINITION, TEMPLATE, _CfnLoader, template_functions

EVENTS = Path(__file__).resolve().parents[2] / "events"


@pytest.mark.parametrize("path", sorted((EVENTS / "phases").glob("*.json")), ids=lambda p: p.stem)
def test_phase_samples_are_valid_states(path: Path) -> None:
    state = parse_state(json.loads(path.read_text()))
    assert state.spec.migration_id.startswith("orders-2026")


def test_execution_samples_are_valid_specs() -> None:
    for name in ("migration.json", "migration-cdc.json"):
        parse_spec(json.loads((EVENTS / name).read_text()))
    event = json.loads((EVENTS / "eventbridge-start.json").read_text())
    assert (event["source"], event["detail-type"]) == ("pg2rds", "Start migration")
    parse_spec(event["detail"])
    [entry] = json.loads((EVENTS / "put-events.json").read_text())["Entries"]
    assert (entry["Source"], entry["DetailType"]) == ("pg2rds", "Start migration")
    parse_spec(json.loads(entry["Detail"]))


def test_eventbridge_rule_matches_the_sample_event() -> None:
    import yaml

    template = yaml.load(TEMPLATE.read_text(), Loader=_CfnLoader)
    rule = template["Resources"]["MigrationStateMachine"]["Properties"]["Events"]["StartFromEvent"][
        "Properties"
    ]
    event = json.loads((EVENTS / "eventbridge-start.json").read_text())
    assert event["source"] in rule["Pattern"]["source"]
    assert event["detail-type"] in rule["Pattern"]["detail-type"]
    assert rule["InputPath"] == "$.detail"


def test_every_placeholder_of_the_definition_is_substituted_and_every_function_has_a_handler() -> None:
    import yaml

    template = yaml.load(TEMPLATE.read_text(), Loader=_CfnLoader)
    substitutions = template["Resources"]["MigrationStateMachine"]["Properties"]["DefinitionSubstitutions"]
    placeholders = set(re.findall(r"\$\{(\w+)\}", DEFINITION.read_text()))
    assert placeholders == set(substitutions)
    for function in template_functions():
        assert (function.code_dir / "app.py").exists(), function
        assert f"{function.logical_id}Arn" in substitutions, function.logical_id
