"""test_connections: DMS tests both endpoints from the instance; failures carry DMS's message verbatim."""

from datetime import UTC, datetime, timedelta

import pytest
from conftest import make_secret

from pg2rds.dms.connections import test_connections as run_connection_tests
from pg2rds.dms.endpoints import ensure_endpoints
from pg2rds.dms.instance import ensure_instance
from pg2rds.errors import ConnectionTestFailed, PhaseTimedOut
from pg2rds.spec import parse_spec
from pg2rds.state import SourceReport, TargetReport

ROLE = "arn:aws:iam::123456789012:role/pg2rds-dms-secrets-access"
PG_ERROR = 'FATAL:  password authentication failed for user "app_writer"'


@pytest.fixture
def setup(dms):
    spec = parse_spec(
        {
            "migration_id": "orders",
            "source": {"secret_arn": make_secret("reader", "pw-src", host="src.example", dbname="shop")},
            "target": {"secret_arn": make_secret("writer", "pw-tgt", host="tgt.example", dbname="shop")},
            "polling": {"initial_seconds": 2, "max_seconds": 10, "connection_timeout_minutes": 3},
        }
    )
    instance = ensure_instance(dms, spec, None)
    instance = ensure_instance(dms, spec, instance)
    assert instance.ready
    reports = (
        SourceReport(
            host="src.example", port=5432, database="shop", server_version="16", server_version_num=160000
        ),
        TargetReport(
            host="tgt.example", port=5432, database="shop", server_version="16", server_version_num=160000
        ),
    )
    endpoints = ensure_endpoints(dms, spec, *reports, ROLE)
    return spec, instance, endpoints, reports


def test_first_call_starts_both_tests_then_both_succeed(dms, engine, setup) -> None:
    spec, instance, endpoints, reports = setup
    first = run_connection_tests(dms, spec, instance, endpoints, None, reports)
    assert (first.ready, first.source_status, first.target_status) == (False, "testing", "testing")
    assert (first.polls, first.wait_seconds) == (1, 2)
    # DMS resolved the credentials from each endpoint's secret, as the real service does
    tested = {info.endpoint_type: info for info in engine.tested}
    assert (tested["source"].username, tested["source"].password) == ("reader", "pw-src")
    assert (tested["target"].username, tested["target"].password) == ("writer", "pw-tgt")
    assert tested["source"].server_name == "src.example"

    second = run_connection_tests(dms, spec, instance, endpoints, first, reports)
    assert (second.ready, second.polls, second.wait_seconds) == (False, 2, 3)  # DMS still says "testing"
    third = run_connection_tests(dms, spec, instance, endpoints, second, reports)
    assert (third.ready, third.source_status, third.target_status) == (True, "successful", "successful")
    assert third.started_at == first.started_at and third.wait_seconds == 0
    assert len(engine.tested) == 2  # polling did not start new tests
    connections = dms.describe_connections()["Connections"]
    assert sorted(c["Status"] for c in connections) == ["successful", "successful"]


def test_a_failed_test_names_the_side_endpoint_and_dms_message(dms, engine, setup) -> None:
    spec, instance, endpoints, reports = setup
    engine.fail_connection("target", PG_ERROR)
    state = run_connection_tests(dms, spec, instance, endpoints, None, reports)
    state = run_connection_tests(dms, spec, instance, endpoints, state, reports)
    with pytest.raises(ConnectionTestFailed) as raised:
        run_connection_tests(dms, spec, instance, endpoints, state, reports)
    message = str(raised.value)
    assert "target endpoint pg2rds-orders-target (tgt.example:5432/shop from secret arn:" in message
    assert PG_ERROR in message
    assert "source endpoint" not in message


def test_times_out_while_dms_keeps_testing(dms, setup) -> None:
    spec, instance, endpoints, reports = setup
    first = run_connection_tests(dms, spec, instance, endpoints, None, reports)
    long_ago = (datetime.now(UTC) - timedelta(minutes=4)).isoformat(timespec="seconds")
    with pytest.raises(PhaseTimedOut, match="connection tests did not finish.*connection_timeout_minutes"):
        run_connection_tests(
            dms, spec, instance, endpoints, first.model_copy(update={"started_at": long_ago}), reports
        )
