"""The emulator patches moto's private internals (emulator/pg2rds_emulator/embedded.py, moto_dms.py,
function_roles.py, moto_speedups.py); they may change in any release. pyproject.toml bounds moto to the
releases checked here, and this test fails with a clear message when the installed moto is outside them or
an internal we patch has moved."""

import inspect
import json
import tomllib
from importlib.metadata import version
from pathlib import Path

import pytest
from packaging.requirements import Requirement

ROOT = Path(__file__).resolve().parents[2]


def _moto_requirement() -> Requirement:
    extras = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    return next(Requirement(r) for r in extras["emulator"] if r.startswith("moto"))


def test_installed_moto_is_a_release_the_emulator_was_checked_against() -> None:
    requirement, installed = _moto_requirement(), version("moto")
    assert any(spec.operator == "<" for spec in requirement.specifier), "moto must be bounded above"
    assert requirement.specifier.contains(installed), (
        f"moto {installed} is outside {requirement.specifier}, the releases whose internals the emulator "
        "patches; check each patch in embedded.py and moto_dms.py against it, then widen the bound"
    )


def _parameters(function: object) -> list[str]:
    return list(inspect.signature(function).parameters)  # type: ignore[arg-type]


# (where, attribute, the parameter names our replacement relies on)
PATCHED = [
    (
        "moto.stepfunctions.parser.asl.component.state.exec.state_task.service.state_task_service_sfn"
        ":StateTaskServiceSfn",
        "_eval_service_task",
        ["self", "env", "resource_runtime_part", "normalised_parameters", "state_credentials"],
    ),
    (
        "moto.stepfunctions.parser.asl.component.state.wait.wait_function.wait_function:WaitFunction",
        "_wait_interval",
        ["self", "env", "wait_seconds"],
    ),
    (
        "moto.awslambda_simple.models:LambdaSimpleBackend",
        "invoke",
        ["self", "function_name", "qualifier", "body", "headers", "response_headers"],
    ),
    ("moto.stepfunctions.responses:StepFunctionResponse", "start_execution", ["self"]),
    ("moto.stepfunctions.parser.models:StepFunctionsParserBackend", "_validate_definition", ["definition"]),
    ("moto.stepfunctions.responses:StepFunctionResponse", "send_task_failure", ["self"]),
    ("moto.dms.models:FakeReplicationTask", "to_dict", ["self"]),
    ("moto.dms.models:DatabaseMigrationServiceBackend", "delete_endpoint", ["self", "endpoint_arn"]),
    (
        "moto.dms.models:DatabaseMigrationServiceBackend",
        "delete_replication_instance",
        ["self", "replication_instance_arn"],
    ),
    ("moto.core.responses:BaseResponse", "_enrich_response", ["headers", "body"]),
    ("moto.stepfunctions.parser.backend.execution:BaseExecutionWorkerCommunication", "terminated", ["self"]),
    # function_roles.py
    (
        "moto.iam.access_control:IAMRequestBase",
        "__init__",
        ["self", "account_id", "method", "path", "data", "body", "headers", "action"],
    ),
    ("moto.core.exceptions:AccessDeniedError", "__init__", ["self", "user_arn", "action"]),
]


@pytest.mark.parametrize(("where", "attribute", "parameters"), PATCHED, ids=[p[1] for p in PATCHED])
def test_each_patched_internal_is_where_the_emulator_expects_it(
    where: str, attribute: str, parameters: list[str]
) -> None:
    module_name, class_name = where.split(":")
    module = __import__(module_name, fromlist=[class_name])
    owner = getattr(module, class_name)
    # the emulator may already have replaced it in this process: look at the class's original source
    original = inspect.getattr_static(owner, attribute)
    assert callable(original), f"{where}.{attribute} is gone: the emulator's patch no longer applies"
    if not getattr(original, "__module__", "").startswith("pg2rds_emulator"):
        assert _parameters(original)[: len(parameters)] == parameters, (
            f"{where}.{attribute} changed its parameters: review the emulator's patch of it"
        )


def test_the_retrier_still_reads_time_from_its_module() -> None:
    from moto.stepfunctions.parser.asl.component.common.retry import retrier_decl

    assert hasattr(retrier_decl, "time"), "retrier_decl no longer uses time.sleep: local retries not scaled"


