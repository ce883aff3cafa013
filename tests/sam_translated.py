"""template.yaml as CloudFormation deploys it: translated by SAM's own translator, intrinsics resolved.

The IAM tests read the roles from here rather than from template.yaml, so what they check is what SAM
makes of the template (the function roles it generates, the policies it attaches, the event rule's
target), for one set of parameter values.
"""

import json
from typing import Any

import boto3
from samcli.yamlhelper import yaml_parse
from samtranslator.parser.parser import Parser
from samtranslator.translator.translator import Translator
from samtranslator.utils.py27hash_fix import undo_mark_unicode_str_in_template

from pg2rds_emulator.embedded import ACCOUNT_ID, REGION, STACK_NAME, TEMPLATE

PARTITION = "aws"

#: Parameter values for the translation: the required ones, and a customer-managed secrets key.
PARAMETERS: dict[str, Any] = {
    "SubnetIds": ["subnet-0a"],
    "SecurityGroupIds": ["sg-0a"],
    "StartMigrationPrincipalArns": [f"arn:aws:iam::{ACCOUNT_ID}:role/migration-operator"],
}
SECRETS_KEY_ARN = f"arn:aws:kms:{REGION}:{ACCOUNT_ID}:key/1234abcd-12ab-34cd-56ef-1234567890ab"


def translate() -> dict[str, Any]:
    """The CloudFormation template SAM's transform produces from template.yaml (as ``sam deploy`` does;
    the template names no AWS managed policy by name, so there is nothing to look up in IAM)."""
    template = yaml_parse(TEMPLATE.read_text())
    for resource in template["Resources"].values():  # what `sam package` does: local paths become S3 URIs
        props = resource.get("Properties", {})
        for key in ("CodeUri", "ContentUri", "DefinitionUri"):
            if isinstance(props.get(key), str):
                props[key] = f"s3://{STACK_NAME}-artifacts/{props[key]}"
    translator = Translator(None, Parser(), boto_session=boto3.session.Session(region_name=REGION))
    translated = translator.translate(template, parameter_values={}, get_managed_policy_map=dict)
    return undo_mark_unicode_str_in_template(translated)


class Resolver:
    """Resolves the intrinsics of a translated template for given parameter values (what CloudFormation
    does at deploy time), so policies can be evaluated or created in moto as AWS would hold them."""

    def __init__(
        self,
        template: dict[str, Any],
        parameters: dict[str, Any],
        physical_names: dict[str, str] | None = None,
    ) -> None:
        self.template = template
        #: Logical id → the name a resource was created with, where not ``<stack>-<logical id>``.
        self.physical_names = physical_names or {}
        self.parameters = {
            name: spec.get("Default") for name, spec in template.get("Parameters", {}).items()
        } | parameters
        self.pseudo = {
            "AWS::Partition": PARTITION,
            "AWS::Region": REGION,
            "AWS::AccountId": ACCOUNT_ID,
            "AWS::StackName": STACK_NAME,
            "AWS::URLSuffix": "amazonaws.com",
        }

    def name_of(self, logical_id: str) -> str:
        return self.physical_names.get(logical_id, f"{STACK_NAME}-{logical_id}")

    def condition(self, name: str) -> bool:
        return bool(self.resolve(self.template["Conditions"][name]))

    def ref(self, name: str) -> Any:
        if name in self.pseudo:
            return self.pseudo[name]
        if name in self.parameters:
            return self.parameters[name]
        resource = self.template["Resources"][name]
        if resource["Type"] in (
            "AWS::IAM::ManagedPolicy",
            "AWS::SNS::Topic",
            "AWS::StepFunctions::StateMachine",
        ):
            return self.arn(name)
        if "Name" in resource.get("Properties", {}):
            return self.resolve(resource["Properties"]["Name"])
        return self.name_of(name)

    def arn(self, name: str) -> str:
        """The ARN CloudFormation would give resource ``name`` (physical names derived from the logical)."""
        kind = self.template["Resources"][name]["Type"]
        service = {
            "AWS::IAM::Role": f"arn:aws:iam::{ACCOUNT_ID}:role/{self.name_of(name)}",
            "AWS::IAM::ManagedPolicy": f"arn:aws:iam::{ACCOUNT_ID}:policy/{self.name_of(name)}",
            "AWS::Lambda::Function": f"arn:aws:lambda:{REGION}:{ACCOUNT_ID}:function:{self.name_of(name)}",
            "AWS::SNS::Topic": f"arn:aws:sns:{REGION}:{ACCOUNT_ID}:{self.name_of(name)}",
            "AWS::KMS::Key": f"arn:aws:kms:{REGION}:{ACCOUNT_ID}:key/{name}",
            "AWS::Logs::LogGroup": f"arn:aws:logs:{REGION}:{ACCOUNT_ID}:log-group:{name}:*",
            "AWS::DynamoDB::Table": f"arn:aws:dynamodb:{REGION}:{ACCOUNT_ID}:table/{STACK_NAME}-{name}",
        }
        if kind == "AWS::StepFunctions::StateMachine":
            machine = self.template["Resources"][name]["Properties"].get("StateMachineName")
            return f"arn:aws:states:{REGION}:{ACCOUNT_ID}:stateMachine:" + (
                self.resolve(machine) if machine else self.parameters["StateMachineName"]
            )
        return service[kind]

    def resolve(self, value: Any) -> Any:
        if isinstance(value, list):
            items = [self.resolve(item) for item in value]
            return [item for item in items if item is not _NO_VALUE]
        if not isinstance(value, dict):
            return value
        if len(value) == 1:
            ((key, arg),) = value.items()
            if key == "Ref":
                return _NO_VALUE if arg == "AWS::NoValue" else self.ref(arg)
            if key == "Fn::GetAtt":
                resource, attribute = arg if isinstance(arg, list) else arg.split(".", 1)
                if attribute == "TopicName":
                    return self.name_of(resource)
                assert attribute == "Arn", arg
                return self.arn(resource)
            if key == "Fn::Sub":
                text, variables = (arg, {}) if isinstance(arg, str) else arg
                names = {k: self.resolve(v) for k, v in variables.items()}
                return _substitute(text, lambda name: names[name] if name in names else self._sub_ref(name))
            if key == "Fn::If":
                condition, yes, no = arg
                return self.resolve(yes if self.condition(condition) else no)
            if key == "Fn::Equals":
                left, right = (self.resolve(a) for a in arg)
                return left == right
            if key == "Fn::Not":
                return not self.resolve(arg[0])
            if key == "Fn::Join":
                separator, parts = arg
                return separator.join(str(p) for p in self.resolve(parts))
            if key == "Condition":
                return self.condition(arg)
        resolved = {key: self.resolve(item) for key, item in value.items()}
        return {key: item for key, item in resolved.items() if item is not _NO_VALUE}

    def _sub_ref(self, name: str) -> str:
        if "." in name:
            resource, attribute = name.split(".", 1)
            return self.resolve({"Fn::GetAtt": [resource, attribute]})
        value = self.ref(name)
        return ",".join(value) if isinstance(value, list) else str(value)


