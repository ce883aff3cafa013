"""What the terminal shows while a migration runs and after it ends (rich)."""

from typing import Any

from rich.console import Console
from rich.panel import Panel
from rich.progress_bar import ProgressBar
from rich.table import Table
from rich.text import Text

from pg2rds_cli.executions import ExecutionView

STATUS_STYLE = {"SUCCEEDED": "bold green", "FAILED": "bold red", "RUNNING": "bold cyan"}


def _progress(view: ExecutionView) -> dict[str, Any]:
    return view.record.get("progress") or {}


def live_panel(view: ExecutionView) -> Panel:
    """One panel: status, current state, tables and rows so far."""
    progress = _progress(view)
    lines: list[Any] = [
        Text.assemble(
            ("status ", "dim"),
            (view.status, STATUS_STYLE.get(view.status, "bold")),
            ("   state ", "dim"),
            (view.current_state or "-", "bold"),
            ("   elapsed ", "dim"),
            f"{view.duration_seconds:.0f} s",
        )
    ]
    if progress:
        total = sum(
            progress.get(key, 0)
            for key in ("tables_loaded", "tables_loading", "tables_queued", "tables_errored")
        )
        loaded = progress.get("tables_loaded", 0)
        lines.append(ProgressBar(total=max(total, 1), completed=loaded, width=50))
        lines.append(
            Text(
                f"tables {loaded}/{total}   rows {progress.get('rows_loaded', 0):,}   "
                f"full load {progress.get('full_load_percent', 0)}%   task {progress.get('task_status', '')}"
            )
        )
    lines.extend(verification_lines(progress))
    grid = Table.grid()  # one renderable per row: a bar never shares its line with the figures after it
    for line in lines:
        grid.add_row(line)
    return Panel(grid, title="pg2rds migration", border_style="cyan")


def verification_lines(progress: dict[str, Any]) -> list[Text]:
    """Before the decision: why the cutover is withheld, DMS's validation per state, the differences it
    found (tables and first keys) and what the cutover will cost (what is left to re-check)."""
    checks = progress.get("validation") or {}
    lines: list[Text] = []
    if progress.get("withheld"):
        lines.append(Text.assemble(("cutover withheld: ", "bold yellow"), progress["withheld"]))
    if checks.get("enabled"):
        states = ", ".join(f"{state} {count}" for state, count in (checks.get("states") or {}).items())
        lines.append(
            Text.assemble(
                ("DMS validation: ", "dim"),
                states or "no table reported yet",
                "".join(
                    f"   {what} {checks.get(f'{what}_records', 0):,}"
                    for what in ("pending", "failed", "suspended")
                ),
            )
        )
        for difference in checks.get("differences") or []:
            lines.append(Text.assemble(("differs: ", "bold red"), difference))
        more = checks.get("difference_count", 0) - len(checks.get("differences") or [])
        if more > 0:
            lines.append(Text(f"differs: and {more} more tables", style="bold red"))
    if checks.get("summary") and progress.get("outcome") != "stopped" and not progress.get("cutover_lsn"):
        lines.append(Text.assemble(("expected downtime: ", "dim"), checks["summary"]))
    return lines


def _unique_visits(states: list[str]) -> list[str]:
    seen: dict[str, int] = {}
    for state in states:
        seen[state] = seen.get(state, 0) + 1
    return [name if count == 1 else f"{name} ×{count}" for name, count in seen.items()]


def summary(console: Console, view: ExecutionView) -> None:
    record = view.record
    style = STATUS_STYLE.get(view.status, "bold")
    console.print(
        Text.assemble(
            ("Migration ", "bold"),
            (view.status, style),
            f" in {view.duration_seconds:.1f} s, {view.events} history events",
        )
    )
    console.print(Text("States: ", style="dim") + Text(", ".join(_unique_visits(view.states))))
    if view.retries:
        console.print(
            Text("Retries: ", style="dim") + Text(", ".join(f"{s} ×{n}" for s, n in view.retries.items()))
        )
    findings(console, record)
    _tables(console, record)
    _after_load(console, record)
    cleanup = record.get("cleanup") or {}
    if cleanup.get("removed"):
        console.print(Text("Cleaned up: ", style="dim") + Text(", ".join(cleanup["removed"])))
    if cleanup.get("kept"):
        console.print(Text("Kept (not ours): ", style="dim") + Text(", ".join(cleanup["kept"])))
    if view.status != "SUCCEEDED":
        console.print(
            Text.assemble(("Failed in: ", "dim"), (view.failed_state or view.current_state, "bold red"))
        )
        console.print(Text.assemble(("Error: ", "dim"), (view.error, "bold red")))
        console.print(Text.assemble(("Cause: ", "dim"), view.cause))


