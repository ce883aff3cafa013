"""Least privilege, read from what SAM deploys (template.yaml translated by SAM's own translator).

What moto cannot evaluate is checked here: resource ARNs, conditions (the ownership tag on DMS writes,
kms:ViaService, aws:SourceAccount, iam:PassedToService), trust policies and the start bus's policy.
tests/e2e/test_iam_enforced.py proves under moto's IAM enforcement that the actions are enough and needed.
"""

from typing import Any

import pytest
from sam_translated import (
    PARAMETERS,
    SECRETS_KEY_ARN,
    Resolver,
    dumps,
    managed_policy_documents,
    role_documents,
    statements,
    translate,
)

from pg2rds.naming import OWNER_TAG
from pg2rds_emulator.embedded import ACCOUNT_ID, REGION

#: Actions whose service defines no resource type for them: a statement must name them on "*".
NO_RESOURCE_LEVEL = {
    "dms:DescribeReplicationInstances",
    "dms:DescribeEndpoints",
    "dms:DescribeReplicationTasks",
    "dms:DescribeConnections",
    "cloudwatch:GetMetricStatistics",
    # Step Functions' log delivery (its developer guide: "Logging using CloudWatch Logs")
    "logs:CreateLogDelivery",
    "logs:GetLogDelivery",
    "logs:UpdateLogDelivery",
    "logs:DeleteLogDelivery",
    "logs:ListLogDeliveries",
    "logs:PutResourcePolicy",
    "logs:DescribeResourcePolicies",
    "logs:DescribeLogGroups",
}

#: The AWS managed policies SAM itself attaches (logs, VPC networking, X-Ray for Tracing): no other.
SAM_MANAGED = {
    "arn:aws:iam::aws:policy/service-role/AWSLambdaBasicExecutionRole",
    "arn:aws:iam::aws:policy/service-role/AWSLambdaVPCAccessExecutionRole",
    "arn:aws:iam::aws:policy/AWSXrayWriteOnlyAccess",
}

DMS_ARN = f"arn:aws:dms:{REGION}:{ACCOUNT_ID}:"


@pytest.fixture(scope="module")
def template() -> dict[str, Any]:
    return translate()


def roles(template: dict[str, Any], parameters: dict[str, Any] = PARAMETERS) -> dict[str, dict[str, Any]]:
    resolver = Resolver(template, parameters)
    managed = managed_policy_documents(template, resolver)
    out = {}
    for logical_id, resource in template["Resources"].items():
        if resource["Type"] == "AWS::IAM::Role":
            role = role_documents(template, resolver, logical_id)
            role["own_managed"] = [managed[arn] for arn in role["managed"] if arn in managed]
            role["statements"] = statements(role["inline"] + role["own_managed"])
            out[logical_id] = role
    return out


def test_no_role_may_tag_resources_or_holds_a_broad_managed_policy(template: dict[str, Any]) -> None:
    own = set(managed_policy_documents(template, Resolver(template, PARAMETERS)))
    for name, role in roles(template).items():
        actions = {action for s in role["statements"] for action in s["Action"]}
        assert not {a for a in actions if a.startswith("dms:AddTags") or a.endswith(":*")}, name
        assert set(role["managed"]) <= SAM_MANAGED | own, (name, role["managed"])
        assert not [arn for arn in role["managed"] if "FullAccess" in arn], name


def test_every_wildcard_resource_is_an_action_without_resource_level_permissions(
    template: dict[str, Any],
) -> None:
    for name, role in roles(template).items():
        for statement in role["statements"]:
            if "*" in statement["Resource"]:
                assert set(statement["Action"]) <= NO_RESOURCE_LEVEL, (name, dumps(statement))


