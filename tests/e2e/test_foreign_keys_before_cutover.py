"""Foreign keys of a CDC migration are checked before the cutover is offered, and after the decision only
where DMS's table statistics show a change since (the downtime does not grow with the tables' size).

With ``verification: dms`` a table DMS validated, whose foreign keys the source holds alike and validated
(the tables they reference validated too), is not checked again after the decision at all; the tests of
the change counters, and those of an orphan written to the target by something other than DMS (DMS's
validation does not see it: the README says to choose ``checksums`` then), use ``verification:
checksums``, where no table counts as validated by DMS.

Through the real state machine; DMS is moto's with the FakeEngine (it copies nothing: the rows are on
both sides already, as if loaded, and the test scripts the per-table change counters DMS reports; with
DMS's validation enabled it reports every table "Validated"); PostgreSQL is real.
"""

from collections.abc import Iterator

import pytest
from conftest import Database, spec_for
from judge import account_dms_resources, chunks_handed_to_the_map
from test_cdc import CDC_POLLING, finish, start, wait_for_state

from pg2rds_cli import main as cli
from pg2rds_cli.cutover import WAITING_STATE, send_decision
from pg2rds_emulator.dms_engine import TableStats
from pg2rds_emulator.embedded import EmbeddedAws
from pg2rds_emulator.moto_dms import FakeEngine

TABLES = ("p", "c1", "c2")


@pytest.fixture
def family(source_db: Database, target_db: Database) -> tuple[Database, Database]:
    """``c1`` and ``c2`` reference ``p``; one row each, on both sides."""
    for db in (source_db, target_db):
        db.execute("CREATE TABLE p (id int PRIMARY KEY)")
        db.execute("CREATE TABLE c1 (id int PRIMARY KEY, p int CONSTRAINT c1_p_fkey REFERENCES p)")
        db.execute("CREATE TABLE c2 (id int PRIMARY KEY, p int CONSTRAINT c2_p_fkey REFERENCES p)")
        db.execute("INSERT INTO p VALUES (1); INSERT INTO c1 VALUES (1, 1); INSERT INTO c2 VALUES (1, 1)")
    return source_db, target_db


@pytest.fixture
def fake_aws() -> Iterator[tuple[EmbeddedAws, FakeEngine]]:
    engine = FakeEngine(tables=[TableStats("public", name, full_load_rows=1) for name in TABLES])
    with EmbeddedAws(engine, time_scale=0.01) as aws:
        yield aws, engine


def stats(engine: FakeEngine, table: str) -> TableStats:
    return next(t for t in engine.tables if t.table_name == table)


def foreign_key_checks(aws: EmbeddedAws, arn: str) -> list[str]:
    """The tables whose foreign keys the Map's chunks checked, in the order they were handed to it (before
    the decision, then after it)."""
    return [
        f"{chunk['schema_name']}.{chunk['table_name']}"
        for chunk in chunks_handed_to_the_map(aws.client("stepfunctions"), arn)
        if chunk["foreign_keys"]
    ]


def offered(
    aws: EmbeddedAws, source: Database, target: Database, migration_id: str, verification: str = "dms"
) -> tuple[str, dict]:
    """Start a CDC migration (``verification``: dms, the default with CDC, or checksums) and wait for the
    offer: (ARN, the check made before it, from the state)."""
    spec = spec_for(
        source, target, migration_id=migration_id, migration_type="full-load-and-cdc", polling=CDC_POLLING,
        task={"target_table_prep_mode": "TRUNCATE_BEFORE_LOAD"}, verification=verification,
    )  # fmt: skip
    arn = start(aws, spec)
    view = wait_for_state(aws, arn, WAITING_STATE)
    assert view.current_state == WAITING_STATE, (view.status, view.error, view.cause)
    return arn, view.record["verification"]


