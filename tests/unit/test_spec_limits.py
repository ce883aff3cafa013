"""Every spec field is bounded: a spec at each limit is accepted, one step past it is SpecInvalid naming the
field on one line, before anything is created. The limits are what keeps Step Functions from failing the
execution on its own terms (a wait or time-out it cannot take, a state above 256 KiB)."""

import copy
import json
from pathlib import Path
from typing import Any

import annotated_types
import pytest

from pg2rds.errors import SpecInvalid
from pg2rds.polling import POLLS_PER_EXECUTION, next_wait
from pg2rds.spec import MAX_SPEC_BYTES, CdcSpec, MigrationSpec, PollingSpec, parse_spec

ROOT = Path(__file__).resolve().parents[2]
SECRET = "arn:aws:secretsmanager:eu-west-1:123456789012:secret:pg2rds-src-AbCdEf"
BASE: dict[str, Any] = {
    "migration_id": "orders",
    "source": {"secret_arn": SECRET},
    "target": {"secret_arn": SECRET.replace("src", "tgt")},
}


def spec_with(path: str, value: Any) -> dict[str, Any]:
    """BASE with ``value`` set at the dotted ``path`` (intermediate objects created)."""
    spec = copy.deepcopy(BASE)
    *parents, last = path.split(".")
    node = spec
    for part in parents:
        node = node.setdefault(part, {})
    node[last] = value
    return spec


def sgs(count: int) -> list[str]:
    return [f"sg-{i:08x}" for i in range(count)]


def rules(count: int) -> list[dict[str, str]]:
    return [{"schema": "public", "table": f"t{i}"} for i in range(count)]


def tags(count: int) -> dict[str, str]:
    return {f"team{i}": "data" for i in range(count)}


ARN_PREFIX = "arn:aws:dms:eu-west-1:123456789012:rep:"
#: (dotted path, a value at the limit, a value one step past it, what the error names)
LIMITS = [
    ("migration_id", "a" * 40, "a" * 41, "migration_id"),
    ("source.secret_arn", SECRET + "x" * (2048 - len(SECRET)), SECRET + "x" * (2049 - len(SECRET)),
     "source.secret_arn"),
    ("source.host", "h" * 253, "h" * 254, "source.host"),
    ("source.port", 65535, 65536, "source.port"),
    ("target.database", "d" * 63, "d" * 64, "target.database"),
    ("tables.include", rules(500), rules(501), "tables.include"),
    ("tables.exclude", rules(500), rules(501), "tables.exclude"),
    ("tables.include", [{"schema": "s" * 128}], [{"schema": "s" * 129}], "tables.include.0.schema"),
    ("tables.exclude", [{"table": "t" * 128}], [{"table": "t" * 129}], "tables.exclude.0.table"),
    ("instance.existing_arn", ARN_PREFIX + "X" * (2048 - len(ARN_PREFIX)),
     ARN_PREFIX + "X" * (2049 - len(ARN_PREFIX)), "instance.existing_arn"),
    ("instance.instance_class", "dms." + "r" * 54 + ".large", "dms." + "r" * 55 + ".large",
     "instance.instance_class"),
    ("instance.allocated_storage_gb", 6144, 6145, "instance.allocated_storage_gb"),
    ("instance.engine_version", "3." + "5" * 30, "3." + "5" * 31, "instance.engine_version"),
    ("instance.subnet_group", "s" * 255, "s" * 256, "instance.subnet_group"),
    ("instance.security_group_ids", sgs(16), sgs(17), "instance.security_group_ids"),
    ("polling", {"initial_seconds": 1800, "max_seconds": 1800}, {"initial_seconds": 1801},
     "polling.initial_seconds"),
    ("polling.max_seconds", 1800, 1801, "polling.max_seconds"),
    ("polling.backoff", 10, 10.01, "polling.backoff"),
    ("polling.instance_timeout_minutes", 1440, 1441, "polling.instance_timeout_minutes"),
    ("polling.connection_timeout_minutes", 1440, 1441, "polling.connection_timeout_minutes"),
    ("polling.task_timeout_hours", 8760, 8760.01, "polling.task_timeout_hours"),
    ("cdc.max_latency_seconds", 86400, 86401, "cdc.max_latency_seconds"),
    ("cdc.cutover_timeout_hours", 1440, 1440.01, "cdc.cutover_timeout_hours"),
    ("task.lob_max_size_kb", 102400, 102401, "task.lob_max_size_kb"),
    ("task.max_full_load_subtasks", 49, 50, "task.max_full_load_subtasks"),
    ("verification_chunk_rows", 50_000_000, 50_000_001, "verification_chunk_rows"),
    ("verification_concurrency", 40, 41, "verification_concurrency"),
    ("tags", tags(48), tags(49), "tags"),
    ("tags", {"k" * 128: "v"}, {"k" * 129: "v"}, "tags"),
    ("tags", {"team": "v" * 256}, {"team": "v" * 257}, "tags"),
]  # fmt: skip
#: Lower limits (a value at the limit, one step below it).
LOWER_LIMITS = [
    ("polling.initial_seconds", 1, 0, "polling.initial_seconds"),
    ("polling.instance_timeout_minutes", 1, 0, "polling.instance_timeout_minutes"),
    ("polling.connection_timeout_minutes", 1, 0, "polling.connection_timeout_minutes"),
    ("cdc.max_latency_seconds", 0, -1, "cdc.max_latency_seconds"),
    ("cdc.cutover_timeout_hours", 0.0003, 0, "cdc.cutover_timeout_hours"),
    ("polling.task_timeout_hours", 0.01, 0, "polling.task_timeout_hours"),
    ("tables.include", rules(1), [], "tables.include"),
    ("tags", {"t": "v"}, {"t": ""}, "tags"),
]


