"""The migration spec: the execution input, validated once into typed models.

Every handler parses the same spec, so a field means the same thing in every phase. Unknown fields are
rejected (``extra="forbid"``): a misspelt option silently ignored is how a migration copies the wrong tables.

Every field is bounded, so no spec can make Step Functions fail the execution on its own terms
(``States.Runtime`` for a wait or time-out it cannot take, ``States.DataLimitExceeded`` for a state above
256 KiB): durations stay inside what the state machine can wait (and inside its 90-day execution time-out),
lists and strings have lengths, and the whole spec, which travels in the state, is at most
``MAX_SPEC_BYTES``. The README's spec reference lists the limits.
"""

import json
import re
import unicodedata
from typing import Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    ValidatorFunctionWrapHandler,
    field_validator,
    model_validator,
)

from pg2rds.errors import SpecInvalid

MigrationType = Literal["full-load", "full-load-and-cdc", "cdc"]
SECRET_ARN_PATTERN = r"^arn:aws[a-z-]*:secretsmanager:[a-z0-9-]+:\d{12}:secret:.+$"
DMS_CERTIFICATE_ARN_PATTERN = r"^arn:aws[a-z-]*:dms:[a-z0-9-]+:\d{12}:cert:[A-Za-z0-9-]+$"
#: An ARN's length limit (IAM's and DMS's ResourceArn: 2,048 characters).
MAX_ARN = 2048

#: The spec as JSON (UTF-8), at most: the spec is part of the execution state, which Step Functions caps at
#: 256 KiB, and the reports, progress and causes beside it need their share (see :mod:`pg2rds.bounded`).
MAX_SPEC_BYTES = 64 * 1024
#: Selection rules per list. DMS accepts table mappings up to 2 MB; the spec's own size limit binds first.
MAX_TABLE_RULES = 500
#: A rule's schema or table pattern. PostgreSQL names are at most 63 bytes; this leaves room for ``%``.
MAX_PATTERN_CHARS = 128
#: DMS resources take 50 tags; pg2rds adds two of its own (migration id and lineage).
MAX_TAGS = 48
MAX_TAG_KEY_CHARS = 128
MAX_TAG_VALUE_CHARS = 256
#: Tag keys (and, for ``aws:`` and ``dms:``, values) AWS or pg2rds keep for themselves.
RESERVED_TAG_PREFIXES = ("aws:", "dms:", "pg2rds:")
#: Characters DMS allows in a tag (its API's pattern ``^([\p{L}\p{Z}\p{N}_.:/=+\-]*)$``): letters,
#: separators (white space) and digits of any script, and these.
TAG_PUNCTUATION = "_.:/=+-"
#: Security groups on the replication instance: a network interface takes at most 16 (VPC quota).
MAX_SECURITY_GROUPS = 16
SECURITY_GROUP_PATTERN = r"^sg-([0-9a-f]{8}|[0-9a-f]{17})$"


class _Strict(BaseModel):
    #: No infinity or NaN: every number here ends up in a comparison or a wait.
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)


class DatabaseRef(_Strict):
    """A database, named by the Secrets Manager secret that holds its server and credentials.

    The secret is the server: host and port come from it (the keys DMS reads through
    ``SecretsManagerSecretId``), the database from its ``dbname`` or, when it has none, from ``database``.
    ``host``, ``port`` and ``database`` may be repeated here, but only as a check: each must match the
    secret (see :mod:`pg2rds.secrets`), so no spec can send a stored password to a server of its choosing.
    """

    secret_arn: str = Field(pattern=SECRET_ARN_PATTERN, max_length=MAX_ARN)
    host: str | None = Field(default=None, min_length=1, max_length=253)
    port: int | None = Field(default=None, ge=1, le=65535)
    database: str | None = Field(default=None, min_length=1, max_length=63)
    ssl_mode: Literal["none", "require", "verify-ca", "verify-full"] = "require"
    #: With verify-ca/verify-full, the CA bundle the functions verify the server with: the ARN of a secret
    #: holding the PEM, or the name of a file in the layer's ``pg2rds/certs/`` (see :mod:`pg2rds.tls`).
    ssl_root_cert: str | None = Field(default=None, min_length=1, max_length=MAX_ARN)
    #: With verify-ca/verify-full, the same CA imported into DMS (ImportCertificate), for the endpoint.
    certificate_arn: str | None = Field(default=None, pattern=DMS_CERTIFICATE_ARN_PATTERN, max_length=MAX_ARN)

    @model_validator(mode="after")
    def _verifying_needs_the_ca(self) -> "DatabaseRef":
        """Verifying needs the CA on both paths to the server: the functions' connections and DMS's."""
        given = [name for name in ("ssl_root_cert", "certificate_arn") if getattr(self, name) is not None]
        if self.ssl_mode in ("verify-ca", "verify-full") and len(given) < 2:
            raise ValueError(
                f"ssl_mode {self.ssl_mode} needs ssl_root_cert (the CA bundle the functions verify with) and "
                "certificate_arn (the same CA imported into DMS with ImportCertificate)"
            )
        if self.ssl_mode not in ("verify-ca", "verify-full") and given:
            raise ValueError(f"{' and '.join(given)} apply only with ssl_mode verify-ca or verify-full")
        return self

    @property
    def libpq_sslmode(self) -> str:
        """``none`` in DMS terms means "do not use TLS"; libpq spells it ``disable``."""
        return "disable" if self.ssl_mode == "none" else self.ssl_mode


