"""The stand-in reads a task's ValidationSettings with DMS's defaults (User Guide, "Data validation task
settings")."""

from pg2rds_emulator.standin_validation import ValidationSettings


def test_defaults_are_dms_defaults() -> None:
    """EnableValidation false, ThreadCount 5, PartitionSize 10,000, FailureMaxCount 10,000,
    TableFailureMaxCount 1,000, ValidationQueryCdcDelaySeconds 0, HandleCollationDiff false,
    RecordFailureDelayLimitInMinutes 0."""
    settings = ValidationSettings.of_task({})
    assert settings == ValidationSettings(
        enabled=False, partition_size=10_000, thread_count=5, failure_max_count=10_000,
        table_failure_max_count=1_000, cdc_delay_seconds=0.0, failure_delay_seconds=0.0,
        handle_collation_diff=False, validation_only=False,
    )  # fmt: skip


def test_a_validation_only_task_delays_cdc_queries_180_seconds_by_default() -> None:
    """ValidationQueryCdcDelaySeconds: 180 by default for a validation-only task."""
    only = ValidationSettings.of_task(
        {"ValidationSettings": {"EnableValidation": True, "ValidationOnly": True}}
    )
    assert (only.validation_only, only.cdc_delay_seconds) == (True, 180)
    given = {"EnableValidation": True, "ValidationOnly": True, "ValidationQueryCdcDelaySeconds": 5}
    assert ValidationSettings.of_task({"ValidationSettings": given}).cdc_delay_seconds == 5


def test_given_settings_are_read() -> None:
    given = {
        "EnableValidation": True, "PartitionSize": 500, "ThreadCount": 8, "FailureMaxCount": 20,
        "TableFailureMaxCount": 3, "RecordFailureDelayLimitInMinutes": 2, "HandleCollationDiff": True,
        "SkipLobColumns": True, "ValidationPartialLobSize": 4,
    }  # fmt: skip
    settings = ValidationSettings.of_task({"ValidationSettings": given})
    assert settings == ValidationSettings(
        enabled=True, partition_size=500, thread_count=8, failure_max_count=20, table_failure_max_count=3,
        failure_delay_seconds=120.0, handle_collation_diff=True, skip_lob_columns=True, partial_lob_kb=4,
    )  # fmt: skip


def test_a_failure_waits_the_longer_of_the_two_failure_delays() -> None:
    """RecordFailureDelayInMinutes and RecordFailureDelayLimitInMinutes both delay a failure's report."""
    given = {
        "EnableValidation": True,
        "RecordFailureDelayInMinutes": 5,
        "RecordFailureDelayLimitInMinutes": 2,
    }
    assert ValidationSettings.of_task({"ValidationSettings": given}).failure_delay_seconds == 300