def assert_invalid(spec: dict[str, Any], field: str) -> str:
    with pytest.raises(SpecInvalid) as raised:
        parse_spec(spec)
    message = str(raised.value)
    assert "\n" not in message
    assert message.startswith(f"invalid migration spec: {field}"), message
    return message


@pytest.mark.parametrize(("path", "at_limit", "past", "field"), LIMITS + LOWER_LIMITS)
def test_a_spec_at_each_limit_passes_and_one_past_it_is_spec_invalid(path, at_limit, past, field) -> None:
    parse_spec(spec_with(path, at_limit))
    assert_invalid(spec_with(path, past), field)


@pytest.mark.parametrize(
    ("path", "value"),
    [("polling.backoff", float("inf")), ("cdc.cutover_timeout_hours", float("nan")),
     ("polling.task_timeout_hours", float("inf"))],
)  # fmt: skip
def test_infinity_and_nan_are_refused(path: str, value: float) -> None:
    assert_invalid(spec_with(path, value), path)


@pytest.mark.parametrize(
    "where",
    ["", "source", "target", "tables", "tables.include.0", "tables.exclude.0", "instance", "polling", "cdc",
     "task"],
)  # fmt: skip
def test_unknown_fields_are_refused_at_every_level(where: str) -> None:
    spec = spec_with("tables.exclude", [{"schema": "audit"}])
    spec["tables"]["include"] = [{"schema": "public"}]
    node: Any = spec
    for part in where.split(".") if where else []:
        node = node[int(part)] if part.isdigit() else node.setdefault(part, {})
    node["colour"] = "blue"
    message = assert_invalid(spec, f"{where}.colour" if where else "colour")
    assert "Extra inputs are not permitted" in message


@pytest.mark.parametrize(
    ("key", "value", "says"),
    [
        ("pg2rds:migration-id", "x", "'pg2rds:'"),
        ("aws:cloudformation:stack-name", "x", "'aws:'"),
        ("AWS:owner", "x", "'aws:'"),
        ("dms:owner", "x", "'dms:'"),
        ("owner", "aws:someone", "'aws:'"),
        ("cost*centre", "x", "'*'"),
        ("owner", "a;b", "';'"),
        ("owner", "line\nbreak", "'\\n'"),
    ],
)
def test_reserved_and_unsupported_tags_are_refused(key: str, value: str, says: str) -> None:
    message = assert_invalid(spec_with("tags", {key: value}), "tags")
    assert says in message


def test_tags_in_any_script_with_dms_punctuation_pass() -> None:
    spec = parse_spec(spec_with("tags", {"équipe données": "Ünïcode 42_.:/=+-", "部署": "データ"}))
    assert len(spec.tags) == 2


def test_security_group_ids_must_be_vpc_ids() -> None:
    message = assert_invalid(
        spec_with("instance.security_group_ids", ["sg-1"]), "instance.security_group_ids"
    )
    assert "sg-1" in message


def test_a_spec_too_large_for_the_state_is_refused_naming_its_largest_parts() -> None:
    long_rules = [{"schema": "s" * 128, "table": f"{i:0>128}"} for i in range(500)]
    spec = spec_with("tables.exclude", long_rules)
    assert len(json.dumps(spec)) > MAX_SPEC_BYTES
    message = assert_invalid(spec, "(spec)")
    assert f"more than the {MAX_SPEC_BYTES:,}" in message and "largest part is tables (" in message


def _limit(model: type, field: str, kind: type) -> float:
    return next(m for m in model.model_fields[field].metadata if isinstance(m, kind)).le


def test_the_longest_waits_the_limits_allow_fit_the_execution_time_out() -> None:
    """One execution polls the task at most POLLS_PER_EXECUTION times, each wait at most max_seconds; the
    instance, task-start, connection and cleanup waits are bounded by their time-outs. Together, with room
    for verification, they stay inside the state machine's TimeoutSeconds; so does the cutover wait."""
    asl = json.loads((ROOT / "statemachine" / "migration.asl.json").read_text())
    execution_limit = asl["TimeoutSeconds"]
    max_wait = _limit(PollingSpec, "max_seconds", annotated_types.Le)
    instance = _limit(PollingSpec, "instance_timeout_minutes", annotated_types.Le) * 60
    connections = _limit(PollingSpec, "connection_timeout_minutes", annotated_types.Le) * 60
    polls = POLLS_PER_EXECUTION * max_wait
    waits = polls + 3 * (instance + max_wait) + connections + max_wait
    assert waits < 0.75 * execution_limit
    assert _limit(CdcSpec, "cutover_timeout_hours", annotated_types.Le) * 3600 < 0.75 * execution_limit


def test_the_cutover_time_out_is_a_positive_whole_number_of_seconds() -> None:
    """Step Functions fails a TimeoutSecondsPath that is not a positive integer (States.Runtime)."""
    assert CdcSpec(cutover_timeout_hours=0.0001).cutover_timeout_seconds == 1
    assert CdcSpec(cutover_timeout_hours=1440).cutover_timeout_seconds == 5_184_000


def test_the_wait_stays_at_its_cap_however_many_polls_came_before() -> None:
    """``polls`` counts across continuations: 1.5 ** 1751 overflowed a float after ~12 days of polling."""
    polling = MigrationSpec.model_validate(BASE).polling
    assert [next_wait(polling, n) for n in (0, 1, 2, 1751, 10**6)] == [30, 45, 67, 600, 600]
    fastest = PollingSpec(initial_seconds=1, max_seconds=1800, backoff=10)
    assert next_wait(fastest, 10**9) == 1800
    flat = PollingSpec(initial_seconds=7, max_seconds=60, backoff=1)
    assert next_wait(flat, 10**9) == 7
