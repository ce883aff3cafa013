"""A definition is built into moto's program once per machine (asl_programs): later processes read the
program from the cache instead of running ANTLR; what the cache cannot vouch for is parsed again."""

import inspect
import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import boto3
import pytest
from botocore.exceptions import ClientError
from moto import mock_aws
from moto.stepfunctions.parser.asl.component.program.program import Program
from moto.stepfunctions.parser.backend.execution_worker import ExecutionWorker

from pg2rds_emulator import asl_programs

#: moto's Step Functions with its interpreter, as the embedded account runs it.
PARSER = {"stepfunctions": {"execute_state_machine": True}}


def _definition(result: str) -> str:
    return json.dumps(
        {"StartAt": "Only", "States": {"Only": {"Type": "Pass", "Result": result, "End": True}}}
    )


@pytest.fixture
def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """An empty cache directory, an empty memory, and the parses ANTLR was asked for, counted."""
    directory = tmp_path / "asl"
    monkeypatch.setenv(asl_programs.CACHE_DIR_VARIABLE, str(directory))
    monkeypatch.setattr(asl_programs, "_programs", {})
    parses: list[str] = []
    original = asl_programs._original_parse

    def counted(definition: str) -> object:
        parses.append(definition)
        return original(definition)

    monkeypatch.setattr(asl_programs, "_original_parse", counted)
    monkeypatch.setattr(asl_programs, "PARSES", parses, raising=False)
    # moto as the embedded account patches it, for this test only
    parser_class = asl_programs.AmazonStateLanguageParser
    backend_class = asl_programs.StepFunctionsParserBackend
    monkeypatch.setattr(parser_class, "parse", parser_class.__dict__["parse"])
    monkeypatch.setattr(backend_class, "_validate_definition", backend_class.__dict__["_validate_definition"])
    asl_programs.install()
    yield directory


def _parses() -> int:
    return len(asl_programs.PARSES)  # type: ignore[attr-defined]


def _forget_memory(monkeypatch: pytest.MonkeyPatch) -> None:
    """What a new process starts with: nothing in memory, the disk as it is."""
    monkeypatch.setattr(asl_programs, "_programs", {})


def test_a_definition_is_parsed_once_and_each_call_gets_a_program_of_its_own(cache: Path) -> None:
    first, _ = asl_programs.parse(_definition("a"))
    second, _ = asl_programs.parse(_definition("a"))
    assert isinstance(first, Program) and isinstance(second, Program)
    assert first is not second  # an execution's components are its own
    assert _parses() == 1
    assert len(list(cache.glob("*.pickle"))) == 1
    assert oct(cache.stat().st_mode & 0o777) == "0o700"


def test_a_new_process_reads_the_program_from_disk(cache: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    asl_programs.parse(_definition("a"))
    _forget_memory(monkeypatch)
    program, _ = asl_programs.parse(_definition("a"))
    asl_programs.validate(_definition("a"))
    assert isinstance(program, Program)
    assert _parses() == 1


def test_the_next_command_runs_no_antlr_parse(tmp_path: Path) -> None:
    """Across real processes: the second process builds its program without ANTLR's parser."""
    script = (
        "import sys\n"
        "from moto.stepfunctions.parser.asl.antlr.runtime.ASLParser import ASLParser\n"
        "from pg2rds_emulator import asl_programs\n"
        "calls = []\n"
        "original = ASLParser.state_machine\n"
        "ASLParser.state_machine = lambda self: calls.append(1) or original(self)\n"
        f"asl_programs.parse({_definition('across')!r})\n"
        "print(len(calls))\n"
    )
    env = {**os.environ, asl_programs.CACHE_DIR_VARIABLE: str(tmp_path / "asl")}
    runs = [
        subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, check=True)
        for _ in range(2)
    ]
    assert [run.stdout.strip() for run in runs] == ["1", "0"]


def test_a_changed_definition_is_parsed_anew(cache: Path) -> None:
    asl_programs.parse(_definition("a"))
    asl_programs.parse(_definition("b"))
    assert _parses() == 2
    assert len(list(cache.glob("*.pickle"))) == 2