class TableRule(_Strict):
    """A DMS selection rule; ``%`` is DMS's wildcard (any run of characters)."""

    schema_name: str = Field(default="%", alias="schema", min_length=1, max_length=MAX_PATTERN_CHARS)
    table_name: str = Field(default="%", alias="table", min_length=1, max_length=MAX_PATTERN_CHARS)
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


class TableSelection(_Strict):
    include: list[TableRule] = Field(
        default_factory=lambda: [TableRule()], min_length=1, max_length=MAX_TABLE_RULES
    )
    exclude: list[TableRule] = Field(default_factory=list, max_length=MAX_TABLE_RULES)


class InstanceSpec(_Strict):
    """The DMS replication instance: created for this migration, or an existing one reused (never deleted)."""

    existing_arn: str | None = Field(default=None, pattern=r"^arn:aws[a-z-]*:dms:", max_length=MAX_ARN)
    instance_class: str = Field(
        default="dms.t3.medium", pattern=r"^dms\.[a-z0-9]+\.[a-z0-9]+$", max_length=64
    )
    allocated_storage_gb: int = Field(default=50, ge=5, le=6144)
    #: A DMS engine version, such as 3.5.3.
    engine_version: str | None = Field(default=None, pattern=r"^\d+(\.\d+){0,3}$", max_length=32)
    #: A replication subnet group's identifier: DMS allows up to 255 letters, digits, periods, spaces,
    #: underscores and hyphens.
    subnet_group: str | None = Field(default=None, pattern=r"^[A-Za-z0-9._ -]+$", max_length=255)
    security_group_ids: list[str] = Field(default_factory=list, max_length=MAX_SECURITY_GROUPS)
    multi_az: bool = False
    publicly_accessible: bool = False

    @field_validator("security_group_ids")
    @classmethod
    def _security_group_ids(cls, ids: list[str]) -> list[str]:
        wrong = [value for value in ids if not re.fullmatch(SECURITY_GROUP_PATTERN, value)]
        if wrong:
            raise ValueError(f"not VPC security group ids (sg- and 8 or 17 hex digits): {', '.join(wrong)}")
        return ids


class PollingSpec(_Strict):
    """How the state machine waits. Intervals grow by ``backoff`` up to ``max_seconds`` so a long
    migration costs few history events (see README, "Execution history budget").

    One execution polls the task at most ``POLLS_PER_EXECUTION`` (2,500) times before it continues in a
    new one, so ``max_seconds`` is capped at 30 minutes: 2,500 such waits are 52 days, inside the
    execution's 90-day time-out with the instance, connection and cleanup waits (a day each at most)."""

    initial_seconds: int = Field(default=30, ge=1, le=1800)
    max_seconds: int = Field(default=600, ge=1, le=1800)
    backoff: float = Field(default=1.5, ge=1.0, le=10.0)
    instance_timeout_minutes: int = Field(default=60, ge=1, le=1440)
    connection_timeout_minutes: int = Field(default=15, ge=1, le=1440)
    #: The load's limit, measured across continuations (so not bound by one execution's time-out).
    task_timeout_hours: float = Field(default=720, gt=0, le=8760)

    @model_validator(mode="after")
    def _max_not_below_initial(self) -> "PollingSpec":
        if self.max_seconds < self.initial_seconds:
            raise ValueError("max_seconds must be ≥ initial_seconds")
        return self


