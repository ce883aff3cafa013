"""Every function's role, as SAM deploys it, is enough for a whole migration, and each action in it is needed.

The roles come from template.yaml translated by SAM's own translator (tests/sam_translated.py). They are
created in moto, each function's handler calls AWS with its role's assumed-role credentials
(pg2rds_emulator.function_roles), and moto's IAM enforcement is on for the whole run: a call its role does
not allow fails with AccessDenied, as in AWS. moto evaluates actions and (for DMS and Secrets Manager)
resource ARNs, not conditions: those are left out here and checked by tests/unit/test_iam_policies.py.
"""

import contextlib
import copy
import json
import time
from collections.abc import Callable
from typing import Any

import boto3
import pytest
from botocore.credentials import ReadOnlyCredentials
from conftest import REGION, Database, spec_for
from judge import account_dms_resources
from moto.core import set_initial_no_auth_action_count
from sam_translated import PARAMETERS, Resolver, managed_policy_documents, role_documents, translate

from pg2rds_cli.cutover import WAITING_STATE, NotWaitingForCutover, send_decision
from pg2rds_cli.executions import ExecutionReader, ExecutionView, watch
from pg2rds_emulator import function_roles
from pg2rds_emulator.dms_engine import DmsEngine
from pg2rds_emulator.dms_standin import StandInEngine
from pg2rds_emulator.embedded import EmbeddedAws
from pg2rds_emulator.moto_dms import FakeEngine

ROWS = 500


#: What assumes a role, and where the translated template names it.
CALLERS = {"AWS::Lambda::Function": "Role", "AWS::StepFunctions::StateMachine": "RoleArn"}
STATE_MACHINE = "MigrationStateMachine"


def deployed_names(aws: EmbeddedAws) -> dict[str, str]:
    """The names the embedded account gave the topics (the policies name them by name; functions and the
    state machine are ``pg2rds-<logical id>`` and the fixed name in both)."""
    arns = aws.resource_arns
    return {
        logical_id: arn.rsplit(":", 1)[-1]
        for logical_id, arn in arns.items()
        if arn.startswith("arn:aws:sns:")
    }


def role_policies(template: dict[str, Any], names: dict[str, str]) -> dict[str, list[dict[str, Any]]]:
    """Per function and state machine (logical id): its role's identity policies (inline and the
    template's own managed ones; the AWS managed ones SAM attaches cover logs, ENIs and X-Ray, which
    nothing here calls), conditions left out."""
    resolver = Resolver(template, PARAMETERS, names)
    managed = managed_policy_documents(template, resolver)
    policies = {}
    for logical_id, resource in template["Resources"].items():
        if resource["Type"] not in CALLERS:
            continue
        role_id = resource["Properties"][CALLERS[resource["Type"]]]["Fn::GetAtt"][0]
        role = role_documents(template, resolver, role_id)
        documents = role["inline"] + [
            copy.deepcopy(managed[arn]) for arn in role["managed"] if arn in managed
        ]
        for document in documents:
            # SAM's policy templates name no version, which IAM accepts and moto refuses; none uses a
            # policy variable, the one thing the version changes
            document.setdefault("Version", "2012-10-17")
            for statement in document["Statement"]:
                statement.pop("Condition", None)
                actions = statement["Action"]
                actions = actions if isinstance(actions, list) else [actions]
                if all(action.startswith("dynamodb:") for action in actions):
                    statement["Resource"] = "*"  # moto authorizes DynamoDB calls against "*", not the table
        policies[logical_id] = documents
    return policies


def without(policies: dict[str, list[dict]], caller: str, action: str) -> dict[str, list[dict]]:
    """``policies`` with ``action`` taken out of ``caller``'s role (and only its role)."""
    changed = copy.deepcopy(policies)
    removed = 0
    for document in changed[caller]:
        for statement in document["Statement"]:
            actions = [statement["Action"]] if isinstance(statement["Action"], str) else statement["Action"]
            removed += action in actions
            statement["Action"] = [a for a in actions if a != action]
        document["Statement"] = [s for s in document["Statement"] if s["Action"]]
    assert removed, f"{caller}'s role does not grant {action}"
    changed[caller] = [d for d in changed[caller] if d["Statement"]]
    return changed


def _credentials(response: dict[str, Any]) -> ReadOnlyCredentials:
    keys = response["Credentials"] if "Credentials" in response else response["AccessKey"]
    return ReadOnlyCredentials(keys["AccessKeyId"], keys["SecretAccessKey"], keys.get("SessionToken"))


def grant_roles(aws: EmbeddedAws, policies: dict[str, list[dict]]) -> None:
    """Create each function's and the state machine's role, assume it, and make the handler (or the
    interpreter) sign with those credentials; the operator signs as an administrator user."""
    iam, sts = aws.client("iam"), aws.client("sts")
    trust = {
        "Version": "2012-10-17",
        "Statement": [{"Effect": "Allow", "Principal": {"AWS": "*"}, "Action": "sts:AssumeRole"}],
    }
    assumed_by = {}
    for logical_id, documents in policies.items():
        role = iam.create_role(
            RoleName=f"pg2rds-{logical_id}Role", AssumeRolePolicyDocument=json.dumps(trust)
        )
        for number, document in enumerate(documents):
            iam.put_role_policy(
                RoleName=role["Role"]["RoleName"],
                PolicyName=f"policy{number}",
                PolicyDocument=json.dumps(document),
            )
        assumed = sts.assume_role(RoleArn=role["Role"]["Arn"], RoleSessionName=logical_id)
        assumed_by[logical_id] = _credentials(assumed)
    iam.create_user(UserName="operator")
    everything = {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "*", "Resource": "*"}]}
    iam.put_user_policy(UserName="operator", PolicyName="admin", PolicyDocument=json.dumps(everything))
    operator = _credentials(iam.create_access_key(UserName="operator"))
    state_machine = assumed_by.pop(STATE_MACHINE)
    function_roles.install()
    function_roles.assign(operator, {f"pg2rds-{k}": v for k, v in assumed_by.items()}, state_machine)