def test_the_interpreter_still_signs_with_its_fixed_key_and_responses_still_name_their_resource() -> None:
    """function_roles tells the state machine's calls by the interpreter's key, and gives moto the
    resource of a request through the hook its authorization reads."""
    from moto.core.responses import BaseResponse
    from moto.stepfunctions.parser.asl.utils.boto_client import boto_client_for

    from pg2rds_emulator.function_roles import INTERPRETER_ACCESS_KEY

    assert f'aws_access_key_id="{INTERPRETER_ACCESS_KEY}"' in inspect.getsource(boto_client_for)
    assert "_determine_resource" in inspect.getsource(BaseResponse.call_action)


def test_the_history_is_still_a_locked_list_of_events_with_ids_in_the_event_manager() -> None:
    """The embedded history read copies one page from the execution's event list under its lock
    (embedded._get_execution_history), instead of moto's deep copy of all of it."""
    from moto.stepfunctions.parser.asl.eval.event.event_manager import EventManager
    from moto.stepfunctions.parser.backend.execution import Execution

    manager = EventManager()
    assert isinstance(manager._history_event_list, list) and hasattr(manager._mutex, "__enter__")
    assert "exec_worker" in inspect.getsource(Execution.__init__)
    assert "env.event_manager.get_event_history()" in inspect.getsource(Execution.to_history_output)


def test_responses_still_carry_their_request_id_in_the_xml_body_and_in_the_header() -> None:
    """The embedded account skips moto's request-id regex for bodies without a ``<RequestId>`` tag (JSON):
    an XML answer (SNS, IAM: botocore reads the id from the body) still gets the id its header carries."""
    from pg2rds_emulator.embedded import EmbeddedAws

    with EmbeddedAws() as aws:
        for service, call in (
            ("sns", "list_topics"),
            ("iam", "list_roles"),
            ("stepfunctions", "list_activities"),
        ):
            metadata = getattr(aws.client(service), call)()["ResponseMetadata"]
            assert metadata["RequestId"], service
            assert metadata["RequestId"] == metadata["HTTPHeaders"]["x-amzn-requestid"], service


def test_the_interpreter_still_copies_state_data_and_parses_paths_through_its_module_globals() -> None:
    """moto_speedups replaces the ``copy`` module and the JSONPath ``parse`` the interpreter's modules
    look up at call time; a module that imported ``deepcopy`` or ``parse`` otherwise would bypass it."""
    from moto.stepfunctions.parser.asl.component.common.path import result_path
    from moto.stepfunctions.parser.asl.utils import json_path

    from pg2rds_emulator.moto_speedups import COPYING_MODULES

    for module in COPYING_MODULES:
        assert "copy.deepcopy(" in inspect.getsource(module), module.__name__
    assert "parse(" in inspect.getsource(json_path.extract_json)
    assert "parse(self.result_path_src)" in inspect.getsource(result_path.ResultPath._eval_body)


def test_a_json_answer_whose_data_holds_request_id_tags_comes_back_as_it_was_written() -> None:
    """moto writes each answer's request id into its body with a greedy regex over everything between the
    first ``<RequestId>`` and the last ``</RequestId>`` of the body. A JSON answer carries such tags in its
    data whenever a state's input or an error's cause quotes an AWS XML error (a denied DMS call in
    cleanup's cause): the execution's input came back altered, and a history page lost the events between
    two such causes, the first event's id and type joined to the last one's details."""
    from embedded_runs import run_to_end

    from pg2rds_emulator.embedded import EmbeddedAws

    document = {
        "first": "<ErrorResponse><RequestId>one</RequestId></ErrorResponse>",
        "between": ["a value", {"kept": True}],
        "second": "<RequestId>two</RequestId>",
    }
    definition = {"StartAt": "Done", "States": {"Done": {"Type": "Pass", "End": True}}}
    with EmbeddedAws(time_scale=0.02) as aws:
        sfn = aws.client("stepfunctions")
        arn = run_to_end(aws, "tags", definition, document)
        assert json.loads(sfn.describe_execution(executionArn=arn)["input"]) == document
        events = sfn.get_execution_history(executionArn=arn, maxResults=1000)["events"]
    assert [e["type"] for e in events] == [
        "ExecutionStarted",
        "PassStateEntered",
        "PassStateExited",
        "ExecutionSucceeded",
    ]
    assert json.loads(events[0]["executionStartedEventDetails"]["input"]) == document
    assert json.loads(events[-1]["executionSucceededEventDetails"]["output"]) == document
