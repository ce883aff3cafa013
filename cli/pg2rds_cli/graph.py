"""Drawing the state machine, and an execution's path through it, with Graphviz.

``render_definition`` draws the ASL as it is: one node per state (the shape says the type), ``Next`` and
``Choice`` edges (labelled with their condition), ``Catch`` edges (dashed, labelled with the errors they
catch) and each state's ``Retry`` errors as a note under its name.

``render_execution`` draws the same graph coloured by an :class:`ExecutionView`: visited states green,
the state that failed red, the state the execution is in blue, states never entered grey; each node also
says how often it was entered (``×N``) and retried (``↻ N retries``), and the title gives the status, and
for a failure the error and the start of its cause.

The normal path runs top to bottom; the states reached only through a ``Catch`` are kept together in a
box to its right, and each polling ``Wait`` sits beside the ``Choice`` that leads to it, so the loops
read as side loops. Rendering is local (the ``dot`` binary) and deterministic: the same definition and
view give the same file.
"""

from __future__ import annotations

import html
import json
from collections import Counter
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import graphviz

from pg2rds_cli.executions import ExecutionView

PROJECT_ROOT = Path(__file__).resolve().parents[2]
DEFINITION_PATH = PROJECT_ROOT / "statemachine" / "migration.asl.json"

# Fill colours of an execution view (tests and callers can refer to them).
VISITED_FILL = "#c8e6c9"
FAILED_FILL = "#ef5350"
CURRENT_FILL = "#64b5f6"
UNVISITED_FILL = "#eeeeee"
ENDED_IN_FAIL_FILL = "#ffcdd2"  # a Fail state the execution reached: it ended there, it did not break there

_BORDER = {
    VISITED_FILL: "#2e7d32",
    FAILED_FILL: "#b71c1c",
    CURRENT_FILL: "#0d47a1",
    UNVISITED_FILL: "#bdbdbd",
    ENDED_IN_FAIL_FILL: "#c62828",
}

# Fill colours of the bare definition, by state type.
_TYPE_FILL = {
    "Task": "#e3f2fd",
    "Choice": "#fff8e1",
    "Wait": "#f3e5f5",
    "Pass": "#fafafa",
    "Succeed": "#e8f5e9",
    "Fail": "#ffebee",
    "Parallel": "#e3f2fd",
    "Map": "#e3f2fd",
}

_SHAPES: dict[str, dict[str, str]] = {
    "Task": {"shape": "box", "style": "rounded,filled"},
    "Parallel": {"shape": "box3d", "style": "filled"},
    "Map": {"shape": "box3d", "style": "filled"},
    "Choice": {"shape": "diamond", "style": "filled"},
    "Wait": {"shape": "ellipse", "style": "filled", "peripheries": "2"},
    "Pass": {"shape": "note", "style": "filled"},
    "Succeed": {"shape": "doubleoctagon", "style": "filled"},
    "Fail": {"shape": "doubleoctagon", "style": "filled"},
}

_FONT = "DejaVu Sans"
_NOTE_COLOUR = "#555555"
_CATCH_COLOUR = "#c62828"
_TAKEN_COLOUR = "#2e7d32"
_NOT_TAKEN_COLOUR = "#bdbdbd"
_CAUSE_CHARS = 120
_FORMATS = {"svg", "png", "pdf", "dot", "gv", "jpg", "jpeg"}


# -- public API --------------------------------------------------------------------------------------------
def load_definition(path: str | Path | None = None) -> dict[str, Any]:
    """The ASL definition (``${...}`` placeholders left as they are: they are only Task resources)."""
    return json.loads(Path(path or DEFINITION_PATH).read_text())


def definition_graph(definition: dict[str, Any] | None = None) -> graphviz.Digraph:
    """The state machine as a Graphviz graph, uncoloured."""
    definition = definition if definition is not None else load_definition()
    title = definition.get("Comment") or "State machine"
    return _build(definition, view=None, title=_title_label([(title, True)]))


def execution_graph(view: ExecutionView, definition: dict[str, Any] | None = None) -> graphviz.Digraph:
    """The state machine as a Graphviz graph, coloured by the execution's path through it."""
    definition = definition if definition is not None else load_definition()
    return _build(definition, view=view, title=_title_label(_execution_title(view)))


def render_definition(path: str | Path, definition: dict[str, Any] | None = None) -> Path:
    """Draw the state machine to ``path`` (the format from its suffix: .svg or .png); return the path."""
    return _render(definition_graph(definition), path)


