"""What every phase handler shares: logging, event parsing, JSON output.

Tracing is X-Ray's at the Lambda and Step Functions level (``Tracing: Active`` in the template). The
powertools Tracer would add subsegments but needs aws-xray-sdk, which drags botocore into the layer
(+21 MB, and slower cold starts) though the runtime already has it: not worth it for ten small functions.

A handler is one line: ``handler = phase_handler("validate-source", phases.validate_source)``. The event
is parsed into :class:`MigrationState` first, so a bad spec fails every phase the same way
(:class:`SpecInvalid` with the field named), and the result is a pydantic model dumped to plain JSON.
"""

from collections.abc import Callable
from typing import Any

from aws_lambda_powertools import Logger
from aws_lambda_powertools.utilities.typing import LambdaContext
from pydantic import BaseModel, ValidationError

from pg2rds.aws import named_aws_errors
from pg2rds.bounded import clipped
from pg2rds.errors import SpecInvalid
from pg2rds.spec import describe_validation_error, parse_spec
from pg2rds.state import MigrationState

logger = Logger(service="pg2rds")

PhaseFunction = Callable[[MigrationState], BaseModel]


def parse_state(event: Any) -> MigrationState:
    if not isinstance(event, dict) or "spec" not in event:
        raise SpecInvalid("invalid migration spec: the state has no 'spec'; start the execution with a spec")
    spec = parse_spec(event["spec"])
    try:
        return MigrationState.model_validate({**event, "spec": spec})
    except ValidationError as error:
        raise SpecInvalid(describe_validation_error(error)) from None


def clipped_error(error: Exception, limit: int) -> Exception:
    """``error`` with its message cut to ``limit`` characters, under the same class name (what the state
    machine's Retry and Catch match on); ``error`` itself when it is short enough."""
    message = str(error)
    if len(message) <= limit:
        return error
    short = clipped(message, limit)
    try:
        shorter: Exception = type(error)(short)
    except Exception:
        shorter = error
    if str(shorter) != short:  # not built from one message: keep the name, which is what matters
        shorter = type(type(error).__name__, (Exception,), {})(short)
    return shorter


def phase_handler(
    name: str, run: PhaseFunction, max_error_chars: int | None = None
) -> Callable[[Any, LambdaContext], dict[str, Any]]:
    """``max_error_chars``: cut the message of an error the phase raises (a Map item's error is its result,
    and a round's results travel together in the state, which Step Functions caps at 256 KiB)."""

    @logger.inject_lambda_context(clear_state=True)
    def handler(event: Any, context: LambdaContext) -> dict[str, Any]:
        state = parse_state(event)
        logger.append_keys(migration_id=state.spec.migration_id, phase=name)
        try:
            with named_aws_errors():
                result = run(state)
        except Exception as error:
            shorter = error if max_error_chars is None else clipped_error(error, max_error_chars)
            if shorter is error:
                raise
            raise shorter from None
        logger.info("phase finished", extra={"result": result.model_dump(mode="json", exclude={"tables"})})
        return result.model_dump(mode="json")

    handler.__name__ = f"{name.replace('-', '_')}_handler"
    return handler