def test_after_the_decision_only_the_table_that_changed_has_its_foreign_keys_checked(
    fake_aws, family, capsys
) -> None:
    aws, engine = fake_aws
    source, target = family
    arn, before = offered(aws, source, target, "fkchanged", "checksums")
    assert before["before_decision"] is True and before["done"] is True
    assert before["foreign_keys_checked_before"] == 2
    assert sorted(foreign_key_checks(aws, arn)) == ["public.c1", "public.c2"]  # before the offer

    for db in (source, target):  # the application's last write, replicated: c1 changed, c2 and p did not
        db.execute("INSERT INTO c1 VALUES (2, 1)")
    stats(engine, "c1").inserts = 1
    send_decision(aws.client("stepfunctions"), arn)
    view = finish(aws, arn)

    assert view.status == "SUCCEEDED", (view.error, view.cause)
    verification = view.output["verification"]
    assert verification["before_decision"] is False
    assert verification["foreign_keys_checked_before"] == 2
    assert verification["foreign_keys_checked_after"] == 1
    assert verification["foreign_keys_unchanged"] == 1
    assert verification["violation_count"] == 0
    assert foreign_key_checks(aws, arn)[2:] == ["public.c1"]  # after the decision
    assert account_dms_resources(aws) == []
    capsys.readouterr()
    assert cli.main(["status", arn]) == 0
    shown = " ".join("".join(capsys.readouterr()).split())
    assert "foreign keys checked, none violated (2 tables checked before the offer, 1 again after" in shown


def test_a_change_to_the_referenced_table_rechecks_every_table_referencing_it(fake_aws, family) -> None:
    aws, engine = fake_aws
    source, target = family
    arn, _ = offered(aws, source, target, "fkparent", "checksums")
    for db in (source, target):
        db.execute("INSERT INTO p VALUES (2)")
    stats(engine, "p").inserts = 1
    send_decision(aws.client("stepfunctions"), arn)
    view = finish(aws, arn)

    assert view.status == "SUCCEEDED", (view.error, view.cause)
    assert view.output["verification"]["foreign_keys_checked_after"] == 2
    assert sorted(foreign_key_checks(aws, arn)[2:]) == ["public.c1", "public.c2"]


def test_a_violation_written_after_the_check_before_the_decision_fails_the_migration(
    fake_aws, family
) -> None:
    aws, engine = fake_aws
    source, target = family
    arn, before = offered(aws, source, target, "fklate", "checksums")
    assert before["violation_count"] == 0

    # after the check: a row of c1 whose parent is missing reaches the target (DMS counts an insert)
    target.execute("SET session_replication_role = replica; INSERT INTO c1 VALUES (9, 99)")
    stats(engine, "c1").inserts = 1
    send_decision(aws.client("stepfunctions"), arn)
    view = finish(aws, arn)

    assert view.status == "FAILED" and view.error == "VerificationFailed", (view.error, view.cause)
    assert "1 foreign key violation(s) on the target" in view.cause
    assert (
        "c1_p_fkey on public.c1 (blocks [0, +inf)): 1 rows without a parent in public.p, e.g. (id)=(9)"
        in view.cause
    )
    assert account_dms_resources(aws) == []


def test_a_violation_seen_before_the_decision_is_checked_again_after_it(fake_aws, family) -> None:
    """A violation before the decision fails nothing (a change may be half applied) but its table is not
    trusted as unchanged: checked again after the decision, where it fails the migration."""
    aws, _ = fake_aws
    source, target = family
    target.execute("SET session_replication_role = replica; INSERT INTO c2 VALUES (9, 99)")
    arn, before = offered(aws, source, target, "fkearly", "checksums")
    assert before["violation_count"] == 1
    assert "public.c2" not in before["baseline"] and "public.c1" in before["baseline"]

    send_decision(aws.client("stepfunctions"), arn)  # no counter moved
    view = finish(aws, arn)

    assert view.status == "FAILED" and view.error == "VerificationFailed", (view.error, view.cause)
    assert (
        "c2_p_fkey on public.c2 (blocks [0, +inf)): 1 rows without a parent in public.p, e.g. (id)=(9)"
        in view.cause
    )
    assert foreign_key_checks(aws, arn)[2:] == ["public.c2"]


