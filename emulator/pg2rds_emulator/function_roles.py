"""Each function calls AWS under its own role, as in Lambda, and moto authorizes it as IAM would.

In AWS every function runs in its own process with its role's temporary credentials in its environment.
The embedded AWS runs every handler in one process, on the state machine's threads, with clients that
outlive an invocation (``pg2rds.aws.client`` caches them, as warm Lambdas do). So credentials are chosen
when a request is signed: :func:`acting_as` names the function an invocation runs for, on its thread, and
every request signed on that thread carries that function's credentials; requests signed elsewhere (the
operator) carry the default ones. moto's Step Functions interpreter signs every call it makes for a state
(Lambda, SNS, Step Functions) with one fixed key, on whatever thread runs the state: those requests carry the
state machine role's credentials. With moto's IAM enforcement on, each call is then allowed or denied by
its caller's role, as in AWS.

moto evaluates a policy statement's ``Resource`` against the resource a request names only for a few
services; for the others it passes ``*``, which a statement naming ARNs never matches. :func:`install`
teaches it the resources of the services whose statements pg2rds scopes to ARNs: DMS (the ARN in the
request, or the type of resource a ``Create*`` makes), Secrets Manager (the secret's ARN), Lambda (the
invoked function), SNS (the topic) and Step Functions (the state machine).
"""

import threading
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any
from urllib.parse import unquote

from botocore.credentials import Credentials, ReadOnlyCredentials, RefreshableCredentials
from moto.awslambda.responses import LambdaResponse
from moto.core.exceptions import AccessDeniedError
from moto.dms.responses import DatabaseMigrationServiceResponse
from moto.iam.access_control import IAMRequestBase
from moto.secretsmanager.models import secretsmanager_backends
from moto.secretsmanager.responses import SecretsManagerResponse
from moto.sns.responses import SNSResponse
from moto.stepfunctions.responses import StepFunctionResponse

#: The access key of the clients moto's interpreter makes (moto.stepfunctions.parser.asl.utils.boto_client).
INTERPRETER_ACCESS_KEY = "ak"

_by_function: dict[str, ReadOnlyCredentials] = {}
_default: list[ReadOnlyCredentials] = []
_state_machine: list[ReadOnlyCredentials] = []
_current = threading.local()

_original_frozen = Credentials.get_frozen_credentials
_original_refreshable_frozen = RefreshableCredentials.get_frozen_credentials


def _chosen(self: Credentials, original: Any) -> ReadOnlyCredentials:
    chosen = getattr(_current, "credentials", None)
    if chosen is None and _state_machine and self.access_key == INTERPRETER_ACCESS_KEY:
        chosen = _state_machine[0]
    if chosen is None and _default:
        chosen = _default[0]
    return chosen or original(self)


def _frozen(self: Credentials) -> ReadOnlyCredentials:
    return _chosen(self, _original_frozen)


def _refreshable_frozen(self: RefreshableCredentials) -> ReadOnlyCredentials:
    return _chosen(self, _original_refreshable_frozen)


def assign(
    default: ReadOnlyCredentials,
    functions: dict[str, ReadOnlyCredentials],
    state_machine: ReadOnlyCredentials | None = None,
) -> None:
    """From now on, sign with ``functions[name]`` inside :func:`acting_as` ``(name)``, with
    ``state_machine`` what the interpreter sends, and with ``default`` everything else."""
    _by_function.clear()
    _by_function.update(functions)
    _default[:] = [default]
    _state_machine[:] = [state_machine] if state_machine else []
    Credentials.get_frozen_credentials = _frozen  # type: ignore[method-assign]
    RefreshableCredentials.get_frozen_credentials = _refreshable_frozen  # type: ignore[method-assign]


def clear() -> None:
    """Back to the credentials each client resolved itself."""
    _by_function.clear()
    _default.clear()
    _state_machine.clear()
    Credentials.get_frozen_credentials = _original_frozen  # type: ignore[method-assign]
    RefreshableCredentials.get_frozen_credentials = _original_refreshable_frozen  # type: ignore[method-assign]