def render_execution(view: ExecutionView, path: str | Path, definition: dict[str, Any] | None = None) -> Path:
    """Draw the execution's path through the state machine to ``path`` (.svg or .png); return the path."""
    return _render(execution_graph(view, definition), path)


# -- the graph ---------------------------------------------------------------------------------------------
def _render(graph: graphviz.Digraph, path: str | Path) -> Path:
    path = Path(path)
    fmt = path.suffix.lower().lstrip(".")
    if fmt not in _FORMATS:
        raise ValueError(f"cannot tell the image format from {path.name!r}: use .svg or .png")
    fmt = {"gv": "dot", "jpeg": "jpg"}.get(fmt, fmt)
    data = graph.pipe(format=fmt)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


def _build(definition: dict[str, Any], view: ExecutionView | None, title: str) -> graphviz.Digraph:
    states: dict[str, dict[str, Any]] = definition["States"]
    ids = {name: f"s{index:02d}" for index, name in enumerate(states)}
    normal = _reachable(definition["StartAt"], states)

    visits: Counter = Counter(view.states) if view else Counter()
    taken = set(zip(view.states, view.states[1:], strict=False)) if view else set()
    colours = _execution_fills(view, states) if view else {}

    graph = graphviz.Digraph(
        "state_machine",
        graph_attr={
            "rankdir": "TB",
            "label": title,
            "labelloc": "t",
            "labeljust": "l",
            "fontname": _FONT,
            "fontsize": "14",
            "nodesep": "0.35",
            "ranksep": "0.35",
            "newrank": "true",
            "bgcolor": "white",
            "pad": "0.3",
        },
        node_attr={"fontname": _FONT, "fontsize": "11", "margin": "0.15,0.05"},
        edge_attr={"fontname": _FONT, "fontsize": "9", "arrowsize": "0.7"},
    )

    graph.node(
        "start",
        label="",
        shape="circle",
        style="filled",
        fillcolor="#212121" if not view or view.states else _NOT_TAKEN_COLOUR,
        color="#212121",
        width="0.22",
        fixedsize="true",
        tooltip="start",
    )

    def add_node(target: graphviz.Digraph, name: str) -> None:
        state = states[name]
        kind = state.get("Type", "Task")
        attrs = dict(_SHAPES.get(kind, _SHAPES["Task"]))
        fill = colours.get(name) if view else _TYPE_FILL.get(kind, "#ffffff")
        attrs["fillcolor"] = fill or "#ffffff"
        attrs["color"] = _BORDER.get(attrs["fillcolor"], "#424242")
        if view is not None and name in (view.failed_state, view.current_state) and fill != UNVISITED_FILL:
            attrs["penwidth"] = "2.5"
        fontcolor = "#757575" if fill == UNVISITED_FILL else ("white" if fill == FAILED_FILL else "black")
        notes = list(_notes(state))
        if view is not None:
            notes += _run_notes(visits[name], view.retries.get(name, 0))
        attrs["label"] = _node_label(name, notes, fontcolor)
        if name in normal and kind != "Wait":
            attrs["group"] = "main"
        attrs["tooltip"] = f"{name} ({kind})" + (f": {state['Comment']}" if state.get("Comment") else "")
        target.node(ids[name], **attrs)

    for name in states:
        if name in normal:
            add_node(graph, name)
    failure_path = [name for name in states if name not in normal]
    for index, group in enumerate(_components(failure_path, states)):
        with graph.subgraph(name=f"cluster_failure_{index}") as cluster:
            cluster.attr(
                label="after an error",
                labeljust="l",
                style="rounded,dashed",
                color=_CATCH_COLOUR,
                fontcolor=_CATCH_COLOUR,
                fontname=_FONT,
                fontsize="11",
            )
            for name in group:
                add_node(cluster, name)

    # Keep each polling Wait beside (left of) the Choice that sends the execution to it.
    side_loops: set[tuple[str, str]] = set()
    for name, state in states.items():
        if state.get("Type") != "Choice":
            continue
        waits = [t for t, _ in _choice_edges(state) if states.get(t, {}).get("Type") == "Wait"]
        side_loops |= {(name, wait) for wait in waits}
        if waits:
            with graph.subgraph() as same:
                same.attr(rank="same")
                for node in (name, *waits):
                    same.node(ids[node])

    def edge_style(tail: str, head: str) -> dict[str, str]:
        if view is None:
            return {}
        if (tail, head) in taken:
            return {"color": _TAKEN_COLOUR, "penwidth": "2", "fontcolor": _TAKEN_COLOUR}
        return {"color": _NOT_TAKEN_COLOUR, "fontcolor": "#9e9e9e"}

    start_style = edge_style("", "")
    if view is not None and view.states:
        start_style = {"color": _TAKEN_COLOUR, "penwidth": "2"}
    graph.edge("start", ids[definition["StartAt"]], **start_style)

    for name, state in states.items():
        for target, label in _transitions(state):
            if target not in ids:
                continue
            attrs = edge_style(name, target)
            if label:
                attrs["label"] = f" {label} "
            if (name, target) in side_loops:
                # drawn head-first so that dot puts the Wait on the left, clear of the Catch edges
                graph.edge(ids[target], ids[name], dir="back", **attrs)
            else:
                graph.edge(ids[name], ids[target], **attrs)
        for number, catch in enumerate(state.get("Catch", [])):
            target = catch.get("Next")
            if target not in ids:
                continue
            attrs = {
                "style": "dashed",
                "color": _CATCH_COLOUR,
                "fontcolor": _CATCH_COLOUR,
                "taillabel": ", ".join(catch.get("ErrorEquals", [])),
                "labelangle": "25" if number % 2 == 0 else "-25",
                "labeldistance": "4",
                "samehead": f"catch_{ids[target]}",
                "tailport": "e",
                "headport": "n",
            }
            attrs.update(edge_style(name, target))
            if view is not None and (name, target) in taken:
                attrs["color"] = attrs["fontcolor"] = _CATCH_COLOUR
            graph.edge(ids[name], ids[target], **attrs)
    return graph


