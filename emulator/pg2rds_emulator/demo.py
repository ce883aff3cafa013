"""``pg2rds demo``: the whole product on one machine, on the pagila sample.

Two temporary clusters (the source with ``wal_level = logical``, as the runbook asks), pagila loaded
into the source, the schema copied to the target the runbook's way (``pg_dump --schema-only``: the tables
before the full load, their indexes, keys and triggers after it, as ``pg2rds run --local --copy-schema``
does), then ``pg2rds run --local`` and a table-by-table comparison of the two sides.
"""

from rich.console import Console
from rich.live import Live
from rich.table import Table

from pg2rds.postgres.selection import select_tables
from pg2rds.postgres.verify import compare_tables
from pg2rds.spec import TableSelection
from pg2rds_cli import display
from pg2rds_emulator.local_run import run_local
from pg2rds_emulator.pgcluster import LOGICAL_SOURCE_SETTINGS, start_cluster
from pg2rds_emulator.sample import load_pagila
from pg2rds_emulator.schema_copy import POST_DATA_OBJECTS, SchemaCopy

DATABASE = "pagila"


def run_demo(console: Console, keep: bool = False, graph: str | None = None) -> int:
    console.print("Starting two PostgreSQL clusters …")
    source = start_cluster("demo-source", LOGICAL_SOURCE_SETTINGS)
    target = start_cluster("demo-target", {})
    try:
        source.create_database(DATABASE)
        target.create_database(DATABASE)
        console.print("Loading pagila into the source …")
        load_pagila(source, DATABASE)
        spec = {"migration_id": "demo-pagila"}
        schema = SchemaCopy(source.dsn(DATABASE), target.dsn(DATABASE), spec)
        console.print(schema.announcement)
        with schema:
            console.print("Migrating with the pg2rds state machine in an embedded AWS …")
            with Live(console=console, refresh_per_second=4) as live:
                view, leftovers = run_local(
                    source.dsn(DATABASE),
                    target.dsn(DATABASE),
                    spec,
                    on_update=lambda v: live.update(display.live_panel(v)),
                )
            if view.status == "SUCCEEDED":
                console.print(f"Building the {POST_DATA_OBJECTS} …")
                schema.finish(progress=lambda line: console.print(line, markup=False, highlight=False))
        display.summary(console, view)
        if graph:
            from pg2rds_cli.graph import render_execution

            console.print(f"Execution graph: {render_execution(view, graph)}")
        if leftovers:
            console.print(f"[red]Left in the embedded account: {', '.join(leftovers)}[/red]")
        same = _compare(console, source, target)
        return 0 if view.status == "SUCCEEDED" and same and not leftovers else 1
    finally:
        if keep:
            console.print(
                f"Clusters kept running:\n  source {source.dsn(DATABASE)}\n  target {target.dsn(DATABASE)}"
            )
        else:
            source.destroy()
            target.destroy()


def _compare(console: Console, source, target) -> bool:
    with source.connect(DATABASE) as src, target.connect(DATABASE) as dst:
        comparisons = compare_tables(src, dst, select_tables(src, TableSelection()))
    table = Table(title="Source and target, table by table")
    for column in ("table", "source rows", "target rows", "checksum"):
        table.add_column(column, justify="left" if column == "table" else "right")
    for c in comparisons:
        table.add_row(
            str(c.table),
            f"{c.source_rows:,}",
            f"{c.target_rows:,}",
            "[green]equal[/green]" if c.matches else "[red]differs[/red]",
        )
    console.print(table)
    return all(c.matches for c in comparisons)