@pytest.fixture(scope="module")
def template() -> dict[str, Any]:
    return translate()


def enforced(run: Callable[[], ExecutionView]) -> ExecutionView:
    """``run()`` with moto's IAM enforcement on from its first request."""
    return set_initial_no_auth_action_count(0)(run)()


@pytest.fixture
def tables(source_db: Database, target_db: Database) -> tuple[Database, Database]:
    for db in (source_db, target_db):
        db.execute("CREATE TABLE items (id int PRIMARY KEY, name text)")
    source_db.execute(f"INSERT INTO items SELECT g, 'n' || g FROM generate_series(1, {ROWS}) g")
    return source_db, target_db


def under_prefix(aws: EmbeddedAws, spec: dict[str, Any]) -> dict[str, Any]:
    """The spec with its secrets stored again under ``pg2rds/``, the only names the roles may read."""
    secrets = aws.client("secretsmanager")
    for side in ("source", "target"):
        value = secrets.get_secret_value(SecretId=spec[side]["secret_arn"])["SecretString"]
        name = f"pg2rds/{spec['migration_id']}/{side}"
        spec[side]["secret_arn"] = secrets.create_secret(Name=name, SecretString=value)["ARN"]
    return spec


def migrate(
    engine: DmsEngine,
    template: dict[str, Any],
    source: Database,
    target: Database,
    remove: tuple[str, str] | None = None,
    **spec: Any,
) -> tuple[ExecutionView, list[str]]:
    """One migration under enforcement; ``remove`` = (caller, action) takes that action out of its role."""
    with EmbeddedAws(engine, time_scale=0.02) as aws:
        policies = role_policies(template, deployed_names(aws))
        grant_roles(aws, without(policies, *remove) if remove else policies)
        execution_input = under_prefix(aws, spec_for(source, target, **spec))

        def run() -> ExecutionView:
            sfn = boto3.client("stepfunctions", region_name=REGION)
            arn = sfn.start_execution(
                stateMachineArn=aws.state_machine_arn, input=json.dumps(execution_input)
            )["executionArn"]
            if spec.get("migration_type") == "full-load-and-cdc":
                reader = ExecutionReader(sfn, arn)
                view = reader.read()
                while not (view.done or view.current_state == WAITING_STATE):
                    time.sleep(0.2)
                    view = reader.read()
                if not view.done:
                    with contextlib.suppress(NotWaitingForCutover):  # it failed before we decided
                        send_decision(sfn, arn, reason="caught up")
            return watch(sfn, arn, lambda v: None, interval_seconds=0.2, timeout_seconds=180)

        try:
            view = enforced(run)
        finally:
            shutdown = getattr(engine, "shutdown", None)
            if shutdown:
                shutdown()
        return view, account_dms_resources(aws)


@pytest.mark.slow
@pytest.mark.parametrize("migration_type", ["full-load", "full-load-and-cdc"])
def test_a_migration_succeeds_with_each_function_and_the_state_machine_under_its_own_role(
    template: dict[str, Any], tables: tuple[Database, Database], migration_type: str
) -> None:
    source, target = tables
    view, leftovers = migrate(
        StandInEngine(),
        template,
        source,
        target,
        migration_type=migration_type,
        polling={"initial_seconds": 2},
    )
    assert view.status == "SUCCEEDED", (view.error, view.cause)
    assert target.execute("SELECT count(*), sum(id) FROM items") == [(ROWS, ROWS * (ROWS + 1) // 2)]
    assert leftovers == []
    assert source.execute(
        "SELECT count(*) FROM pg_replication_slots WHERE database = %s", (source.name,)
    ) == [(0,)]


@pytest.mark.parametrize(
    ("caller", "action", "migration_type"),
    [
        (STATE_MACHINE, "lambda:InvokeFunction", "full-load"),
        (STATE_MACHINE, "sns:Publish", "full-load-and-cdc"),  # the cutover notification
        ("ValidateSourceFunction", "secretsmanager:GetSecretValue", "full-load"),
        ("CreateInstanceFunction", "dms:DescribeReplicationInstances", "full-load"),
        ("CreateEndpointsFunction", "dms:CreateEndpoint", "full-load"),
        ("StartTaskFunction", "dms:StartReplicationTask", "full-load"),
        ("PollTaskFunction", "dms:DescribeTableStatistics", "full-load"),
        # verification dms: which tables DMS validated, read after the decision
        ("PlanVerificationFunction", "dms:DescribeTableStatistics", "full-load-and-cdc"),
        ("CleanupFunction", "dms:DeleteEndpoint", "full-load"),
    ],
)
def test_without_any_one_of_its_actions_a_role_is_denied_and_the_run_says_which(
    template: dict[str, Any], tables: tuple[Database, Database], caller: str, action: str, migration_type: str
) -> None:
    source, target = tables
    view, _ = migrate(
        FakeEngine(), template, source, target, remove=(caller, action), migration_type=migration_type
    )
    assert view.status == "FAILED"
    text = f"{view.error} {view.cause}"
    assert "AccessDenied" in text and action in text, text