@pytest.mark.parametrize(
    ("prefixes", "key"),
    [
        (("dms:Create",), f"aws:RequestTag/{OWNER_TAG}"),
        (("dms:Start", "dms:Stop", "dms:Delete"), f"aws:ResourceTag/{OWNER_TAG}"),
    ],
)
def test_dms_writes_require_the_ownership_tag(
    template: dict[str, Any], prefixes: tuple[str, ...], key: str
) -> None:
    writes = 0
    for name, role in roles(template).items():
        for statement in role["statements"]:
            if not any(a.startswith(prefixes) for a in statement["Action"]):
                continue
            writes += 1
            assert statement["Condition"] == {"Null": {key: "false"}}, (name, dumps(statement))
            assert all(arn.startswith(DMS_ARN) for arn in statement["Resource"]), (name, dumps(statement))
    assert writes >= 3


def test_dms_statements_name_this_account_and_region(template: dict[str, Any]) -> None:
    for name, role in roles(template).items():
        for statement in role["statements"]:
            if any(a.startswith("dms:") for a in statement["Action"]) and statement["Resource"] != ["*"]:
                kinds = {arn.removeprefix(DMS_ARN).split(":")[0] for arn in statement["Resource"]}
                assert kinds <= {"rep", "endpoint", "task"}, (name, dumps(statement))
                assert all(arn.startswith(DMS_ARN) and arn.endswith(":*") for arn in statement["Resource"])


def _readers(role_map: dict[str, dict[str, Any]]) -> set[str]:
    return {
        name
        for name, role in role_map.items()
        for s in role["statements"]
        if "secretsmanager:GetSecretValue" in s["Action"]
    }


def test_secrets_are_readable_only_under_the_prefix_and_decryptable_only_when_a_key_is_given(
    template: dict[str, Any],
) -> None:
    without_key = roles(template)
    readers = _readers(without_key)
    assert readers == {
        "DmsSecretsAccessRole",
        "ValidateSourceFunctionRole",
        "PrepTargetFunctionRole",
        "CreateSlotFunctionRole",  # creates the migration's slot on the source
        "StartTaskFunctionRole",  # reads the source's partitioned tables for the table mappings
        "PollTaskFunctionRole",
        "FinishTargetFunctionRole",
        "PlanVerificationFunctionRole",
        "VerifyChunkFunctionRole",
        "CleanupFunctionRole",
    }
    for name in readers:
        [read] = [
            s for s in without_key[name]["statements"] if "secretsmanager:GetSecretValue" in s["Action"]
        ]
        assert read["Resource"] == [f"arn:aws:secretsmanager:{REGION}:{ACCOUNT_ID}:secret:pg2rds/*"]
        assert not [s for s in without_key[name]["statements"] if "kms:Decrypt" in s["Action"]], name

    with_key = roles(template, PARAMETERS | {"SecretsKmsKeyArn": SECRETS_KEY_ARN})
    for name, role in with_key.items():
        decrypts = [s for s in role["statements"] if "kms:Decrypt" in s["Action"]]
        if name == "MigrationStateMachineRole":  # publishing to the encrypted notification topic
            assert [s["Resource"] for s in decrypts] == [
                [f"arn:aws:kms:{REGION}:{ACCOUNT_ID}:key/NotificationKey"]
            ]
            continue
        if name not in readers:
            assert not decrypts, name
            continue
        assert decrypts == [
            {
                "Effect": "Allow",
                "Action": ["kms:Decrypt"],
                "Resource": [SECRETS_KEY_ARN],
                "Condition": {"StringEquals": {"kms:ViaService": f"secretsmanager.{REGION}.amazonaws.com"}},
            }
        ], name