def _execution_fills(view: ExecutionView, states: dict[str, dict[str, Any]]) -> dict[str, str]:
    visited = set(view.states)
    fills = {name: VISITED_FILL if name in visited else UNVISITED_FILL for name in states}
    for name in visited & states.keys():
        if states[name].get("Type") == "Fail":
            fills[name] = ENDED_IN_FAIL_FILL
    failed = view.failed_state
    stopped_in = states.get(view.current_state, {}).get("Type")
    if not failed and view.status in ("FAILED", "TIMED_OUT", "ABORTED") and stopped_in not in (None, "Fail"):
        failed = view.current_state
    if failed in fills:
        fills[failed] = FAILED_FILL
    if not view.done and view.current_state in fills:
        fills[view.current_state] = CURRENT_FILL
    return fills


def _components(names: list[str], states: dict[str, dict[str, Any]]) -> list[list[str]]:
    """The states in ``names`` grouped by the transitions between them, each group in definition order."""
    group = {name: name for name in names}

    def root(name: str) -> str:
        while group[name] != name:
            name = group[name]
        return name

    for name in names:
        targets = [t for t, _ in _transitions(states[name])]
        targets += [c.get("Next") for c in states[name].get("Catch", [])]
        for target in targets:
            if target in group:
                group[root(target)] = root(name)
    ordered: dict[str, list[str]] = {}
    for name in names:
        ordered.setdefault(root(name), []).append(name)
    return list(ordered.values())


def _reachable(start: str, states: dict[str, dict[str, Any]]) -> set[str]:
    """The states reached from ``start`` without an error: the normal path, polling loops included."""
    seen: set[str] = set()
    todo = [start]
    while todo:
        name = todo.pop()
        if name in seen or name not in states:
            continue
        seen.add(name)
        todo += [target for target, _ in _transitions(states[name])]
    return seen


def _transitions(state: dict[str, Any]) -> Iterator[tuple[str, str]]:
    """(target, label) of the state's normal transitions: ``Next``, and a Choice's rules and default."""
    if state.get("Type") == "Choice":
        yield from _choice_edges(state)
    elif state.get("Next"):
        yield state["Next"], ""


def _choice_edges(state: dict[str, Any]) -> Iterator[tuple[str, str]]:
    for rule in state.get("Choices", []):
        if rule.get("Next"):
            yield rule["Next"], _condition(rule)
    if state.get("Default"):
        yield state["Default"], "default"


# -- labels ------------------------------------------------------------------------------------------------
_COMPARISONS = {
    "Equals": "=",
    "LessThan": "<",
    "GreaterThan": ">",
    "LessThanEquals": "≤",
    "GreaterThanEquals": "≥",
    "Matches": "~",
}