class CdcSpec(_Strict):
    """Ongoing replication: when the target is considered caught up, and how long to wait for cutover."""

    max_latency_seconds: int = Field(default=5, ge=0, le=86400)
    #: "Wait for cutover decision"'s TimeoutSeconds (at least one second): at most 60 days, inside the
    #: execution's 90-day time-out.
    cutover_timeout_hours: float = Field(default=168, gt=0, le=1440)
    #: With ``verification: dms``, how long after the decision DMS may take to validate the last changes
    #: (every table "Validated", nothing pending) before the migration fails instead of waiting on.
    validation_timeout_minutes: float = Field(default=60, gt=0, le=1440)
    #: With ``verification: dms``, the records DMS may still have to validate when the cutover is offered
    #: (changes it has not compared yet): they are validated after the decision, so they bound its downtime.
    #: 0: only once every table is "Validated" with nothing pending.
    max_pending_validation_records: int = Field(default=10_000, ge=0, le=1_000_000_000)
    #: With ``verification: dms``, a table DMS found different is re-validated (ReloadTables,
    #: validate-only) at most this often, so a target fixed by the operator is seen equal again.
    revalidate_minutes: float = Field(default=5, gt=0, le=1440)

    @property
    def cutover_timeout_seconds(self) -> int:
        """Whole seconds, at least one: Step Functions takes a positive integer as TimeoutSeconds."""
        return max(1, int(self.cutover_timeout_hours * 3600))


class TaskOptions(_Strict):
    target_table_prep_mode: Literal["DO_NOTHING", "TRUNCATE_BEFORE_LOAD", "DROP_AND_CREATE"] = "DO_NOTHING"
    lob_mode: Literal["limited", "full"] = "limited"
    #: LobMaxSize in limited mode; unset, validate-source sizes it above the largest LOB it measures.
    #: At most 102400 (100 MB), AWS's recommended maximum: beyond it use full LOB mode.
    lob_max_size_kb: int | None = Field(default=None, ge=1, le=102400)
    max_full_load_subtasks: int = Field(default=8, ge=1, le=49)
    #: What an apply or data error does: "stop" fails the task with DMS's message (STOP_TASK); "log" keeps
    #: DMS's defaults (the row is logged and skipped, and the verification after the load finds it).
    on_error: Literal["stop", "log"] = "stop"
    disable_target_triggers: bool = Field(
        default=True,
        description="Run the target endpoint's sessions with session_replication_role = replica.",
    )


