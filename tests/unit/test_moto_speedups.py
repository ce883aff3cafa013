"""The interpreter's work done once or more cheaply (pg2rds_emulator.moto_speedups) changes no result: an
execution whose states read and write their data through every kind of path ends with the same output and
the same history data as under moto's own code."""

import copy
import inspect
import json
import random
from typing import Any

import pytest
from embedded_runs import run_to_end
from moto.stepfunctions.parser.asl.utils import json_path

from pg2rds_emulator import moto_speedups
from pg2rds_emulator.embedded import EmbeddedAws

#: Pass, Choice and Map states moving data through InputPath, Parameters (``.$`` paths, intrinsics),
#: ResultSelector-free results, ResultPath into new and existing keys, OutputPath and ItemsPath.
DEFINITION = {
    "StartAt": "Shape",
    "States": {
        "Shape": {
            "Type": "Pass",
            "InputPath": "$.spec",
            "Parameters": {
                "id.$": "$.migration_id",
                "tables.$": "$.tables",
                "first.$": "$.tables[0]",
                "count.$": "States.ArrayLength($.tables)",
                "fixed": {"nested": [1, 2.5, True, None, "x"]},
            },
            "ResultPath": "$.shaped",
            "Next": "Each table",
        },
        "Each table": {
            "Type": "Map",
            "ItemsPath": "$.shaped.tables",
            "ItemProcessor": {
                "ProcessorConfig": {"Mode": "INLINE"},
                "StartAt": "Mark",
                "States": {
                    "Mark": {
                        "Type": "Pass",
                        "Parameters": {"name.$": "$.name", "rows.$": "$.rows", "seen": True},
                        "ResultPath": "$.marked",
                        "End": True,
                    }
                },
            },
            "ResultPath": "$.shaped.marked",
            "Next": "Big?",
        },
        "Big?": {
            "Type": "Choice",
            "Choices": [{"Variable": "$.shaped.first.rows", "NumericGreaterThan": 10, "Next": "Big"}],
            "Default": "Small",
        },
        "Big": {"Type": "Pass", "Result": {"size": "big"}, "ResultPath": "$.verdict", "Next": "Out"},
        "Small": {"Type": "Pass", "Result": {"size": "small"}, "ResultPath": "$.verdict", "Next": "Out"},
        "Out": {"Type": "Pass", "OutputPath": "$.shaped", "End": True},
    },
}
INPUT = {
    "spec": {
        "migration_id": "m-1",
        "tables": [{"name": "a", "rows": 12, "tags": {"k": ["v", 1]}}, {"name": "b", "rows": 3}],
    }
}


def _run() -> tuple[dict[str, Any], list[tuple[str, Any]]]:
    """The execution's output and each state's (name, input or output document), sorted: a Map's
    iterations run at once, so their events come in any order."""
    with EmbeddedAws(time_scale=0.02) as aws:
        sfn = aws.client("stepfunctions")
        arn = run_to_end(aws, "paths", DEFINITION, INPUT)
        described = sfn.describe_execution(executionArn=arn)
        events = sfn.get_execution_history(executionArn=arn, maxResults=1000)["events"]
    assert described["status"] == "SUCCEEDED", described
    data = []
    for event in events:
        for key in ("stateEnteredEventDetails", "stateExitedEventDetails"):
            if key in event:
                details = event[key]
                data.append((details["name"], json.loads(details.get("input") or details.get("output"))))
    return json.loads(described["output"]), sorted(data, key=lambda item: json.dumps(item, sort_keys=True))


def test_an_execution_moves_the_same_data_with_and_without_the_speedups(monkeypatch) -> None:
    fast = _run()
    assert json_path.parse.cache_info().hits > 0, "each JSONPath text was parsed again"

    monkeypatch.setattr(moto_speedups, "install", lambda: None)
    for module, parse in moto_speedups.PARSING_MODULES.items():
        monkeypatch.setattr(module, "parse", parse)
    for module in moto_speedups.COPYING_MODULES:
        monkeypatch.setattr(module, "copy", copy)
    plain = _run()

    assert fast == plain
    output, data = fast
    assert output["count"] == 2 and output["marked"][0]["marked"] == {"name": "a", "rows": 12, "seen": True}
    names = {name for name, _ in data}
    assert "Big" in names and "Small" not in names


def _random_json(rng: random.Random, depth: int = 0) -> Any:
    kinds = ["str", "int", "float", "bool", "none"] + (["dict", "list"] * 2 if depth < 4 else [])
    kind = rng.choice(kinds)
    if kind == "dict":
        return {f"k{rng.randrange(100)}": _random_json(rng, depth + 1) for _ in range(rng.randrange(5))}
    if kind == "list":
        return [_random_json(rng, depth + 1) for _ in range(rng.randrange(5))]
    return {
        "str": lambda: "é" * rng.randrange(3),
        "int": lambda: rng.randrange(-(2**70), 2**70),
        "float": rng.random,
        "bool": lambda: rng.random() < 0.5,
        "none": lambda: None,
    }[kind]()


@pytest.mark.parametrize("seed", range(20))
def test_a_json_copy_equals_deepcopys_and_shares_nothing_mutable_with_its_original(seed: int) -> None:
    original = {"document": _random_json(random.Random(seed)), "list": [[1], {"a": [2]}]}
    copied = moto_speedups.json_copy(original)
    assert copied == copy.deepcopy(original)
    copied["list"][0].append(9)
    copied["list"][1]["a"].append(9)
    assert original["list"] == [[1], {"a": [2]}]


def test_a_value_that_is_not_json_is_copied_by_deepcopy() -> None:
    class Holder:
        def __init__(self) -> None:
            self.items = [1, 2]

    holder, inner = Holder(), [2]
    copied = moto_speedups.json_copy({"holder": holder, "pair": (1, inner)})
    assert copied["holder"] is not holder and copied["holder"].items == [1, 2]
    assert copied["holder"].items is not holder.items
    assert copied["pair"] == (1, [2]) and copied["pair"][1] is not inner


def test_moto_reads_its_models_through_one_loader_with_moto_s_extras() -> None:
    """moto built a model loader for each model it read, each listing botocore's ~400 service directories
    first; its one loader now lists once and still reads moto's extras (its own loader class)."""
    from moto.core import loaders, utils

    assert "create_loader()" in inspect.getsource(utils._load_service_model)  # where moto gets its loader
    moto_speedups.install()
    first, second = utils.create_loader(), utils.create_loader()
    assert first is second and type(first) is loaders.Loader
    first.load_service_model("sns", "service-2")
    first.load_service_model("sqs", "service-2")
    listings = [key for key in first._cache if key[0] == "list_available_services"]
    assert len(listings) == 1, listings
