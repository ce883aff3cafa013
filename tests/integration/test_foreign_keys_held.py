"""Which foreign keys DMS's validation and the source's constraints hold after the cutover decision
(``held_by_validation``), against real PostgreSQL: the same name, definition and validity on the source
are required, the table and every table it references validated by DMS."""

from conftest import Database, spec_for

from pg2rds.lambda_support import parse_state
from pg2rds.postgres import chunks
from pg2rds.postgres.chunks import plan_next, plan_round
from pg2rds.postgres.foreign_keys import held_by_validation
from pg2rds.postgres.selection import select_tables
from pg2rds.secrets import get_credentials
from pg2rds.spec import TableSelection

#: The same on both sides: a parent in public and one in schema ``s2`` of the same name.
COMMON = "CREATE SCHEMA s2; CREATE TABLE p (id int PRIMARY KEY); CREATE TABLE s2.p (id int PRIMARY KEY)"

#: Table: (its definition on the target, on the source).
CHILDREN = {
    "same": ("(id int PRIMARY KEY, p int CONSTRAINT same_p_fkey REFERENCES public.p)",) * 2,
    "not_valid": (
        "(id int PRIMARY KEY, p int CONSTRAINT not_valid_p_fkey REFERENCES public.p)",
        "(id int PRIMARY KEY, p int); ALTER TABLE not_valid ADD CONSTRAINT not_valid_p_fkey "
        "FOREIGN KEY (p) REFERENCES public.p NOT VALID",
    ),
    "missing": (
        "(id int PRIMARY KEY, p int CONSTRAINT missing_p_fkey REFERENCES public.p)",
        "(id int PRIMARY KEY, p int)",
    ),
    "other_def": (
        "(id int PRIMARY KEY, p int CONSTRAINT other_def_p_fkey REFERENCES public.p)",
        "(id int PRIMARY KEY, p int CONSTRAINT other_def_p_fkey REFERENCES public.p ON DELETE CASCADE)",
    ),
    "other_name": (
        "(id int PRIMARY KEY, p int CONSTRAINT other_name_p_fkey REFERENCES public.p)",
        "(id int PRIMARY KEY, p int CONSTRAINT other_name_fk REFERENCES public.p)",
    ),
    # the source's constraint references s2.p: with the source's search_path "s2, public" both render
    # "REFERENCES p(id)" unless the sessions are pinned alike
    "other_schema": (
        "(id int PRIMARY KEY, p int CONSTRAINT other_schema_p_fkey REFERENCES public.p)",
        "(id int PRIMARY KEY, p int CONSTRAINT other_schema_p_fkey REFERENCES s2.p)",
    ),
    "one_of_two": (
        "(id int PRIMARY KEY, p int CONSTRAINT one_p_fkey REFERENCES public.p, "
        "q int CONSTRAINT two_q_fkey REFERENCES s2.p)",
        "(id int PRIMARY KEY, p int CONSTRAINT one_p_fkey REFERENCES public.p, q int)",
    ),
}  # fmt: skip


def _family(source_db: Database, target_db: Database) -> list[tuple[str, str]]:
    for db, side in ((target_db, 0), (source_db, 1)):
        db.execute(COMMON)
        for name, definitions in CHILDREN.items():
            db.execute(f"CREATE TABLE {name} {definitions[side]}")
    source_db.execute(f"ALTER DATABASE {source_db.name} SET search_path = s2, public")
    return [("public", "p"), ("s2", "p"), *(("public", name) for name in CHILDREN)]


def test_only_a_constraint_the_source_holds_alike_and_validated_counts(source_db, target_db) -> None:
    tables = _family(source_db, target_db)
    with source_db.connect() as source, target_db.connect() as target:
        assert held_by_validation(source, target, tables, set(tables)) == {("public", "same")}


def test_every_referenced_table_must_be_validated_too(source_db, target_db) -> None:
    tables = _family(source_db, target_db)
    with source_db.connect() as source, target_db.connect() as target:
        assert held_by_validation(source, target, tables, set(tables) - {("public", "p")}) == set()
        assert held_by_validation(source, target, tables, set(tables) - {("public", "same")}) == set()
        # only the tables asked about are looked at (the caller bounds them per round)
        assert held_by_validation(source, target, [("public", "same")], set(tables)) == {("public", "same")}
        assert held_by_validation(source, target, [("public", "missing")], set(tables)) == set()


def test_a_table_unchanged_since_the_check_before_the_decision_is_counted_as_unchanged(
    source_db, target_db
) -> None:
    tables = _family(source_db, target_db)
    unchanged = {("public", "p"), ("public", "same")}
    with source_db.connect() as source, target_db.connect() as target:
        assert held_by_validation(source, target, tables, set(tables), unchanged) == set()
        assert held_by_validation(source, target, tables, set(tables), {("public", "same")}) == {
            ("public", "same")
        }


def test_a_round_leaves_out_the_held_tables_and_counts_them_unless_their_check_began(
    source_db, target_db
) -> None:
    _family(source_db, target_db)
    with source_db.connect() as source, target_db.connect() as target:
        tables = select_tables(source, TableSelection())
        validated = {(t.schema, t.table) for t in tables}
        held = {("public", "same")}
        planned = plan_round(source, target, tables, 0, None, 10, True, 100, validated, (), held)
        assert planned.held == 1 and planned.next_table == len(tables)
        checked = {chunk.table_name for chunk in planned.chunks}
        assert "same" not in checked and {"not_valid", "missing", "other_schema"} <= checked
        # its first chunk planned in an earlier round (the cursor: the block its next range starts at): the
        # rest of it is checked, not counted as held
        begun = [t.table for t in tables].index("same")
        planned = plan_round(source, target, tables, begun, ["0"], 10, True, 1, validated, (), held)
        assert planned.held == 0 and [c.describe() for c in planned.chunks] == [
            "public.same (blocks [0, +inf))"
        ]


def test_the_catalogs_are_read_for_the_tables_a_round_may_look_at_only(
    aws, source_db, target_db, monkeypatch
):
    """Rounds of 3: each reads the constraints of at most 3 tables, from its cursor on (not those of the
    whole catalog, nor of a table whose check began in an earlier round)."""
    all_tables = _family(source_db, target_db)
    asked: list[list[tuple[str, str]]] = []

    def spy(source, target, tables, validated, unchanged=()):
        asked.append(list(tables))
        return held_by_validation(source, target, tables, validated, unchanged)

    monkeypatch.setattr(chunks, "held_by_validation", spy)
    spec = parse_state({"spec": spec_for(source_db, target_db, verification="checksums")}).spec
    credentials = get_credentials(spec.source, "source"), get_credentials(spec.target, "target")
    with source_db.connect() as source:
        order = [(t.schema, t.table) for t in select_tables(source, TableSelection())]
    planned = plan_next(spec, *credentials, 0, None, 3, set(all_tables))
    assert asked == [order[:3]]
    planned = plan_next(spec, *credentials, 3, ["0"], 3, set(all_tables))
    assert asked[1] == order[4:6] and planned.held == sum(t == ("public", "same") for t in order[4:6])