class MigrationSpec(_Strict):
    migration_id: str = Field(min_length=1, max_length=40, pattern=r"^[a-z][a-z0-9]*(-[a-z0-9]+)*$")
    source: DatabaseRef
    target: DatabaseRef
    migration_type: MigrationType = "full-load"
    #: "check" ends the execution after validate-source and prepare-target with their findings, having
    #: created and changed nothing anywhere (DMS's premigration assessment, pg2rds's checks); "migrate" runs.
    mode: Literal["migrate", "check"] = "migrate"
    tables: TableSelection = Field(default_factory=TableSelection)
    instance: InstanceSpec = Field(default_factory=InstanceSpec)
    polling: PollingSpec = Field(default_factory=PollingSpec)
    cdc: CdcSpec = Field(default_factory=CdcSpec)
    task: TaskOptions = Field(default_factory=TaskOptions)
    #: How the target is proved equal to the source. "dms": DMS's own data validation (task
    #: ValidationSettings) checks every table with a primary key while it loads and replicates, and pg2rds
    #: checksums only the tables DMS cannot validate, after the decision; CDC migrations only, and their
    #: default. "checksums": pg2rds compares every table's row count and content checksum after the load
    #: (after the decision, with CDC: slower, the downtime grows with the database); the full load's
    #: default. "counts": row counts only. "none": nothing.
    verification: Literal["dms", "checksums", "counts", "none"] = "checksums"
    #: Rows per verification chunk (a range of the primary key): one Lambda invocation checks one chunk.
    verification_chunk_rows: int = Field(default=1_000_000, ge=1, le=50_000_000)
    #: Chunks checked at once (the Map state's MaxConcurrency): load on both servers grows with it.
    verification_concurrency: int = Field(default=4, ge=1, le=40)
    #: Tags for every DMS resource pg2rds creates, besides its own two (DMS's limits and characters).
    tags: dict[str, str] = Field(default_factory=dict, max_length=MAX_TAGS)

    @model_validator(mode="before")
    @classmethod
    def _verification_by_migration_type(cls, data: object) -> object:
        """Without ``verification``, CDC migrations get "dms" (the cutover then re-checks only what changed
        since DMS validated it) and full loads "checksums" (no replication to validate during)."""
        if isinstance(data, dict) and data.get("verification") is None:
            cdc = data.get("migration_type", "full-load") != "full-load"
            data = {**data, "verification": "dms" if cdc else "checksums"}
        return data

    @model_validator(mode="after")
    def _dms_validation_needs_cdc(self) -> "MigrationSpec":
        if self.verification == "dms" and not self.uses_cdc:
            raise ValueError(
                "verification dms needs CDC (migration_type full-load-and-cdc or cdc): a full load is "
                "verified by pg2rds's own checksums (verification checksums)"
            )
        return self

    @field_validator("tags")
    @classmethod
    def _tags(cls, tags: dict[str, str]) -> dict[str, str]:
        for key, value in tags.items():
            problem = _tag_problem("key", key, MAX_TAG_KEY_CHARS, RESERVED_TAG_PREFIXES) or _tag_problem(
                "value", value, MAX_TAG_VALUE_CHARS, RESERVED_TAG_PREFIXES[:2]
            )
            if problem:
                raise ValueError(f"tag {key[:MAX_TAG_KEY_CHARS]!r}: {problem}")
        return tags

    @model_validator(mode="wrap")
    @classmethod
    def _bounded_size(cls, data: Any, handler: ValidatorFunctionWrapHandler) -> Any:
        """The whole spec within ``MAX_SPEC_BYTES``, checked after the fields (their errors are clearer)."""
        spec = handler(data)
        if isinstance(data, dict):
            size = _json_bytes(data)
            if size > MAX_SPEC_BYTES:
                part, largest = max((_json_bytes(value), key) for key, value in data.items())
                raise ValueError(
                    f"the spec is {size:,} bytes as JSON, more than the {MAX_SPEC_BYTES:,} it may be (it "
                    f"travels in the execution state); its largest part is {largest} ({part:,} bytes)"
                )
        return spec

    @property
    def uses_cdc(self) -> bool:
        return self.migration_type != "full-load"


def _tag_problem(what: str, text: str, limit: int, reserved: tuple[str, ...]) -> str:
    """What DMS would refuse in a tag key or value ("" if nothing): length, characters, reserved prefix."""
    if not 1 <= len(text) <= limit:
        return f"the {what} must be 1 to {limit} characters (it has {len(text)})"
    wrong = sorted({c for c in text if unicodedata.category(c)[0] not in "LZN" and c not in TAG_PUNCTUATION})
    if wrong:
        return (
            f"the {what} may hold only letters, digits, spaces and {' '.join(TAG_PUNCTUATION)}, "
            f"not {''.join(wrong)!r}"
        )
    prefix = next((p for p in reserved if text.lower().startswith(p)), None)
    if prefix:
        return f"the {what} may not start with {prefix!r} (reserved)"
    return ""


def _json_bytes(data: object) -> int:
    """Size of ``data`` as compact JSON in UTF-8, as Step Functions counts a payload."""
    try:
        return len(json.dumps(data, ensure_ascii=False, separators=(",", ":")).encode())
    except (TypeError, ValueError):
        return 0


def describe_validation_error(error: ValidationError) -> str:
    """One line per problem, naming the field by its dotted path, so the Fail state's Cause is readable."""
    lines = []
    for problem in error.errors():
        where = ".".join(str(part) for part in problem["loc"]) or "(spec)"
        lines.append(f"{where}: {problem['msg']}")
    return "invalid migration spec: " + "; ".join(lines)


def parse_spec(data: object) -> MigrationSpec:
    try:
        return MigrationSpec.model_validate(data)
    except ValidationError as error:
        raise SpecInvalid(describe_validation_error(error)) from None
