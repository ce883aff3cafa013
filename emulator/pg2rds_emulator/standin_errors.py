"""What the DMS stand-in does when applying a change or loading a table fails: the task's
``ErrorBehavior``, as the AWS page "Error handling task settings" describes it.

- A change that fails on the target, or an UPDATE/DELETE that finds no row there (DMS's "zero rows
  affected" conflict), is an apply error. ``ApplyErrorInsertPolicy``, ``ApplyErrorUpdatePolicy`` and
  ``ApplyErrorDeletePolicy`` decide: ``IGNORE_RECORD`` and ``LOG_ERROR`` skip the change and count it
  (the rest of its transaction is applied), ``SUSPEND_TABLE`` stops replicating the table (its state
  becomes "Table error") and ``STOP_TASK`` fails the task with the target's message. DMS's defaults are
  LOG_ERROR for inserts and updates and IGNORE_RECORD for deletes: a change is lost and the task goes on.
- After ``ApplyErrorEscalationCount`` skipped errors on one table (0: never), ``ApplyErrorEscalationPolicy``
  (``LOG_ERROR``, ``SUSPEND_TABLE`` or ``STOP_TASK``) applies instead.
- A table whose full load fails is a table error: ``TableErrorPolicy`` ``SUSPEND_TABLE`` (DMS's default)
  leaves it in "Table error" while the other tables load; ``STOP_TASK`` fails the task.

Not modelled: ``INSERT_RECORD`` and ``UPDATE_RECORD`` are read as ``LOG_ERROR``; a full load copies a
table as a whole, so ``DataErrorPolicy`` has no single row to skip (a bad row fails its table).
"""

from dataclasses import dataclass
from typing import Any, Literal

Decision = Literal["skip", "suspend", "stop"]

#: DMS's defaults (AWS page "Error handling task settings").
DEFAULTS = {
    "ApplyErrorInsertPolicy": "LOG_ERROR",
    "ApplyErrorUpdatePolicy": "LOG_ERROR",
    "ApplyErrorDeletePolicy": "IGNORE_RECORD",
    "ApplyErrorEscalationPolicy": "LOG_ERROR",
    "ApplyErrorEscalationCount": 0,
    "TableErrorPolicy": "SUSPEND_TABLE",
}

_DECISIONS: dict[str, Decision] = {"STOP_TASK": "stop", "SUSPEND_TABLE": "suspend"}


class ApplyStopped(Exception):
    """An apply error under a STOP_TASK policy: the task fails with this message."""


@dataclass(frozen=True)
class ErrorPolicies:
    insert: str
    update: str
    delete: str
    escalation: str
    escalation_count: int
    table: str

    @classmethod
    def of_task(cls, settings: dict[str, Any]) -> "ErrorPolicies":
        given = {**DEFAULTS, **(settings.get("ErrorBehavior") or {})}
        return cls(
            insert=given["ApplyErrorInsertPolicy"],
            update=given["ApplyErrorUpdatePolicy"],
            delete=given["ApplyErrorDeletePolicy"],
            escalation=given["ApplyErrorEscalationPolicy"],
            escalation_count=int(given["ApplyErrorEscalationCount"] or 0),
            table=given["TableErrorPolicy"],
        )

    def for_change(self, operation: str) -> str:
        return {"INSERT": self.insert, "UPDATE": self.update, "DELETE": self.delete}[operation]

    def stops_at_once(self, operation: str) -> bool:
        """A failing change of this kind stops the task whatever came before (no savepoint needed)."""
        return self.for_change(operation) == "STOP_TASK"

    def decide(self, operation: str, errors_on_table: int) -> Decision:
        """What the ``errors_on_table``-th apply error on one table (this one included) leads to."""
        decision = _DECISIONS.get(self.for_change(operation), "skip")
        if decision == "skip" and 0 < self.escalation_count <= errors_on_table:
            return _DECISIONS.get(self.escalation, "skip")
        return decision

    @property
    def table_error_stops(self) -> bool:
        return self.table != "SUSPEND_TABLE"
