"""What the terminal shows of a migration's record: names as they are, whatever characters they hold."""

from rich.console import Console

from pg2rds_cli import display


def _rendered(record: dict) -> str:
    console = Console(record=True, width=300)
    display.findings(console, record)
    return console.export_text()


def test_findings_name_their_objects() -> None:
    """The objects a finding names were appended as "[a, b]", which rich took for a style tag and dropped:
    "21 selected table(s) do not exist on the target" never said which."""
    finding = {
        "name": "target_tables_missing",
        "severity": "fatal",
        "message": "2 selected table(s) do not exist on the target",
        "fix": "create the schema first [pg_dump --schema-only]",
        "objects": ["public.actor", 'public."[red]odd"'],
        "object_count": 2,
    }
    text = _rendered({"target_report": {"findings": [finding]}})
    assert 'do not exist on the target [public.actor, public."[red]odd"]' in text
    assert "create the schema first [pg_dump --schema-only]" in text


def test_the_tables_table_shows_names_as_they_are() -> None:
    console = Console(record=True, width=200)
    progress = {"tables": [{"schema_name": "public", "table_name": "[bold]t", "state": "Table completed"}]}
    display._tables(console, {"progress": progress})
    assert "public.[bold]t" in console.export_text()