_NO_VALUE = object()


def _substitute(text: str, lookup: Any) -> str:
    out, rest = [], text
    while "${" in rest:
        before, _, after = rest.partition("${")
        name, _, rest = after.partition("}")
        out.append(before)
        out.append(f"${{{name[1:]}}}" if name.startswith("!") else str(lookup(name)))
    out.append(rest)
    return "".join(out)


def function_roles(template: dict[str, Any], resolver: Resolver) -> dict[str, dict[str, Any]]:
    """Per function logical id: its role's trust policy, inline policy documents and managed policy ARNs."""
    roles = {}
    for logical_id, resource in template["Resources"].items():
        if resource["Type"] != "AWS::Lambda::Function":
            continue
        role_id = resource["Properties"]["Role"]["Fn::GetAtt"][0]
        roles[logical_id] = role_documents(template, resolver, role_id)
    return roles


def role_documents(template: dict[str, Any], resolver: Resolver, role_id: str) -> dict[str, Any]:
    props = resolver.resolve(template["Resources"][role_id]["Properties"])
    return {
        "name": role_id,
        "trust": props["AssumeRolePolicyDocument"],
        "inline": [policy["PolicyDocument"] for policy in props.get("Policies", [])],
        "managed": props.get("ManagedPolicyArns", []),
    }


def managed_policy_documents(template: dict[str, Any], resolver: Resolver) -> dict[str, dict[str, Any]]:
    """The template's own managed policies, by the ARN a role refers to them with."""
    return {
        resolver.arn(logical_id): resolver.resolve(resource["Properties"]["PolicyDocument"])
        for logical_id, resource in template["Resources"].items()
        if resource["Type"] == "AWS::IAM::ManagedPolicy"
    }


def statements(documents: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Every statement of ``documents``, with Action and Resource always lists."""
    out = []
    for document in documents:
        for statement in document["Statement"]:
            statement = dict(statement)
            for key in ("Action", "Resource"):
                if isinstance(statement.get(key), str):
                    statement[key] = [statement[key]]
            out.append(statement)
    return out


def dumps(value: Any) -> str:
    return json.dumps(value, indent=2, sort_keys=True)
