"""A migration of 10,000 tables keeps its execution state far under Step Functions' 256 KiB.

The reports come from the real checks against a real source of 10,000 tables (no primary keys, 200
schemas, empty: rows play no part here), the verification from the real planning rounds over them; what
the Map's verify-chunk invocations would return is written here as they return it for a target that lost
every row (10,000 chunks compared one by one would take minutes). The state is measured as the state
machine holds it after the last round: spec, both reports, the verification summary with its last round,
and the Catch's error.
"""

import json

import pytest
from conftest import Database, spec_for

from pg2rds import phases
from pg2rds.errors import VerificationFailed
from pg2rds.postgres.source_checks import validate_source
from pg2rds.postgres.target_prep import prepare_target
from pg2rds.secrets import get_credentials
from pg2rds.spec import parse_spec
from pg2rds.state import ChunkCheck, MigrationState

TABLES = 10_000
SCHEMAS = 200
#: Tables created per transaction: one transaction cannot lock 10,000 new relations.
BATCH = 500
#: Far under the 256 KiB Step Functions allows.
STATE_BUDGET = 64_000


@pytest.fixture
def ten_thousand_tables(source_db: Database) -> Database:
    for first in range(0, TABLES, BATCH):
        source_db.execute(
            """
            DO $$
            BEGIN
                FOR i IN %s..%s LOOP
                    EXECUTE format('CREATE SCHEMA IF NOT EXISTS %%I', 'schema_' || (i %% %s));
                    EXECUTE format('CREATE TABLE %%I.%%I (v int)', 'schema_' || (i %% %s), 'table_' || i);
                END LOOP;
            END $$
            """,
            (first, first + BATCH - 1, SCHEMAS, SCHEMAS),
        )
    return source_db


def size(data: object) -> int:
    return len(json.dumps(data, ensure_ascii=False, separators=(",", ":")).encode())


def test_the_state_of_a_ten_thousand_table_migration_stays_small(
    aws: None, ten_thousand_tables: Database, target_db: Database
) -> None:
    raw_spec = spec_for(
        ten_thousand_tables, target_db, migration_type="full-load-and-cdc", verification="counts"
    )
    spec = parse_spec(raw_spec)
    source_report = validate_source(spec, get_credentials(spec.source, "source"))
    target_report = prepare_target(spec, get_credentials(spec.target, "target"), source_report)
    assert source_report.tables_selected == TABLES
    unidentified = next(f for f in source_report.findings if f.object_count == TABLES)
    assert f"and {TABLES - len(unidentified.objects)} more" in unidentified.render()
    assert source_report.schemas_selected[-1] == f"and {SCHEMAS - 20} more"
    assert target_report.schemas_created[-1] == f"and {SCHEMAS - 20} more"

    # the verification after the cutover decision (before it, a CDC migration plans its foreign-key check)
    state = MigrationState(
        spec=spec, source_report=source_report, target_report=target_report, cutover={"decision": "cutover"}
    )
    rounds, largest = 0, 0
    with pytest.raises(VerificationFailed) as failed:
        while True:
            summary = phases.plan_verification(state)
            rounds += 1
            results = [
                ChunkCheck(chunk=chunk.describe(), source_rows=1, target_rows=0, matches=False)
                for chunk in summary.chunks
            ]
            state = state.model_copy(update={"verification": summary.model_copy(update={"results": results})})
            largest = max(largest, size(state.model_dump(mode="json") | {"spec": raw_spec}))
    cause = str(failed.value)
    final = state.model_dump(mode="json") | {"spec": raw_spec}
    final["error"] = {
        "Error": "VerificationFailed",
        "Cause": json.dumps({"errorMessage": cause, "errorType": "VerificationFailed"}),
    }
    print(
        f"\n10,000 tables, {rounds} verification rounds, 10,000 differing chunks: largest state "
        f"{largest:,} bytes; state with the failure {size(final):,} bytes; source report "
        f"{size(final['source_report']):,} bytes, target report {size(final['target_report']):,} bytes, "
        f"cause {len(cause.encode()):,} bytes"
    )
    assert rounds == TABLES // phases.MAX_CHUNKS_PER_ROUND  # the next one raises
    assert f"{TABLES} chunk(s) differ" in cause and f"and {TABLES - 20} more" in cause
    assert len(cause.encode()) < 8_000
    assert largest < STATE_BUDGET and size(final) < STATE_BUDGET
