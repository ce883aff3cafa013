"""Nothing of an embedded account goes on once it is closed.

A local migration that fails ends its execution FAILED, and the end-of-execution rule starts the cleanup
state machine, as in AWS. That cleanup ran on threads of its own: ``run_local`` returned (and the account
closed: moto stopped, the environment restored) while it still invoked the cleanup function. Its AWS calls
then left the machine, signed with whatever credentials the user's environment holds, for the real
account's endpoints; the names they ask about (``pg2rds-<migration id>``) are the user's real migration's
too. Closing the account now waits for what its rules started and stops what still runs, so no request of
the account is ever sent anywhere.
"""

import os
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from botocore.exceptions import EndpointConnectionError
from botocore.httpsession import URLLib3Session
from conftest import Database

from pg2rds_emulator.local_run import run_local
from pg2rds_emulator.pgcluster import free_port

#: How long after the close a lingering execution would still send (its next state is milliseconds away
#: at the local clock; its retries back off for seconds).
WATCHED_AFTER_CLOSE = 3.0


@pytest.fixture
def sent_outside() -> Iterator[list[str]]:
    """Every request botocore would send over the network (in the embedded account moto answers each one
    before it gets that far): recorded, and refused as an unreachable endpoint."""
    sent: list[str] = []

    def refuse(self: URLLib3Session, request: object) -> None:
        sent.append(f"{getattr(request, 'method', '?')} {getattr(request, 'url', '?')}")
        raise EndpointConnectionError(endpoint_url=getattr(request, "url", "?"))

    original = URLLib3Session.send
    URLLib3Session.send = refuse  # type: ignore[method-assign]
    try:
        yield sent
    finally:
        URLLib3Session.send = original  # type: ignore[method-assign]


def test_a_failed_runs_cleanup_ends_before_the_account_closes(
    source_db: Database, target_db: Database, sent_outside: list[str]
) -> None:
    for db in (source_db, target_db):
        db.execute("CREATE TABLE t (id int PRIMARY KEY)")
    before = set(threading.enumerate())
    view, leftovers = run_local(
        source_db.cluster.dsn(source_db.name),
        target_db.cluster.dsn(target_db.name, password="not-the-password"),
        {"migration_id": "closed-account"},
        timeout_seconds=60,
    )
    assert view.status == "FAILED" and view.failed_state == "Prepare target", view.cause
    assert leftovers == []

    time.sleep(WATCHED_AFTER_CLOSE)
    lingering = [t.name for t in threading.enumerate() if t not in before and t.is_alive()]
    assert (sent_outside, lingering) == ([], [])


#: Settings a user's shell may hold for their real AWS account.
SHELL_SETTINGS = {
    "an endpoint (pg2rds serve --local says to export one)": {"AWS_ENDPOINT_URL": "http://127.0.0.1:{port}"},
    "FIPS endpoints": {"AWS_USE_FIPS_ENDPOINT": "true"},
    "dual-stack endpoints": {"AWS_USE_DUALSTACK_ENDPOINT": "true"},
    "a profile of the user's configuration": {"AWS_PROFILE": "the-users-sso-profile"},
    "a default profile with FIPS endpoints": {"AWS_CONFIG_FILE": "{config}"},
    "libpq options for the user's own sessions": {"PGOPTIONS": "-c default_transaction_read_only=on"},
}


@pytest.mark.parametrize("settings", SHELL_SETTINGS.values(), ids=SHELL_SETTINGS.keys())
def test_the_shells_aws_settings_do_not_reach_the_embedded_account(
    settings: dict[str, str],
    source_db: Database,
    target_db: Database,
    monkeypatch: pytest.MonkeyPatch,
    sent_outside: list[str],
    tmp_path: Path,
) -> None:
    """A local run started in a shell set up for the user's real account still talks to its own embedded
    account alone. Before, such a run failed at start-up (moto answers no FIPS host, a missing profile),
    or its calls went to the shell's endpoint or left the machine (dual-stack hosts). The functions and DMS
    run in AWS, without the shell's libpq settings: a PGOPTIONS made their sessions read-only."""
    for db in (source_db, target_db):
        db.execute("CREATE TABLE t (id int PRIMARY KEY)")
    source_db.execute("INSERT INTO t SELECT generate_series(1, 10)")
    config = tmp_path / "config"
    config.write_text("[default]\nuse_fips_endpoint = true\nregion = eu-west-1\n")
    for key, value in settings.items():
        monkeypatch.setenv(key, value.format(port=free_port(), config=config))
    shell = {key: value for key, value in os.environ.items() if key.startswith(("AWS_", "PG"))}

    view, leftovers = run_local(
        source_db.cluster.dsn(source_db.name),
        target_db.cluster.dsn(target_db.name),
        {"migration_id": "shell-settings"},
        timeout_seconds=60,
    )

    assert view.status == "SUCCEEDED", view.cause
    assert leftovers == [] and sent_outside == []
    assert target_db.execute("SELECT count(*) FROM t") == [(10,)]
    assert {
        key: value for key, value in os.environ.items() if key.startswith(("AWS_", "PG"))
    } == shell  # back
