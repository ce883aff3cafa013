"""verification dms end to end with the DMS stand-in, which really validates (by key, after the load, and
each changed row during CDC): a target altered during replication withholds the cutover, naming the keys,
until it is fixed; a write just before the decision is on the target and validated when the task stops.
"""

import judge
import pytest
from conftest import Database, spec_for
from judge import account_dms_resources
from test_cdc import CDC_POLLING, finish, offered, start, wait_for_state, wait_until

from pg2rds_cli.cutover import WAITING_STATE, send_decision
from pg2rds_cli.executions import ExecutionView
from pg2rds_emulator.dms_standin import StandInEngine
from pg2rds_emulator.embedded import EmbeddedAws

ROWS = 50
TAMPER = """
CREATE FUNCTION tamper() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.id = 7 THEN NEW.name := 'tampered'; END IF;
    RETURN NEW;
END $$;
CREATE TRIGGER tamper BEFORE UPDATE ON items FOR EACH ROW EXECUTE FUNCTION tamper();
ALTER TABLE items ENABLE ALWAYS TRIGGER tamper;
"""


def named_differences(view: ExecutionView) -> str:
    return " ".join(((view.record.get("progress") or {}).get("validation") or {}).get("differences") or [])


@pytest.fixture
def keyed_and_unkeyed(source_db: Database, target_db: Database) -> tuple[Database, Database]:
    for db in (source_db, target_db):
        db.execute("CREATE TABLE items (id int PRIMARY KEY, name text NOT NULL)")
        db.execute("CREATE TABLE events (line text)")  # no key: DMS cannot validate it, pg2rds checksums it
    source_db.execute(f"INSERT INTO items SELECT g, 'item ' || g FROM generate_series(1, {ROWS}) g")
    source_db.execute("INSERT INTO events VALUES ('started')")
    return source_db, target_db


@pytest.mark.slow
def test_an_altered_target_withholds_the_cutover_until_fixed_then_proceeds(keyed_and_unkeyed) -> None:
    source, target = keyed_and_unkeyed
    engine = StandInEngine()
    with EmbeddedAws(engine, time_scale=0.01) as aws:
        spec = spec_for(
            source, target, migration_id="altered", migration_type="full-load-and-cdc", polling=CDC_POLLING,
            cdc={"revalidate_minutes": 0.05}, task={"on_error": "log"},
        )  # fmt: skip
        arn = start(aws, spec)
        view = wait_for_state(aws, arn, WAITING_STATE)
        assert view.current_state == WAITING_STATE, (view.status, view.error, view.cause)
        states = view.record["progress"]["validation"]["states"]  # items: validated, or its last records
        assert states.pop("No primary key") == 1 and set(states) <= {"Validated", "Pending records"}, states

        # the target diverges during replication: a trigger DMS's session_replication_role does not stop
        # (ENABLE ALWAYS) alters a row DMS applies, and someone deletes a row DMS then cannot update
        # (spec task.on_error "log": DMS logs and skips the change)
        target.execute(TAMPER)
        target.execute("DELETE FROM items WHERE id = 9")
        source.execute("UPDATE items SET name = name || '!' WHERE id IN (7, 9)")  # DMS re-validates them
        view = wait_until(aws, arn, lambda v: "MISSING_TARGET 9" in named_differences(v))
        assert not view.done, (view.status, view.cause)
        assert "public.items" in named_differences(view) and "RECORD_DIFF 7" in named_differences(view)
        view = wait_until(aws, arn, lambda v: "Withdraw the cutover offer" in v.states)
        assert not view.done and view.current_state != WAITING_STATE, (view.status, view.cause)

        # the operator fixes the target; pg2rds's re-validation sees it equal and offers the cutover again
        target.execute("DROP TRIGGER tamper ON items")
        target.execute("UPDATE items SET name = 'item 7!' WHERE id = 7")
        target.execute("INSERT INTO items VALUES (9, 'item 9!')")
        view = wait_until(
            aws,
            arn,
            lambda v: (
                v.states.count(WAITING_STATE) >= 2 and v.current_state == WAITING_STATE and offered(aws, arn)
            ),
            timeout=300,
        )
        assert view.current_state == WAITING_STATE, (view.status, view.error, view.cause)
        send_decision(aws.client("stepfunctions"), arn)
        view = finish(aws, arn)
        leftovers = account_dms_resources(aws)
    engine.shutdown()
    assert view.status == "SUCCEEDED", (view.error, view.cause)
    assert judge.differences(source, target) == []
    assert leftovers == []


@pytest.mark.slow
def test_a_write_just_before_the_decision_is_on_the_target_and_validated(keyed_and_unkeyed) -> None:
    source, target = keyed_and_unkeyed
    engine = StandInEngine()
    with EmbeddedAws(engine, time_scale=0.01) as aws:
        spec = spec_for(
            source, target, migration_id="lastwrite", migration_type="full-load-and-cdc", polling=CDC_POLLING
        )
        arn = start(aws, spec)
        assert wait_for_state(aws, arn, WAITING_STATE).current_state == WAITING_STATE
        source.execute("UPDATE items SET name = 'last write' WHERE id = 1")  # the application's last write
        source.execute("INSERT INTO events VALUES ('last')")
        send_decision(aws.client("stepfunctions"), arn)
        view = finish(aws, arn)
        leftovers = account_dms_resources(aws)
    engine.shutdown()
    assert view.status == "SUCCEEDED", (view.error, view.cause)
    assert target.execute("SELECT name FROM items WHERE id = 1") == [("last write",)]
    checks = view.output["progress"]["validation"]
    assert checks["states"] == {"No primary key": 1, "Validated": 1}
    assert (checks["pending_records"], checks["failed_records"]) == (0, 0)
    verification = view.output["verification"]
    assert verification["tables_validated_by_dms"] == 1
    assert judge.differences(source, target) == []
    assert leftovers == []
