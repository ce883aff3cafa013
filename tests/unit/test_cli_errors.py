"""The CLI as a user meets it: every bad input is one line on stderr with the right exit code, never a
traceback (subprocesses, as a shell would run it)."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest


def pg2rds(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "pg2rds_cli.main", *args],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "COLUMNS": "80", **(env or {})},
        check=False,
    )


def one_line_error(result: subprocess.CompletedProcess, code: int, *words: str) -> str:
    assert result.returncode == code, result.stderr
    assert "Traceback" not in result.stderr
    line = result.stderr.strip()
    assert len(line.splitlines()) == 1, line
    for word in words:
        assert word in line, line
    return line


@pytest.fixture
def spec_file(tmp_path: Path):
    def write(text: str) -> str:
        path = tmp_path / "spec.json"
        path.write_text(text)
        return str(path)

    return write


def test_missing_spec_file(tmp_path: Path) -> None:
    missing = str(tmp_path / "nowhere.json")
    one_line_error(pg2rds("start", missing), 2, missing, "not found")


def test_spec_file_that_is_not_json(spec_file) -> None:
    one_line_error(pg2rds("start", spec_file('{"migration_id": "a",\n')), 2, "is not JSON", "line 2")


def test_spec_file_that_is_not_an_object(spec_file) -> None:
    one_line_error(pg2rds("start", spec_file("[1, 2]")), 2, "JSON object")


def test_invalid_spec_names_the_field(spec_file) -> None:
    one_line_error(pg2rds("start", spec_file('{"migration_type": "sideways"}')), 2, "migration_type")


@pytest.mark.parametrize("option", ["--source-dsn", "--target-dsn"])
def test_dsn_that_is_not_a_dsn(option: str) -> None:
    dsns = {"--source-dsn": "postgresql://u@127.0.0.1:1/db", "--target-dsn": "postgresql://u@127.0.0.1:1/db"}
    dsns[option] = "localhost 5432 shop"
    args = [part for pair in dsns.items() for part in pair]
    one_line_error(pg2rds("run", "--local", *args), 2, option, "not a PostgreSQL DSN")


@pytest.mark.parametrize("value", ["0", "-1", "nan", "inf", "2", "fast"])
def test_time_scale_outside_0_to_1_is_refused(value: str) -> None:
    """0 or less ended every local run TIMED_OUT at once; above 1 stretched its waits into hours."""
    dsn = "postgresql://u@127.0.0.1:1/db"
    run = pg2rds("run", "--local", "--source-dsn", dsn, "--target-dsn", dsn, "--time-scale", value)
    one_line_error(run, 2, "--time-scale", "above 0 and at most 1")
    one_line_error(pg2rds("serve", "--local", "--time-scale", value), 2, "--time-scale", "above 0")


def test_unknown_command_and_missing_argument() -> None:
    one_line_error(pg2rds("migrate"), 2, "invalid choice", "--help")
    one_line_error(pg2rds("status"), 2, "execution", "--help")


def test_run_without_local() -> None:
    dsn = "postgresql://u@127.0.0.1:1/db"
    one_line_error(pg2rds("run", "--source-dsn", dsn, "--target-dsn", dsn), 2, "--local")


def test_aws_that_cannot_be_reached_is_one_line_exit_1() -> None:
    unreachable = {
        "AWS_ENDPOINT_URL": "http://127.0.0.1:9",
        "AWS_ACCESS_KEY_ID": "x",
        "AWS_SECRET_ACCESS_KEY": "x",
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_MAX_ATTEMPTS": "1",
    }
    arn = "arn:aws:states:us-east-1:123456789012:execution:pg2rds-migration:x"
    one_line_error(pg2rds("status", arn, env=unreachable), 1, "pg2rds:")


def test_debug_shows_the_traceback(tmp_path: Path) -> None:
    result = pg2rds("--debug", "start", str(tmp_path / "nowhere.json"))
    assert result.returncode != 0 and "Traceback" in result.stderr and "UsageError" in result.stderr


def test_json_results_parse(tmp_path: Path) -> None:
    """``graph --definition --json`` prints what it wrote as JSON on stdout."""
    out = tmp_path / "machine.svg"
    result = pg2rds("graph", "--definition", "-o", str(out), "--json")
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == {"output": str(out)} and out.exists()


@pytest.mark.parametrize("name", ["[bold]spec.json", "[/bold]spec.json"])
def test_a_message_is_printed_as_it_is_not_read_as_markup(tmp_path: Path, name: str) -> None:
    """Messages went to rich as markup: a path with "[bold]" in it was shown without it (another path than
    the user's), and one with "[/bold]" ended in a MarkupError traceback."""
    missing = str(tmp_path / name)
    one_line_error(pg2rds("start", missing), 2, f"spec file {missing} not found")
