"""Named errors, one class per failure kind.

Step Functions matches ``Retry`` and ``Catch`` rules on the error name, which for a Python Lambda is the
exception's class name. Keeping one class per kind lets the state machine retry what is transient and send
everything else through cleanup to a ``Fail`` state whose Cause is the exception's message, so each message
is written for the operator: what is wrong, where, and how to fix it.
"""

from pg2rds.bounded import clipped


class Pg2RdsError(Exception):
    """Base of every error the handlers raise on purpose.

    The message is cut to :data:`pg2rds.bounded.MAX_MESSAGE_CHARS`: it becomes the Cause a Catch puts into
    the state, and may quote a server's or DMS's text of any length."""

    def __init__(self, message: str = "") -> None:
        super().__init__(clipped(message))


class SpecInvalid(Pg2RdsError):
    """The execution input is not a valid migration spec; nothing has been created."""


class SourceUnreachable(Pg2RdsError):
    """The source database cannot be connected to with the secret's credentials."""


class SourceBusy(Pg2RdsError):
    """A read on the source gave up rather than wait for a lock (``lock_timeout``) or run on
    (``statement_timeout``): pg2rds never holds up the application's sessions queued behind it. Retried."""


class SourceNotReady(Pg2RdsError):
    """Source validation found at least one fatal finding (the message lists them with their fixes)."""


class TargetUnreachable(Pg2RdsError):
    """The target database cannot be connected to with the secret's credentials."""


class TargetNotReady(Pg2RdsError):
    """Target preparation found at least one fatal finding."""


class SecretUnusable(Pg2RdsError):
    """A Secrets Manager secret is missing or lacks ``username``/``password``."""


class AwsThrottled(Pg2RdsError):
    """An AWS API throttled us; retried by the state machine with backoff."""


class ResourceBusy(Pg2RdsError):
    """An AWS resource is in a transitional state that forbids the call; retried by the state machine."""


class MigrationAlreadyRunning(Pg2RdsError):
    """Another execution holds this migration id's lease: this one is refused before touching anything."""


class MigrationEnded(Pg2RdsError):
    """A phase that creates something started after its execution chain ended (its cleanup has begun):
    it does nothing, so nothing is created that the cleanup would not see. Only a Lambda still running
    after ``StopExecution`` meets it; nobody reads its result."""


class ResourceConflict(Pg2RdsError):
    """A resource with our name exists but was not created by this migration, so we refuse to touch it."""


class ReplicationInstanceFailed(Pg2RdsError):
    """The replication instance ended in a state it cannot leave (failed, incompatible-network, ...)."""


class ConnectionTestFailed(Pg2RdsError):
    """DMS could not connect to an endpoint; the message carries DMS's failure text."""


class TaskFailed(Pg2RdsError):
    """The replication task failed or stopped with an error; the message carries DMS's failure text."""


class PhaseTimedOut(Pg2RdsError):
    """A phase waited longer than the spec allows (instance, connection test, task, cutover)."""


class CleanupIncomplete(Pg2RdsError):
    """Cleanup could not remove everything this migration owns; the message lists what is left."""


class VerificationFailed(Pg2RdsError):
    """Source and target differ after the load; the message names the tables."""


class SequenceUnreadable(Pg2RdsError):
    """A source sequence's position cannot be read; the target's sequences are left as they are."""


class CheckFailed(Pg2RdsError):
    """A check-only run (``spec.mode = "check"``) found fatal findings. Never raised: the name is the Error
    of the state machine's "Check found fatal problems" Fail state, which a check reaches without cleanup."""


class CutoverTimedOut(Pg2RdsError):
    """No cutover decision arrived within ``spec.cdc.cutover_timeout_hours`` (the ``States.Timeout`` of the
    waiting state, renamed: a Fail state may not raise a ``States.`` error)."""


class CutoverAborted(Pg2RdsError):
    """The operator aborted the migration at the cutover decision."""


class CutoverDecided(Pg2RdsError):
    """Never raised: the Error of the "Decision received" Fail state, which ends the cutover wait's
    Parallel (and so its watcher branch) carrying the operator's decision, as JSON, in its cause."""


class CutoverWithdrawn(Pg2RdsError):
    """Never raised: the Error of the watcher's Fail state when the task falls behind during the cutover
    wait; the Parallel's Catch notifies the topic and polling resumes."""


class ContinueNeeded(Pg2RdsError):
    """Never raised: the Error of the watcher's Fail state when the execution's poll budget is spent during
    the cutover wait; the Parallel's Catch continues in a new execution, which offers the cutover again."""


#: Errors the state machine retries. Every Task state that invokes one of our functions retries each of
#: them (whether a phase can raise one is not always visible: every phase runs inside ``named_aws_errors``
#: and most read a secret or connect), with one policy per error: the README's "Failures, retries,
#: cleanup" table. tests/unit/test_error_names.py and test_retry_policy.py check all three agree.
#: Everything else goes through cleanup to ``Fail``.
TRANSIENT: tuple[type[Pg2RdsError], ...] = (
    AwsThrottled,
    ResourceBusy,
    SourceBusy,
    SourceUnreachable,
    TargetUnreachable,
)
#: Errors a ``Catch`` names on their own, because they take another path than the generic one: no cleanup
#: (nothing was created, or the migration goes on), or cleanup without the "do not cut over" notice (the
#: operator ended the wait). Every other error reaches cleanup through a ``States.ALL`` Catch.
CAUGHT_BY_NAME: tuple[type[Pg2RdsError], ...] = (
    SpecInvalid,
    MigrationAlreadyRunning,
    CutoverDecided,
    CutoverWithdrawn,
    ContinueNeeded,
    CutoverAborted,
    CutoverTimedOut,
)
