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


def phase_handler(name: str, run: PhaseFunction) -> Callable[[Any, LambdaContext], dict[str, Any]]:
    @logger.inject_lambda_context(clear_state=True)
    def handler(event: Any, context: LambdaContext) -> dict[str, Any]:
        state = parse_state(event)
        logger.append_keys(migration_id=state.spec.migration_id, phase=name)
        with named_aws_errors():
            result = run(state)
        logger.info("phase finished", extra={"result": result.model_dump(mode="json", exclude={"tables"})})
        return result.model_dump(mode="json")

    handler.__name__ = f"{name.replace('-', '_')}_handler"
    return handler