@contextmanager
def acting_as(function_name: str) -> Iterator[None]:
    """Requests signed on this thread inside the block carry ``function_name``'s role credentials (when
    roles are assigned). Each function is its own process in Lambda, so nothing one function read is
    served to another from a cache: the functions' secret cache starts empty for each invocation."""
    credentials = _by_function.get(function_name)
    if credentials is None:
        yield
        return
    from pg2rds import secrets

    secrets.clear_cache()
    previous = getattr(_current, "credentials", None)
    _current.credentials = credentials
    try:
        yield
    finally:
        _current.credentials = previous


# -- the resources moto authorizes against ------------------------------------------------------------------
_DMS_ARN_PARAMETERS = ("ResourceArn", "ReplicationTaskArn", "EndpointArn", "ReplicationInstanceArn")
_DMS_CREATES = {
    "CreateReplicationTask": "task",
    "CreateEndpoint": "endpoint",
    "CreateReplicationInstance": "rep",
}


def _dms_resource(self: DatabaseMigrationServiceResponse) -> str:
    """The ARN a DMS request acts on; for a create, an ARN of the kind of resource it makes; ``*`` for the
    actions IAM authorizes on no resource (``Describe*``)."""
    action = self._get_action()
    if action in _DMS_CREATES:
        return f"arn:aws:dms:{self.region}:{self.current_account}:{_DMS_CREATES[action]}:new"
    if action.startswith("Describe") and action != "DescribeTableStatistics":
        return "*"
    return next((self._get_param(name) for name in _DMS_ARN_PARAMETERS if self._get_param(name)), "*")


def _secret_resource(self: SecretsManagerResponse) -> str:
    secret_id = self._get_param("SecretId")
    if not secret_id:
        return "*"
    backend = secretsmanager_backends[self.current_account][self.region]
    try:
        return backend.describe_secret(secret_id).arn
    except Exception:  # unknown secret: authorize against the name as given; the call then fails as AWS's
        return f"arn:aws:secretsmanager:{self.region}:{self.current_account}:secret:{secret_id}"


def _function_resource(self: LambdaResponse) -> str:
    """The function an ``Invoke`` names in its path (by name or ARN)."""
    if not self.path.endswith("/invocations"):
        return "*"
    name = unquote(self.path.rsplit("/", 2)[-2])
    return (
        name
        if name.startswith("arn:")
        else f"arn:aws:lambda:{self.region}:{self.current_account}:function:{name}"
    )


def _topic_resource(self: SNSResponse) -> str:
    return self._get_param("TopicArn") or "*"


def _state_machine_resource(self: StepFunctionResponse) -> str:
    return self._get_param("stateMachineArn") or "*"


#: Where IAM's action differs from the service name and operation moto builds it from.
_IAM_PREFIX = {"monitoring": "cloudwatch"}
_IAM_ACTION = {"lambda:Invoke": "lambda:InvokeFunction"}
_original_request_init = IAMRequestBase.__init__


def _request_init(self: IAMRequestBase, *args: Any, **kwargs: Any) -> None:
    _original_request_init(self, *args, **kwargs)
    service, _, operation = self._action.partition(":")
    action = f"{_IAM_PREFIX.get(service, service)}:{operation}"
    self._action = _IAM_ACTION.get(action, action)


_original_denied_init = AccessDeniedError.__init__


def _denied_init(self: AccessDeniedError, user_arn: str, action: str) -> None:
    """AWS answers every request, a refused one too, with a request id (the Step Functions interpreter
    puts it in a failed state's cause, and fails on its own without it)."""
    _original_denied_init(self, user_arn, action)
    self.description = self.description.replace(
        "</Errors>", f"</Errors><RequestId>{uuid.uuid4()}</RequestId>"
    )


def install() -> None:
    """Let moto authorize requests against the resources they name, under the action names IAM uses
    (``cloudwatch:GetMetricStatistics``, ``lambda:InvokeFunction``)."""
    IAMRequestBase.__init__ = _request_init  # type: ignore[method-assign]
    AccessDeniedError.__init__ = _denied_init  # type: ignore[method-assign]
    DatabaseMigrationServiceResponse._determine_resource = _dms_resource  # type: ignore[attr-defined]
    SecretsManagerResponse._determine_resource = _secret_resource  # type: ignore[attr-defined]
    LambdaResponse._determine_resource = _function_resource  # type: ignore[attr-defined]
    SNSResponse._determine_resource = _topic_resource  # type: ignore[attr-defined]
    StepFunctionResponse._determine_resource = _state_machine_resource  # type: ignore[attr-defined]
