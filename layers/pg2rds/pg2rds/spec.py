"""The migration spec: the execution input, validated once into typed models.

Every handler parses the same spec, so a field means the same thing in every phase. Unknown fields are
rejected (``extra="forbid"``): a misspelt option silently ignored is how a migration copies the wrong tables.
"""

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from pg2rds.errors import SpecInvalid

MigrationType = Literal["full-load", "full-load-and-cdc", "cdc"]
SECRET_ARN_PATTERN = r"^arn:aws[a-z-]*:secretsmanager:[a-z0-9-]+:\d{12}:secret:.+$"
DMS_CERTIFICATE_ARN_PATTERN = r"^arn:aws[a-z-]*:dms:[a-z0-9-]+:\d{12}:cert:[A-Za-z0-9-]+$"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class DatabaseRef(_Strict):
    """A database, named by the Secrets Manager secret that holds its server and credentials.

    The secret is the server: host and port come from it (the keys DMS reads through
    ``SecretsManagerSecretId``), the database from its ``dbname`` or, when it has none, from ``database``.
    ``host``, ``port`` and ``database`` may be repeated here, but only as a check: each must match the
    secret (see :mod:`pg2rds.secrets`), so no spec can send a stored password to a server of its choosing.
    """

    secret_arn: str = Field(pattern=SECRET_ARN_PATTERN, max_length=2048)
    host: str | None = Field(default=None, min_length=1, max_length=253)
    port: int | None = Field(default=None, ge=1, le=65535)
    database: str | None = Field(default=None, min_length=1, max_length=63)
    ssl_mode: Literal["none", "require", "verify-ca", "verify-full"] = "require"
    #: With verify-ca/verify-full, the CA bundle the functions verify the server with: the ARN of a secret
    #: holding the PEM, or the name of a file in the layer's ``pg2rds/certs/`` (see :mod:`pg2rds.tls`).
    ssl_root_cert: str | None = Field(default=None, min_length=1, max_length=2048)
    #: With verify-ca/verify-full, the same CA imported into DMS (ImportCertificate), for the endpoint.
    certificate_arn: str | None = Field(default=None, pattern=DMS_CERTIFICATE_ARN_PATTERN, max_length=2048)

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

    schema_name: str = Field(default="%", alias="schema", min_length=1)
    table_name: str = Field(default="%", alias="table", min_length=1)
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


class TableSelection(_Strict):
    include: list[TableRule] = Field(default_factory=lambda: [TableRule()], min_length=1)
    exclude: list[TableRule] = Field(default_factory=list)


class InstanceSpec(_Strict):
    """The DMS replication instance: created for this migration, or an existing one reused (never deleted)."""

    existing_arn: str | None = Field(default=None, pattern=r"^arn:aws[a-z-]*:dms:")
    instance_class: str = Field(default="dms.t3.medium", pattern=r"^dms\.[a-z0-9]+\.[a-z0-9]+$")
    allocated_storage_gb: int = Field(default=50, ge=5, le=6144)
    engine_version: str | None = None
    subnet_group: str | None = None
    security_group_ids: list[str] = Field(default_factory=list)
    multi_az: bool = False
    publicly_accessible: bool = False


class PollingSpec(_Strict):
    """How the state machine waits. Intervals grow by ``backoff`` up to ``max_seconds`` so a long
    migration costs few history events (see README, "Execution history budget")."""

    initial_seconds: int = Field(default=30, ge=1, le=3600)
    max_seconds: int = Field(default=600, ge=1, le=86400)
    backoff: float = Field(default=1.5, ge=1.0, le=10.0)
    instance_timeout_minutes: int = Field(default=60, ge=1)
    connection_timeout_minutes: int = Field(default=15, ge=1)
    task_timeout_hours: float = Field(default=720, gt=0)

    @model_validator(mode="after")
    def _max_not_below_initial(self) -> "PollingSpec":
        if self.max_seconds < self.initial_seconds:
            raise ValueError("max_seconds must be ≥ initial_seconds")
        return self


class CdcSpec(_Strict):
    """Ongoing replication: when the target is considered caught up, and how long to wait for cutover."""

    max_latency_seconds: int = Field(default=5, ge=0)
    cutover_timeout_hours: float = Field(default=168, gt=0)


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
    #: After the load: compare every table's row count and content checksum ("checksums"), row counts only
    #: ("counts", for tables too large to read twice within a Lambda's 15 minutes), or nothing.
    verification: Literal["checksums", "counts", "none"] = "checksums"
    #: Rows per verification chunk (a range of the primary key): one Lambda invocation checks one chunk.
    verification_chunk_rows: int = Field(default=1_000_000, ge=1, le=50_000_000)
    #: Chunks checked at once (the Map state's MaxConcurrency): load on both servers grows with it.
    verification_concurrency: int = Field(default=4, ge=1, le=40)
    tags: dict[str, str] = Field(default_factory=dict)

    @field_validator("tags")
    @classmethod
    def _no_reserved_tags(cls, tags: dict[str, str]) -> dict[str, str]:
        reserved = [key for key in tags if key.startswith("pg2rds:")]
        if reserved:
            raise ValueError(f"tag keys starting with 'pg2rds:' are reserved: {', '.join(reserved)}")
        return tags

    @property
    def uses_cdc(self) -> bool:
        return self.migration_type != "full-load"


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