def _condition(rule: dict[str, Any]) -> str:
    """A short reading of a Choice rule: ``ready``, ``full-load-complete``, ``not ready``, ``count > 3``."""
    if "Condition" in rule:  # JSONata
        return str(rule["Condition"]).removeprefix("{%").removesuffix("%}").strip()
    if "And" in rule:
        return " and ".join(_condition(r) for r in rule["And"])
    if "Or" in rule:
        return " or ".join(_condition(r) for r in rule["Or"])
    if "Not" in rule:
        return "not " + _condition(rule["Not"])
    field = str(rule.get("Variable", "")).rsplit(".", 1)[-1] or "value"
    for key, value in rule.items():
        if key in ("Variable", "Next"):
            continue
        test = key.removesuffix("Path")
        if test == "BooleanEquals" and not key.endswith("Path"):
            return field if value else f"not {field}"
        if test in ("IsPresent", "IsNull", "IsString", "IsNumeric", "IsBoolean", "IsTimestamp"):
            word = test.removeprefix("Is").lower()
            return f"{field} is {'' if value else 'not '}{word}"
        if test.startswith("String") and test.endswith("Equals") and not key.endswith("Path"):
            return str(value)
        for suffix, symbol in _COMPARISONS.items():
            if test.endswith(suffix):
                return f"{field} {symbol} {value}"
    return field


def _retry_errors(state: dict[str, Any]) -> list[str]:
    errors: list[str] = []
    for retry in state.get("Retry", []):
        errors += [e for e in retry.get("ErrorEquals", []) if e not in errors]
    lambda_errors = [e for e in errors if e.startswith("Lambda.")]
    if len(lambda_errors) > 1:  # the usual four Lambda service errors say one thing
        first = errors.index(lambda_errors[0])
        errors = [e for e in errors if not e.startswith("Lambda.")]
        errors.insert(first, "Lambda.*")
    return errors


def _notes(state: dict[str, Any]) -> Iterator[str]:
    errors = _retry_errors(state)
    if errors:
        yield "retry: " + ", ".join(errors)
    if state.get("Type") == "Wait":
        for key in ("Seconds", "SecondsPath", "Timestamp", "TimestampPath"):
            if key in state:
                yield f"wait {state[key]}" + (" s" if key == "Seconds" else "")
                break


def _run_notes(visits: int, retries: int) -> list[str]:
    notes = []
    if visits > 1:
        notes.append(f"×{visits}")
    if retries:
        notes.append(f"↻ {retries} {'retry' if retries == 1 else 'retries'}")
    return ["   ".join(notes)] if notes else []


def _node_label(name: str, notes: Iterable[str], fontcolor: str) -> str:
    lines = [f'<FONT COLOR="{fontcolor}">{html.escape(name)}</FONT>']
    for note in notes:
        colour = fontcolor if fontcolor == "white" else _NOTE_COLOUR
        lines.append(f'<FONT POINT-SIZE="9" COLOR="{colour}"><I>{html.escape(note)}</I></FONT>')
    return "<" + "<BR/>".join(lines) + ">"


def _execution_title(view: ExecutionView) -> list[tuple[str, bool]]:
    name = view.arn.rsplit(":", 1)[-1] if view.arn else "execution"
    status = view.status or "UNKNOWN"
    head = f"{name}: {status}"
    if view.current_state and not view.done:
        head += f" (in “{view.current_state}”)"
    lines = [(head, True)]
    if view.failed_state:
        lines.append((f"failed in “{view.failed_state}”", False))
    if view.error:
        lines.append((f"error: {view.error}", False))
    if view.cause:
        cause = " ".join(view.cause.split())
        if len(cause) > _CAUSE_CHARS:
            cause = cause[:_CAUSE_CHARS].rstrip() + "…"
        lines.append((f"cause: {cause}", False))
    lines.append(("green: visited   red: failed   blue: current   grey: not entered", False))
    return lines


def _title_label(lines: list[tuple[str, bool]]) -> str:
    parts = []
    for text, bold in lines:
        escaped = html.escape(text)
        parts.append(f"<B>{escaped}</B>" if bold else f'<FONT POINT-SIZE="11">{escaped}</FONT>')
    return "<" + '<BR ALIGN="LEFT"/>'.join(parts) + '<BR ALIGN="LEFT"/>>'