# -- verification dms: what DMS validated, and the source holds alike, is not checked again -----------


def test_tables_dms_validated_whose_constraints_the_source_holds_are_not_checked_after_the_decision(
    fake_aws, family, capsys
) -> None:
    """The referenced table and a referencing one are written to after the check before the offer (their
    counters move), but DMS validated all three and the source holds the same constraints, validated: the
    target's rows are the source's, which those constraints hold, so no chunk checks them after the
    decision (the time after it no longer grows with their size)."""
    aws, engine = fake_aws
    source, target = family
    arn, before = offered(aws, source, target, "fkheld")
    assert before["foreign_keys_checked_before"] == 2

    for db in (source, target):  # the application's last writes, replicated
        db.execute("INSERT INTO p VALUES (2); INSERT INTO c1 VALUES (2, 2)")
    stats(engine, "p").inserts = stats(engine, "c1").inserts = 1
    send_decision(aws.client("stepfunctions"), arn)
    view = finish(aws, arn)

    assert view.status == "SUCCEEDED", (view.error, view.cause)
    verification = view.output["verification"]
    assert verification["tables_validated_by_dms"] == 3
    assert foreign_key_checks(aws, arn)[2:] == []  # after the decision
    assert verification["foreign_keys_checked_after"] == 0 and verification["foreign_keys_unchanged"] == 0
    assert verification["foreign_keys_held_by_validation"] == 2
    assert target.execute("SELECT id, p FROM c1 ORDER BY id") == [(1, 1), (2, 2)]
    assert account_dms_resources(aws) == []
    capsys.readouterr()
    assert cli.main(["status", arn]) == 0
    shown = " ".join("".join(capsys.readouterr()).split())
    assert (
        "(2 tables checked before the offer, 0 again after the decision, 2 held by DMS's validation and "
        "the source's constraints)"
    ) in shown


def test_a_constraint_the_source_does_not_hold_alike_is_checked_after_the_decision(fake_aws, family) -> None:
    """All three validated by DMS, but on the source c1's constraint is NOT VALID (old rows may violate it)
    and c2's says ON DELETE CASCADE: both are checked after the decision, and an orphan that reached c1 on
    the target after the check before the offer fails the migration."""
    aws, engine = fake_aws
    source, target = family
    source.execute(
        "ALTER TABLE c1 DROP CONSTRAINT c1_p_fkey; "
        "ALTER TABLE c1 ADD CONSTRAINT c1_p_fkey FOREIGN KEY (p) REFERENCES p NOT VALID; "
        "ALTER TABLE c2 DROP CONSTRAINT c2_p_fkey; "
        "ALTER TABLE c2 ADD CONSTRAINT c2_p_fkey FOREIGN KEY (p) REFERENCES p ON DELETE CASCADE"
    )
    arn, before = offered(aws, source, target, "fknotheld")
    assert before["violation_count"] == 0

    target.execute("SET session_replication_role = replica; INSERT INTO c1 VALUES (9, 99)")
    for db in (source, target):
        db.execute("INSERT INTO p VALUES (2)")
    stats(engine, "p").inserts = stats(engine, "c1").inserts = 1
    send_decision(aws.client("stepfunctions"), arn)
    view = finish(aws, arn)

    assert view.status == "FAILED" and view.error == "VerificationFailed", (view.error, view.cause)
    assert (
        "c1_p_fkey on public.c1 (blocks [0, +inf)): 1 rows without a parent in public.p, e.g. (id)=(9)"
        in view.cause
    )
    assert sorted(foreign_key_checks(aws, arn)[2:]) == ["public.c1", "public.c2"]
    assert account_dms_resources(aws) == []
