"""Each function calls AWS under its own role, as in Lambda, and moto authorizes it as IAM would.

In AWS every function runs in its own process with its role's temporary credentials in its environment.
The embedded AWS runs every handler in one process, on the state machine's threads, with clients that
outlive an invocation (``pg2rds.aws.client`` caches them, as warm Lambdas do). So credentials are chosen
when a request is signed: :func:`acting_as` names the function an invocation runs for, on its thread, and
every request signed on that thread carries that function's credentials; requests signed elsewhere (the
operator, the state machine's interpreter) carry the default ones. With moto's IAM enforcement on, each
handler's calls are then allowed or denied by its own role's policies.

moto evaluates a policy statement's ``Resource`` against the resource a request names only for a few
services; for the others it passes ``*``, which a statement naming ARNs never matches. :func:`install`
teaches it the resources of the two services whose statements pg2rds scopes to ARNs: DMS (the ARN in the
request, or the type of resource a ``Create*`` makes) and Secrets Manager (the secret's ARN).
"""

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from botocore.credentials import Credentials, ReadOnlyCredentials, RefreshableCredentials
from moto.dms.responses import DatabaseMigrationServiceResponse
from moto.iam.access_control import IAMRequestBase
from moto.secretsmanager.models import secretsmanager_backends
from moto.secretsmanager.responses import SecretsManagerResponse

_by_function: dict[str, ReadOnlyCredentials] = {}
_default: list[ReadOnlyCredentials] = []
_current = threading.local()

_original_frozen = Credentials.get_frozen_credentials
_original_refreshable_frozen = RefreshableCredentials.get_frozen_credentials


def _chosen(self: Credentials, original: Any) -> ReadOnlyCredentials:
    chosen = getattr(_current, "credentials", None) or (_default[0] if _default else None)
    return chosen or original(self)


def _frozen(self: Credentials) -> ReadOnlyCredentials:
    return _chosen(self, _original_frozen)


def _refreshable_frozen(self: RefreshableCredentials) -> ReadOnlyCredentials:
    return _chosen(self, _original_refreshable_frozen)


def assign(default: ReadOnlyCredentials, functions: dict[str, ReadOnlyCredentials]) -> None:
    """From now on, sign with ``functions[name]`` inside :func:`acting_as` ``(name)``, else ``default``."""
    _by_function.clear()
    _by_function.update(functions)
    _default[:] = [default]
    Credentials.get_frozen_credentials = _frozen  # type: ignore[method-assign]
    RefreshableCredentials.get_frozen_credentials = _refreshable_frozen  # type: ignore[method-assign]


def clear() -> None:
    """Back to the credentials each client resolved itself."""
    _by_function.clear()
    _default.clear()
    Credentials.get_frozen_credentials = _original_frozen  # type: ignore[method-assign]
    RefreshableCredentials.get_frozen_credentials = _original_refreshable_frozen  # type: ignore[method-assign]


@contextmanager
def acting_as(function_name: str) -> Iterator[None]:
    """Requests signed on this thread inside the block carry ``function_name``'s role credentials (when
    roles are assigned). Each function is its own process in Lambda, so nothing one function read is
    served to another from a cache: powertools' parameter cache starts empty for each invocation."""
    credentials = _by_function.get(function_name)
    if credentials is None:
        yield
        return
    from aws_lambda_powertools.utilities import parameters

    parameters.clear_caches()
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
    body = self._get_body()
    for name in _DMS_ARN_PARAMETERS:
        if body.get(name):
            return body[name]
    return "*"


def _secret_resource(self: SecretsManagerResponse) -> str:
    secret_id = self._get_body().get("SecretId")
    if not secret_id:
        return "*"
    backend = secretsmanager_backends[self.current_account][self.region]
    try:
        return backend.describe_secret(secret_id).arn
    except Exception:  # unknown secret: authorize against the name as given; the call then fails as AWS's
        return f"arn:aws:secretsmanager:{self.region}:{self.current_account}:secret:{secret_id}"


def _json_body(self: Any) -> dict[str, Any]:
    import json

    try:
        return json.loads(self.body or "{}")
    except ValueError:
        return {}


#: Services whose IAM prefix is not the name they sign requests with (moto builds the action from the latter).
_IAM_PREFIX = {"monitoring": "cloudwatch"}
_original_request_init = IAMRequestBase.__init__


def _request_init(self: IAMRequestBase, *args: Any, **kwargs: Any) -> None:
    _original_request_init(self, *args, **kwargs)
    service, _, action = self._action.partition(":")
    self._action = f"{_IAM_PREFIX.get(service, service)}:{action}"


def install() -> None:
    """Let moto authorize DMS and Secrets Manager requests against the resources they name, and name
    CloudWatch's actions ``cloudwatch:`` as IAM does."""
    IAMRequestBase.__init__ = _request_init  # type: ignore[method-assign]
    DatabaseMigrationServiceResponse._get_body = _json_body  # type: ignore[attr-defined]
    DatabaseMigrationServiceResponse._determine_resource = _dms_resource  # type: ignore[attr-defined]
    SecretsManagerResponse._get_body = _json_body  # type: ignore[attr-defined]
    SecretsManagerResponse._determine_resource = _secret_resource  # type: ignore[attr-defined]
