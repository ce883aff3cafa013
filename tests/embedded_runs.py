"""A state machine of a test's own, run to its end in the embedded account."""

import json
from typing import Any

from pg2rds_emulator.embedded import EmbeddedAws

ROLE_ARN = "arn:aws:iam::123456789012:role/x"


def run_to_end(aws: EmbeddedAws, name: str, definition: dict[str, Any], document: dict[str, Any]) -> str:
    """Create ``definition`` as state machine ``name``, start it with ``document`` as its input and wait
    (up to 10 s) until it is no longer running; the execution's ARN."""
    sfn = aws.client("stepfunctions")
    machine = sfn.create_state_machine(name=name, definition=json.dumps(definition), roleArn=ROLE_ARN)
    arn = sfn.start_execution(stateMachineArn=machine["stateMachineArn"], input=json.dumps(document))
    for _ in range(200):
        if sfn.describe_execution(executionArn=arn["executionArn"])["status"] != "RUNNING":
            break
        aws.sleep_until_an_end(0.05)
    return arn["executionArn"]