def _left_out(verification: dict[str, Any]) -> str:
    """The tables with foreign keys not checked again after the decision, and why (none: "")."""
    parts = []
    if verification.get("foreign_keys_unchanged"):
        parts.append(f"{verification['foreign_keys_unchanged']} unchanged since")
    if verification.get("foreign_keys_held_by_validation"):
        parts.append(
            f"{verification['foreign_keys_held_by_validation']} held by DMS's validation and the source's "
            "constraints"
        )
    return "".join(f", {part}" for part in parts)


def _after_load(console: Console, record: dict[str, Any]) -> None:
    """What finish-target did, and what prep-target said the load would leave unchecked."""
    finish = record.get("finish")
    if finish:
        verification = record.get("verification") or {}
        violations = verification.get("violations") or []
        if violations:
            foreign_keys = f"violated: {'; '.join(violations)}"
        elif verification.get("done"):
            foreign_keys = "checked, none violated"
            if verification.get("foreign_keys_checked_before"):
                foreign_keys += (
                    f" ({verification['foreign_keys_checked_before']} tables checked before the offer, "
                    f"{verification.get('foreign_keys_checked_after', 0)} again after the decision"
                    + _left_out(verification)
                    + ")"
                )
        else:
            foreign_keys = "not checked to the end"
        differ = verification.get("mismatch_count", 0) + len(finish.get("mismatched") or [])
        by_dms = verification.get("tables_validated_by_dms", 0)
        compared = (
            f"{verification.get('tables_checked', 0) - by_dms} tables compared in "
            f"{verification.get('chunks_checked', 0)} chunks ({finish.get('verification')}): "
            + ("all equal" if not differ else f"{differ} differ")
            if finish.get("verification") != "none"
            else "no verification (spec.verification = none)"
        )
        if finish.get("verification") == "dms":
            compared += f"; {by_dms} tables validated by DMS during replication"
        console.print(
            Text("After the load: ", style="dim")
            + Text(
                f"{finish.get('sequences_set', 0)} sequences set from the source; foreign keys "
                + f"{foreign_keys}; {compared}"
            )
        )
    for note in (record.get("target_report") or {}).get("restore", []):
        console.print(Text("Noted before the load: ", style="dim") + Text(note))


def findings(console: Console, record: dict[str, Any]) -> None:
    """The findings table of both reports (the execution summary's, and ``pg2rds check``'s)."""
    rows = []
    for side in ("source_report", "target_report"):
        for finding in (record.get(side) or {}).get("findings", []):
            rows.append((side.split("_")[0], finding))
    if not rows:
        return
    table = Table(title="Findings", show_lines=False)
    for column in ("side", "severity", "check", "message", "fix"):
        table.add_column(column)
    colour = {"fatal": "red", "warning": "yellow", "info": "dim"}
    for side, finding in rows:
        message = finding["message"]
        if finding.get("objects"):
            message += (
                " ["
                + ", ".join(finding["objects"][:5])
                + ("…" if finding.get("object_count", 0) > 5 else "")
                + "]"
            )
        table.add_row(  # Text, not markup: objects are names, and "[...]" around them is no style
            side,
            Text(finding["severity"], style=colour.get(finding["severity"], "")),
            finding["name"],
            Text(message),
            Text(finding.get("fix", "")),
        )
    console.print(table)


def _tables(console: Console, record: dict[str, Any]) -> None:
    progress = record.get("progress") or {}
    tables = progress.get("tables") or []
    if not tables:
        return
    not_shown = progress.get("tables_not_shown", 0)
    table = Table(title="Tables", caption=f"and {not_shown} more" if not_shown else None)
    for column, justify in (
        ("table", "left"),
        ("state", "left"),
        ("rows", "right"),
        ("ins/upd/del", "right"),
    ):
        table.add_column(column, justify=justify)
    for row in tables:
        table.add_row(
            Text(f"{row['schema_name']}.{row['table_name']}"),
            row.get("state", ""),
            f"{row.get('full_load_rows', 0):,}",
            f"{row.get('inserts', 0)}/{row.get('updates', 0)}/{row.get('deletes', 0)}",
        )
    console.print(table)