@pytest.mark.parametrize("loosened", ["file", "directory"])
def test_a_cache_others_may_write_to_is_not_read(
    cache: Path, monkeypatch: pytest.MonkeyPatch, loosened: str
) -> None:
    asl_programs.parse(_definition("a"))
    (written,) = cache.glob("*.pickle")
    (written if loosened == "file" else cache).chmod(0o777)
    _forget_memory(monkeypatch)
    asl_programs.parse(_definition("a"))
    assert _parses() == 2


def test_a_file_that_does_not_load_is_removed_and_the_definition_parsed_again(
    cache: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    asl_programs.parse(_definition("a"))
    (written,) = cache.glob("*.pickle")
    written.write_bytes(written.read_bytes()[:100])  # cut short, as by a full disk
    _forget_memory(monkeypatch)
    program, _ = asl_programs.parse(_definition("a"))
    assert isinstance(program, Program)
    assert _parses() == 2
    assert len(written.read_bytes()) > 100  # written again, whole


def test_a_definition_that_does_not_parse_fails_each_time_and_is_never_kept(cache: Path) -> None:
    broken = '{"StartAt": "Only", "States": {"Only": {"Type": "Pass", "End": tru'
    with mock_aws(config=PARSER):
        sfn = boto3.client("stepfunctions", region_name="us-east-1")
        role = "arn:aws:iam::123456789012:role/x"
        for attempt in range(2):
            with pytest.raises(ClientError, match="ASLParserException"):  # moto's own error
                sfn.create_state_machine(name=f"broken-{attempt}", definition=broken, roleArn=role)
    assert not list(cache.glob("*.pickle"))
    assert _parses() == 2


def test_off_keeps_nothing_on_disk(cache: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(asl_programs.CACHE_DIR_VARIABLE, "off")
    asl_programs.parse(_definition("a"))
    assert not cache.exists()


def test_the_least_recently_used_files_go_first(cache: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(asl_programs, "FILES_KEPT", 2)
    asl_programs.parse(_definition("a"))
    asl_programs.parse(_definition("b"))
    a_file = asl_programs._file(_definition("a"))
    assert a_file is not None
    os.utime(a_file, (1, 1))  # used long ago
    asl_programs.parse(_definition("c"))
    assert len(list(cache.glob("*.pickle"))) == 2
    assert not a_file.exists()


def test_moto_executes_the_program_alone() -> None:
    """asl_programs returns no syntax tree: moto's execution worker must read only the program."""
    source = inspect.getsource(ExecutionWorker._get_evaluation_entrypoint)
    assert "AmazonStateLanguageParser.parse(" in source and ")[0]" in source


def test_an_execution_runs_a_program_read_from_disk(cache: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The program a new process reads is the one moto built: an execution of it gives the same output."""
    definition = json.dumps(
        {
            "StartAt": "Shape",
            "States": {
                "Shape": {
                    "Type": "Pass",
                    "Parameters": {"doubled.$": "States.MathAdd($.n, $.n)"},
                    "Next": "Pick",
                },
                "Pick": {
                    "Type": "Choice",
                    "Choices": [{"Variable": "$.doubled", "NumericGreaterThan": 3, "Next": "Big"}],
                    "Default": "Small",
                },
                "Big": {"Type": "Pass", "Result": "big", "End": True},
                "Small": {"Type": "Pass", "Result": "small", "End": True},
            },
        }
    )
    outputs = []
    for _ in range(2):
        _forget_memory(monkeypatch)
        with mock_aws(config=PARSER):
            sfn = boto3.client("stepfunctions", region_name="us-east-1")
            arn = sfn.create_state_machine(
                name="doubling", definition=definition, roleArn="arn:aws:iam::123456789012:role/x"
            )["stateMachineArn"]
            for n in (1, 2):
                execution = sfn.start_execution(stateMachineArn=arn, name=f"n{n}", input=json.dumps({"n": n}))
                outputs.append(_output(sfn, execution["executionArn"]))
    assert outputs == ["small", "big", "small", "big"]
    assert _parses() == 1


def _output(sfn: object, arn: str) -> str:
    for _ in range(200):
        described = sfn.describe_execution(executionArn=arn)  # type: ignore[attr-defined]
        if described["status"] != "RUNNING":
            return described.get("output", described["status"])
        time.sleep(0.02)
    raise AssertionError("the execution did not end")
