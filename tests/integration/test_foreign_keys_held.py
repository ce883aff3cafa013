"""Which foreign keys DMS's validation and the source's constraints hold after the cutover decision
(``held_by_validation``), against real PostgreSQL: the same name, definition and validity on the source
are required, the table and every table it references validated by DMS."""

from conftest import Database

from pg2rds.postgres.foreign_keys import held_by_validation

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
