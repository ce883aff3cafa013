"""What a comparing session sets, by server version: a source DMS can read (9.4 and later) must accept all of
it, and parallel query, which the session turns off, exists only from 9.6 on."""

import pytest

from pg2rds.postgres.verify import ONE_BACKEND, TEXT_RENDERING, _session_settings


@pytest.mark.parametrize(
    ("server_version", "one_backend"), [(90400, False), (90500, False), (90600, True), (150000, True)]
)
def test_parallel_workers_are_turned_off_only_where_the_setting_exists(server_version, one_backend) -> None:
    settings = _session_settings(server_version)
    assert TEXT_RENDERING.items() <= settings.items()
    assert ("max_parallel_workers_per_gather" in settings) is one_backend
    assert (ONE_BACKEND.items() <= settings.items()) is one_backend
