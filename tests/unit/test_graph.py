"""Drawing the state machine and executions: no AWS, views built by hand, SVGs read back as XML."""

import xml.etree.ElementTree as ET
from collections import Counter
from pathlib import Path

import pytest

from pg2rds_cli.executions import ExecutionView
from pg2rds_cli.graph import (
    CURRENT_FILL,
    FAILED_FILL,
    UNVISITED_FILL,
    VISITED_FILL,
    load_definition,
    render_definition,
    render_execution,
)

SVG = "{http://www.w3.org/2000/svg}"
DEFINITION = load_definition()
STATES = list(DEFINITION["States"])

HAPPY_PATH = [
    "Read migration spec",
    "Validate source",
    "Prepare target",
    "Create replication instance",
    "Is the instance available?",
    "Wait for the instance",
    "Create replication instance",
    "Is the instance available?",
    "Wait for the instance",
    "Create replication instance",
    "Is the instance available?",
    "Create endpoints",
    "Test connections",
    "Can DMS reach both databases?",
    "Start replication task",
    "Has the task started?",
    "Check task progress",
    "Is the load finished?",
    "Clean up",
    "Is everything removed?",
    "Migration complete",
]
FAILED_PATH = [
    "Read migration spec",
    "Validate source",
    "Prepare target",
    "Create replication instance",
    "Is the instance available?",
    "Create endpoints",
    "Test connections",
    "Can DMS reach both databases?",
    "Start replication task",
    "Has the task started?",
    "Check task progress",
    "Clean up after failure",
    "Is everything removed after the failure?",
    "Migration failed",
]
ARN = "arn:aws:states:us-east-1:123456789012:execution:pg2rds:migration-42"


def _nodes(svg_path: Path) -> dict[str, dict[str, object]]:
    """Each drawn node: its text lines and the fill colours of its shapes, by state name (first line)."""
    root = ET.parse(svg_path).getroot()
    nodes: dict[str, dict[str, object]] = {}
    for group in root.iter(f"{SVG}g"):
        if group.get("class") != "node":
            continue
        lines = ["".join(text.itertext()) for text in group.iter(f"{SVG}text")]
        if not lines:
            continue
        fills = {
            shape.get("fill")
            for shape in group.iter()
            if shape.tag in (f"{SVG}polygon", f"{SVG}path", f"{SVG}ellipse") and shape.get("fill") != "none"
        }
        nodes[lines[0]] = {"lines": lines, "fills": fills}
    return nodes


def _texts(svg_path: Path) -> list[str]:
    """Every text drawn, stripped (graphviz writes some characters as entities, so read it as XML)."""
    root = ET.parse(svg_path).getroot()
    return ["".join(text.itertext()).strip() for text in root.iter(f"{SVG}text")]


def _title(svg_path: Path) -> str:
    """The graph's own label: the texts of the top-level graph group that belong to no node or edge."""
    root = ET.parse(svg_path).getroot()
    graph = next(g for g in root.iter(f"{SVG}g") if g.get("class") == "graph")
    return "\n".join("".join(text.itertext()) for text in graph.findall(f"{SVG}text"))


@pytest.mark.parametrize("suffix", [".svg", ".png"])
def test_definition_renders_to_svg_and_png(tmp_path: Path, suffix: str) -> None:
    path = render_definition(tmp_path / "nested" / "dir" / f"definition{suffix}")
    assert path == tmp_path / "nested" / "dir" / f"definition{suffix}"
    assert path.exists() and path.stat().st_size > 1000
    if suffix == ".png":
        assert path.read_bytes().startswith(b"\x89PNG")


def test_definition_svg_names_every_state_and_its_edges(tmp_path: Path) -> None:
    path = render_definition(tmp_path / "definition.svg")
    nodes = _nodes(path)
    for name in STATES:
        assert name in nodes, name
    assert len(nodes) == len(STATES)
    texts = _texts(path)
    assert {"full-load-complete", "default", "ready", "States.ALL", "SpecInvalid"} <= set(texts)
    assert 'stroke-dasharray="5,2"' in path.read_text()  # the Catch edges
    create = nodes["Create replication instance"]["lines"]
    retries = "retry: Lambda.*, AwsThrottled, ResourceBusy, SourceUnreachable, TargetUnreachable, SourceBusy"
    assert retries in create


def test_definition_is_deterministic(tmp_path: Path) -> None:
    first = render_definition(tmp_path / "a.svg").read_text()
    assert render_definition(tmp_path / "b.svg").read_text() == first