def test_only_create_endpoints_passes_a_role_only_the_dms_access_role_only_to_dms(
    template: dict[str, Any],
) -> None:
    passing = {
        name: s
        for name, role in roles(template).items()
        for s in role["statements"]
        if "iam:PassRole" in s["Action"]
    }
    assert list(passing) == ["CreateEndpointsFunctionRole"]
    statement = passing["CreateEndpointsFunctionRole"]
    assert statement["Resource"] == [f"arn:aws:iam::{ACCOUNT_ID}:role/pg2rds-DmsSecretsAccessRole"]
    assert statement["Condition"] == {"StringEquals": {"iam:PassedToService": "dms.amazonaws.com"}}
    checks = {
        (action, resource)
        for s in roles(template)["CreateEndpointsFunctionRole"]["statements"]
        for action in s["Action"]
        for resource in s["Resource"]
        if action in ("iam:GetRole", "secretsmanager:DescribeSecret")
    }
    assert checks == {
        ("iam:GetRole", f"arn:aws:iam::{ACCOUNT_ID}:role/pg2rds-DmsSecretsAccessRole"),
        ("secretsmanager:DescribeSecret", f"arn:aws:secretsmanager:{REGION}:{ACCOUNT_ID}:secret:pg2rds/*"),
    }


def test_only_dms_acting_for_this_account_may_assume_the_secrets_access_role(
    template: dict[str, Any],
) -> None:
    [trust] = roles(template)["DmsSecretsAccessRole"]["trust"]["Statement"]
    assert set(trust["Principal"]["Service"]) == {f"dms.{REGION}.amazonaws.com", "dms.amazonaws.com"}
    assert trust["Condition"] == {"StringEquals": {"aws:SourceAccount": ACCOUNT_ID}}


def test_the_state_machine_role_delivers_logs_without_a_full_access_policy(template: dict[str, Any]) -> None:
    role = roles(template)["MigrationStateMachineRole"]
    logs = {a for s in role["statements"] for a in s["Action"] if a.startswith("logs:")}
    assert logs == {a for a in NO_RESOURCE_LEVEL if a.startswith("logs:")}


def test_the_notification_topic_is_encrypted_with_a_key_alarms_can_use(template: dict[str, Any]) -> None:
    resolver = Resolver(template, PARAMETERS)
    topic = resolver.resolve(template["Resources"]["NotificationTopic"]["Properties"])
    assert topic["KmsMasterKeyId"] == "pg2rds-NotificationKey"
    key = resolver.resolve(template["Resources"]["NotificationKey"]["Properties"])
    assert key["EnableKeyRotation"] is True
    [alarms] = [
        s
        for s in key["KeyPolicy"]["Statement"]
        if s.get("Principal") == {"Service": "cloudwatch.amazonaws.com"}
    ]
    assert alarms["Condition"] == {"StringEquals": {"aws:SourceAccount": ACCOUNT_ID}}


def test_migrations_start_only_from_the_dedicated_bus_and_its_named_principals(
    template: dict[str, Any],
) -> None:
    resolver = Resolver(template, PARAMETERS)
    rule = resolver.resolve(template["Resources"]["MigrationStateMachineStartFromEvent"]["Properties"])
    bus = resolver.resolve(template["Resources"]["StartEventBus"]["Properties"])
    assert rule["EventBusName"] == bus["Name"] == "pg2rds-start"
    bus_arn = f"arn:aws:events:{REGION}:{ACCOUNT_ID}:event-bus/pg2rds-start"
    principals = PARAMETERS["StartMigrationPrincipalArns"]
    allow, deny = bus["Policy"]["Statement"]
    assert (allow["Effect"], allow["Principal"], allow["Action"], allow["Resource"]) == (
        "Allow",
        {"AWS": principals},
        "events:PutEvents",
        bus_arn,
    )
    assert (deny["Effect"], deny["Principal"], deny["Action"], deny["Resource"]) == (
        "Deny",
        "*",
        "events:PutEvents",
        bus_arn,
    )
    assert deny["Condition"] == {"ArnNotLike": {"aws:PrincipalArn": principals}}
    [target] = rule["Targets"]
    assert target["Arn"] == f"arn:aws:states:{REGION}:{ACCOUNT_ID}:stateMachine:pg2rds-migration"
