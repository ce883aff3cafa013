"""The README's failure table states each error's retry policy; the ASL's ``Retry`` rules are what runs.
They must agree exactly, in both state machines, or the README promises retries that never happen (or
hides ones that do)."""

import json
import re
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
README = ROOT / "README.md"
STATE_MACHINES = [ROOT / "statemachine" / "migration.asl.json", ROOT / "statemachine" / "cleanup.asl.json"]

#: "retried from 10 s, doubling, ≤ 300 s, full jitter, 8 times"
_POLICY = re.compile(
    r"retried from (?P<interval>\d+) s(?P<doubling>, doubling)?(?:, ≤ (?P<max_delay>\d+) s)?"
    r"(?P<jitter>, full jitter)?, (?P<attempts>\d+) times"
)


@dataclass(frozen=True)
class Policy:
    interval: int
    backoff: float
    max_delay: int | None
    jitter: str
    attempts: int

    @classmethod
    def of_rule(cls, rule: dict) -> "Policy":
        """A Retry rule's policy with the ASL's defaults (IntervalSeconds 1, BackoffRate 2.0, MaxAttempts
        3, no cap, no jitter) filled in."""
        return cls(
            interval=rule.get("IntervalSeconds", 1),
            backoff=float(rule.get("BackoffRate", 2.0)),
            max_delay=rule.get("MaxDelaySeconds"),
            jitter=rule.get("JitterStrategy", "NONE"),
            attempts=rule.get("MaxAttempts", 3),
        )

    @classmethod
    def of_text(cls, text: str) -> "Policy | None":
        found = _POLICY.search(text)
        if found is None:
            return None
        return cls(
            interval=int(found["interval"]),
            backoff=2.0 if found["doubling"] else 1.0,
            max_delay=int(found["max_delay"]) if found["max_delay"] else None,
            jitter="FULL" if found["jitter"] else "NONE",
            attempts=int(found["attempts"]),
        )


@dataclass(frozen=True)
class Row:
    names: tuple[str, ...]  # exact error names, or "Prefix.*"
    policy: Policy | None
    text: str

    def matches(self, error: str) -> bool:
        return any(error == name or (name.endswith(".*") and error.startswith(name[:-1])) for name in self)

    def __iter__(self):
        return iter(self.names)


def readme_rows() -> list[Row]:
    text = README.read_text()
    section = text[text.index("## Failures, retries, cleanup") :]
    rows = []
    for line in section.splitlines():
        if not line.startswith("| `"):
            if rows:  # the table has ended
                break
            continue
        error, _raised_when, handling = (cell.strip() for cell in line.strip("|").split("|")[:3])
        rows.append(Row(tuple(re.findall(r"`([^`]+)`", error)), Policy.of_text(handling), line))
    return rows


def retry_rules() -> list[tuple[str, str, dict]]:
    """(state machine, state, rule) for every Retry rule, Parallel branches and Map processors included."""
    found = []

    def walk(machine: str, states: dict) -> None:
        for name, state in states.items():
            found.extend((machine, name, rule) for rule in state.get("Retry", []))
            for branch in state.get("Branches", []):
                walk(machine, branch["States"])
            processor = state.get("ItemProcessor") or state.get("Iterator")
            if processor:
                walk(machine, processor["States"])

    for path in STATE_MACHINES:
        walk(path.name, json.loads(path.read_text())["States"])
    return found


def row_for(error: str, rows: list[Row]) -> Row:
    """The row naming ``error`` exactly, else the one whose ``Prefix.*`` covers it."""
    exact = [row for row in rows if error in row.names]
    candidates = exact or [row for row in rows if row.matches(error)]
    assert len(candidates) == 1, f"{error}: {len(candidates)} rows of the README's failure table name it"
    return candidates[0]


def test_the_table_is_found_and_states_policies() -> None:
    rows = readme_rows()
    assert len(rows) > 10 and sum(row.policy is not None for row in rows) >= 4


@pytest.mark.parametrize(
    ("machine", "state", "rule"),
    retry_rules(),
    ids=[f"{m}:{s}:{r['ErrorEquals'][0]}" for m, s, r in retry_rules()],
)
def test_every_retry_rule_is_the_readmes_policy_for_its_errors(machine: str, state: str, rule: dict) -> None:
    rows = readme_rows()
    matched = {error: row_for(error, rows) for error in rule["ErrorEquals"]}
    assert len(set(matched.values())) == 1, f"{state} retries errors of several README rows in one rule"
    row = next(iter(matched.values()))
    assert row.policy is not None, f"{state} retries {rule['ErrorEquals']}, the README says: {row.text}"
    assert Policy.of_rule(rule) == row.policy, f"{machine} {state}: {rule} vs the README's {row.text}"


def test_every_retry_the_readme_promises_exists() -> None:
    retried = {error for _, _, rule in retry_rules() for error in rule["ErrorEquals"]}
    for row in readme_rows():
        if row.policy is None:
            continue
        for name in row:
            assert any(row.matches(error) and (name == error or name.endswith(".*")) for error in retried), (
                f"the README says {name} is retried; no Retry rule names it"
            )


def test_errors_the_readme_does_not_retry_have_no_retry_rule() -> None:
    retried = {error for _, _, rule in retry_rules() for error in rule["ErrorEquals"]}
    for row in readme_rows():
        if row.policy is None:
            assert not [error for error in retried if error in row.names], row.text


def test_the_policy_text_is_read_as_written() -> None:
    """The parser itself: a policy the README could state is read field by field."""
    assert Policy.of_text("retried from 10 s, doubling, ≤ 300 s, full jitter, 8 times") == Policy(
        10, 2.0, 300, "FULL", 8
    )
    assert Policy.of_text("retried from 5 s, 4 times") == Policy(5, 1.0, None, "NONE", 4)
    assert Policy.of_text("cleanup → Fail") is None