def test_definition_argument_is_drawn_instead_of_the_file(tmp_path: Path) -> None:
    definition = {
        "StartAt": "Do it",
        "States": {
            "Do it": {
                "Type": "Task",
                "Resource": "${DoFunctionArn}",
                "Retry": [{"ErrorEquals": ["Busy"]}],
                "Catch": [{"ErrorEquals": ["States.ALL"], "Next": "Broken"}],
                "Next": "Done?",
            },
            "Done?": {
                "Type": "Choice",
                "Choices": [{"Variable": "$.count", "NumericGreaterThan": 3, "Next": "Done"}],
                "Default": "Later",
            },
            "Later": {"Type": "Wait", "Seconds": 5, "Next": "Do it"},
            "Done": {"Type": "Succeed"},
            "Broken": {"Type": "Fail"},
        },
    }
    path = render_definition(tmp_path / "small.svg", definition)
    nodes = _nodes(path)
    assert set(nodes) == {"Do it", "Done?", "Later", "Done", "Broken"}
    assert {"count > 3", "default", "States.ALL", "retry: Busy", "wait 5 s"} <= set(_texts(path))
    assert "Migration complete" not in path.read_text()


def test_unknown_suffix_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"\.svg or \.png"):
        render_definition(tmp_path / "definition.txt")


def test_succeeded_execution_colours_the_visited_states(tmp_path: Path) -> None:
    view = ExecutionView(arn=ARN, status="SUCCEEDED", states=HAPPY_PATH, current_state="Migration complete")
    path = render_execution(view, tmp_path / "out" / "succeeded.svg")
    nodes = _nodes(path)
    assert VISITED_FILL in nodes["Migration complete"]["fills"]
    assert VISITED_FILL in nodes["Create endpoints"]["fills"]
    assert UNVISITED_FILL in nodes["Clean up after failure"]["fills"]
    assert UNVISITED_FILL in nodes["Wait before checking again"]["fills"]
    assert FAILED_FILL not in path.read_text()
    assert "×3" in nodes["Create replication instance"]["lines"]
    assert "×2" in nodes["Wait for the instance"]["lines"]
    title = _title(path)
    assert "migration-42: SUCCEEDED" in title
    assert "error" not in title.split("\n")[0]


def test_failed_execution_names_the_failed_state_error_and_cause(tmp_path: Path) -> None:
    cause = "The replication task stopped: " + "ODBC general error on table public.rental. " * 10
    view = ExecutionView(
        arn=ARN,
        status="FAILED",
        states=FAILED_PATH,
        current_state="Migration failed",
        failed_state="Check task progress",
        retries=Counter({"Check task progress": 2, "Create endpoints": 1}),
        error="ReplicationTaskFailed",
        cause=cause,
    )
    path = render_execution(view, tmp_path / "failed.svg")
    nodes = _nodes(path)
    assert FAILED_FILL in nodes["Check task progress"]["fills"]
    assert VISITED_FILL in nodes["Clean up after failure"]["fills"]
    assert UNVISITED_FILL in nodes["Migration complete"]["fills"]
    assert "↻ 2 retries" in nodes["Check task progress"]["lines"]
    assert "↻ 1 retry" in nodes["Create endpoints"]["lines"]
    assert FAILED_FILL not in nodes["Clean up after failure"]["fills"]

    title = _title(path)
    assert "migration-42: FAILED" in title
    assert "Check task progress" in title
    assert "error: ReplicationTaskFailed" in title
    cause_line = next(line for line in title.split("\n") if line.startswith("cause: "))
    assert cause_line.startswith("cause: The replication task stopped: ODBC general error")
    assert cause_line.endswith("…")
    assert len(cause_line) <= len("cause: ") + 121


def test_failed_execution_renders_to_png(tmp_path: Path) -> None:
    view = ExecutionView(
        arn=ARN,
        status="FAILED",
        states=FAILED_PATH,
        failed_state="Check task progress",
        error="ReplicationTaskFailed",
        cause="boom",
    )
    path = render_execution(view, tmp_path / "failed.png")
    assert path.read_bytes().startswith(b"\x89PNG")


def test_running_execution_marks_the_current_state(tmp_path: Path) -> None:
    states = HAPPY_PATH[: HAPPY_PATH.index("Check task progress") + 1]
    states += ["Is the load finished?", "Wait before checking again", "Check task progress"]
    view = ExecutionView(
        arn=ARN,
        status="RUNNING",
        states=states,
        current_state="Check task progress",
        retries=Counter({"Check task progress": 1}),
    )
    path = render_execution(view, tmp_path / "running.svg")
    nodes = _nodes(path)
    assert CURRENT_FILL in nodes["Check task progress"]["fills"]
    assert "×2" in nodes["Check task progress"]["lines"][-1]
    assert "↻ 1 retry" in nodes["Check task progress"]["lines"][-1]
    assert VISITED_FILL in nodes["Wait before checking again"]["fills"]
    assert UNVISITED_FILL in nodes["Clean up"]["fills"]
    assert "RUNNING" in _title(path) and "Check task progress" in _title(path)


def test_aborted_execution_without_a_failed_task_marks_where_it_stopped(tmp_path: Path) -> None:
    view = ExecutionView(
        arn=ARN, status="ABORTED", states=HAPPY_PATH[:6], current_state="Wait for the instance"
    )
    nodes = _nodes(render_execution(view, tmp_path / "aborted.svg"))
    assert FAILED_FILL in nodes["Wait for the instance"]["fills"]
    assert VISITED_FILL in nodes["Validate source"]["fills"]
