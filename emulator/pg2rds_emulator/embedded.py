"""An embedded AWS in this process: the real state machine, the real handlers, moto for the services.

What runs is what AWS runs: ``template.yaml`` says which functions exist and where their code is,
``statemachine/migration.asl.json`` is executed by moto's Step Functions interpreter with the template's
``DefinitionSubstitutions``, and every Lambda invocation is routed to the handler module in this process
(with the same event and error payload shapes as the Lambda runtime). DMS is moto's, made faithful by
:mod:`pg2rds_emulator.moto_dms`, with an engine that either fakes the work (tests) or really moves the data
(:mod:`pg2rds_emulator.dms_standin`).

Waits can run on a compressed clock (``time_scale``): a 600 s Wait state then takes 600 × scale seconds,
so long polling schedules can be exercised quickly while the state machine and history stay the same.
"""

import importlib.util
import itertools
import json
import logging
import os
import re
import tempfile
import threading
import time
import traceback
import uuid
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from types import ModuleType
from typing import Any

import boto3
import botocore.endpoint
import botocore.loaders
import yaml
from moto import mock_aws
from moto.awslambda_simple.models import LambdaSimpleBackend
from moto.core.responses import ActionResult, BaseResponse, EmptyResult
from moto.stepfunctions.parser.api import ExecutionFailedEventDetails, HistoryEventType
from moto.stepfunctions.parser.asl.component.common.error_name.failure_event import (
    FailureEvent,
    FailureEventException,
)
from moto.stepfunctions.parser.asl.component.common.error_name.states_error_name import StatesErrorName
from moto.stepfunctions.parser.asl.component.common.error_name.states_error_name_type import (
    StatesErrorNameType,
)
from moto.stepfunctions.parser.asl.component.common.retry import retrier_decl
from moto.stepfunctions.parser.asl.component.eval_component import EvalComponent
from moto.stepfunctions.parser.asl.component.program.program import Program
from moto.stepfunctions.parser.asl.component.state.exec.state_map.iteration.distributed_iteration_component import (  # noqa: E501
    DistributedIterationComponent,
)
from moto.stepfunctions.parser.asl.component.state.exec.state_task import lambda_eval_utils
from moto.stepfunctions.parser.asl.component.state.exec.state_task.service.state_task_service_sfn import (
    StateTaskServiceSfn,
)
from moto.stepfunctions.parser.asl.component.state.wait.wait_function.wait_function import WaitFunction
from moto.stepfunctions.parser.asl.eval.environment import Environment
from moto.stepfunctions.parser.asl.eval.event.event_detail import EventDetails
from moto.stepfunctions.parser.asl.eval.program_state import ProgramStopped
from moto.stepfunctions.parser.asl.utils.boto_client import boto_client_for as _moto_boto_client_for
from moto.stepfunctions.parser.backend.execution import BaseExecutionWorkerCommunication
from moto.stepfunctions.parser.utils import TMP_THREADS
from moto.stepfunctions.responses import StepFunctionResponse

from pg2rds.tls import SCRATCH_DIR_VARIABLE
from pg2rds_cli.collector import paused
from pg2rds_emulator import asl_programs, event_delivery, function_roles, moto_dms, moto_speedups
from pg2rds_emulator.account_close import INVOCATIONS, quiesce, refuse_once_closed
from pg2rds_emulator.dms_engine import DmsEngine

PROJECT_ROOT = Path(__file__).resolve().parents[2]
TEMPLATE = PROJECT_ROOT / "template.yaml"
DEFINITION = PROJECT_ROOT / "statemachine" / "migration.asl.json"
log = logging.getLogger(__name__)

REGION = "us-east-1"
ACCOUNT_ID = "123456789012"
STACK_NAME = "pg2rds"

_time_scale = 1.0


# -- the template ------------------------------------------------------------------------------------------
class _CfnLoader(getattr(yaml, "CSafeLoader", yaml.SafeLoader)):  # type: ignore[misc]
    """Reads CloudFormation's short-form intrinsics (``!Ref``, ``!GetAtt``...) as plain ``{tag: value}``.

    LibYAML's scanner when PyYAML has it (the same documents, several times faster than the pure-Python
    one: every local run reads the template)."""


def _intrinsic(loader: yaml.SafeLoader, tag_suffix: str, node: yaml.Node) -> dict[str, Any]:
    if isinstance(node, yaml.ScalarNode):
        value: Any = loader.construct_scalar(node)
    elif isinstance(node, yaml.SequenceNode):
        value = loader.construct_sequence(node, deep=True)
    else:
        value = loader.construct_mapping(node, deep=True)
    return {tag_suffix: value}


_CfnLoader.add_multi_constructor("!", _intrinsic)


def template_document(template: Path = TEMPLATE) -> dict[str, Any]:
    return yaml.load(template.read_text(), Loader=_CfnLoader)


def _of_type(resources: dict[str, Any], kind: str) -> list[tuple[str, dict[str, Any]]]:
    return [(logical_id, resource) for logical_id, resource in resources.items() if resource["Type"] == kind]


@dataclass(frozen=True)
class FunctionDef:
    logical_id: str
    code_dir: Path
    handler: str


def template_functions(
    template: Path = TEMPLATE, document: dict[str, Any] | None = None
) -> list[FunctionDef]:
    """The ``AWS::Serverless::Function`` resources of the template (``document``, when already read), in
    template order."""
    if document is None:
        document = template_document(template)
    default_handler = document.get("Globals", {}).get("Function", {}).get("Handler", "app.handler")
    functions = []
    for logical_id, resource in document["Resources"].items():
        if resource["Type"] != "AWS::Serverless::Function":
            continue
        props = resource["Properties"]
        functions.append(
            FunctionDef(logical_id, PROJECT_ROOT / props["CodeUri"], props.get("Handler", default_handler))
        )
    return functions


# -- Lambda invocations, in process -----------------------------------------------------------------------
@dataclass
class _LambdaContext:
    """The attributes of the Lambda runtime's context object that powertools reads."""

    function_name: str
    invoked_function_arn: str
    memory_limit_in_mb: int = 256
    aws_request_id: str = ""
    function_version: str = "$LATEST"


def _load_handler(function: FunctionDef) -> Any:
    module_file, attribute = function.handler.rsplit(".", 1)
    path = function.code_dir / f"{module_file}.py"
    spec = importlib.util.spec_from_file_location(f"pg2rds_function_{function.code_dir.name}", path)
    assert spec and spec.loader, path
    module: ModuleType = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return getattr(module, attribute)


_handlers: dict[str, Any] = {}


def _invoke_in_process(
    self: LambdaSimpleBackend,
    function_name: str,
    qualifier: str | None,
    body: Any,
    headers: Any,
    response_headers: Any,
) -> bytes:
    """Replaces moto's "simple" Lambda: run our handler, answer like the Lambda runtime does."""
    fn = self.get_function(function_name, qualifier)
    handler = _handlers.get(fn.function_name)
    if handler is None:
        raise KeyError(f"no in-process handler for Lambda function {fn.function_name}")
    event = json.loads(body) if body else {}
    request_id = str(uuid.uuid4())
    context = _LambdaContext(fn.function_name, fn.function_arn, aws_request_id=request_id)
    try:
        with INVOCATIONS.running(fn.function_name), function_roles.acting_as(fn.function_name):
            return json.dumps(handler(event, context)).encode()
    except Exception as error:  # the runtime reports any exception as an "Unhandled" function error
        response_headers["x-amz-function-error"] = "Unhandled"
        payload = {
            "errorMessage": str(error),
            "errorType": type(error).__name__,
            "requestId": request_id,
            "stackTrace": traceback.format_tb(error.__traceback__),
        }
        return json.dumps(payload).encode()


# -- compressed clock ---------------------------------------------------------------------------------------
def _scaled_wait_interval(self: WaitFunction, env: Any, wait_seconds: int) -> None:
    if wait_seconds > 0:
        env.program_state_event.wait(wait_seconds * _time_scale)


class _ScaledTime:
    """Stands in for the ``time`` module inside moto's retrier and botocore's endpoint, so Retry intervals
    and botocore's own backoff between attempts (a throttled call) follow the clock too."""

    def __getattr__(self, name: str) -> Any:
        import time

        return getattr(time, name)

    @staticmethod
    def sleep(seconds: float) -> None:
        import time

        time.sleep(seconds * _time_scale)


def _scaled_program_eval(self: Program, env: Any) -> None:
    """moto's ``Program.eval`` with the execution's ``TimeoutSeconds`` on the compressed clock, ending as
    soon as the execution is stopped.

    ``StopExecution`` ends an execution at once (ABORTED, its end event sent) while a Lambda it invoked
    goes on running: Step Functions does not stop a running invocation. moto's interpreter, left alone,
    would end the execution only once that invocation has returned, and then as its outcome says."""
    timeout = self.timeout_seconds.timeout_seconds * _time_scale if self.timeout_seconds else None
    deadline = None if timeout is None else time.monotonic() + timeout
    env.next_state_name = self.start_at.start_at_name
    worker = threading.Thread(target=EvalComponent.eval, args=(self, env), daemon=True)
    TMP_THREADS.append(worker)
    worker.start()
    while worker.is_alive():
        if isinstance(env.program_state(), ProgramStopped):
            return  # the invocation under way goes on in the worker; the execution has ended
        if deadline is not None and time.monotonic() >= deadline:
            env.set_timed_out()
            return
        worker.join(0.05)


_original_set_error = Environment.set_error


def _set_error_unless_stopped(self: Environment, error: Any) -> None:
    """A stopped execution stays ABORTED, as in Step Functions. moto lets a later error overwrite the stop:
    the state that was running when StopExecution came goes on in its worker, and moto's components skip
    their bodies once the execution is stopped, so that state then fails on what it finds on the stack
    (a Lambda state: "'dict' object has no attribute 'region'"), and the execution ended FAILED with it
    whenever that happened before the stop was seen."""
    with self._state_mutex:  # an RLock: the original takes it again
        if isinstance(self._program_state, ProgramStopped):
            return
        _original_set_error(self, error)


def set_time_scale(scale: float) -> None:
    global _time_scale
    _time_scale = scale


def _send_task_failure(self: StepFunctionResponse) -> Any:
    """moto's response layer drops SendTaskFailure's ``cause`` (its backend takes it): pass it on."""
    self.stepfunction_backend.send_task_failure(
        self._get_param("taskToken"), error=self._get_param("error"), cause=self._get_param("cause")
    )
    return EmptyResult()


_original_sfn_task = StateTaskServiceSfn._eval_service_task


def _sfn_task_with_api_names(self: StateTaskServiceSfn, **kwargs: Any) -> Any:
    """moto hands ``states:startExecution``'s ASL names (``StateMachineArn``) to boto3, which wants the
    API's (``stateMachineArn``), and returns boto3's names (``executionArn``) where Step Functions returns
    ``ExecutionArn``. Real Step Functions maps both ways; so does this. Used by the continuation state."""
    parameters = kwargs.pop("normalised_parameters")
    api_parameters = {key[:1].lower() + key[1:]: value for key, value in parameters.items()}
    _original_sfn_task(self, normalised_parameters=api_parameters, **kwargs)
    env = kwargs["env"]
    response = env.stack.pop()
    env.stack.append({key[:1].upper() + key[1:]: value for key, value in response.items()})


_original_map_run = DistributedIterationComponent._map_run

#: The cause this emulator gives a Map Run failed by a child execution (Step Functions' own text is generic
#: too: the child's error and cause stay in the child's history).
MAP_RUN_FAILED_CAUSE = "a child execution of the Map Run failed: the tolerated failure threshold was exceeded"


def _map_run_failing_as_step_functions(
    self: DistributedIterationComponent, env: Any, eval_input: Any
) -> None:
    """moto lets a Distributed Map succeed whatever its child executions do (a failed child's result is
    ``null``); Step Functions fails the Map Run once more children failed than it tolerates (none by
    default), with ``States.ExceedToleratedFailureThreshold`` and a generic cause, the child's own error
    staying in the child's history. So does this: a state machine that needs a child's error must carry
    it out itself."""
    _original_map_run(self, env=env, eval_input=eval_input)
    items = eval_input.map_run_record.item_counter
    failed, total = items.failed.get(), items.total.get()
    if (
        failed <= eval_input.tolerated_failure_count
        and failed * 100 <= eval_input.tolerated_failure_percentage * total
    ):
        return
    env.stack.pop()  # the Map Run's results: a failed Map state has none
    name = StatesErrorNameType.StatesExceedToleratedFailureThreshold
    details = ExecutionFailedEventDetails(error=name.to_name(), cause=MAP_RUN_FAILED_CAUSE)
    raise FailureEventException(
        failure_event=FailureEvent(
            env=env,
            error_name=StatesErrorName(typ=name),
            event_type=HistoryEventType.MapIterationFailed,
            event_details=EventDetails(executionFailedEventDetails=details),
        )
    )


def _start_execution(self: StepFunctionResponse) -> Any:
    """moto names every unnamed execution "None" (so a second one "already exists"); Step Functions
    gives each a UUID. Otherwise as moto's."""
    execution = self.stepfunction_backend.start_execution(
        self._get_param("stateMachineArn"),
        self._get_param("name") or str(uuid.uuid4()),
        self._get_param("input", if_none="{}"),
    )
    return ActionResult({"executionArn": execution.execution_arn, "startDate": execution.start_date})


def _get_execution_history(self: StepFunctionResponse) -> Any:
    """moto answers with the whole history, oldest first, whatever is asked. Step Functions pages it
    (``maxResults`` up to 1,000, 100 when unset, ``nextToken``) and reads newest first on ``reverseOrder``;
    so does this, so a client that reads only the newest page runs here as it would on AWS. The token is
    the id of the last event returned, so events recorded between two pages never shift a page.

    moto deep-copies the whole history for every read; only the page is read here, so a read costs the
    same whatever the history's length, as on AWS. The page is written as JSON directly: moto's serializer
    walks the API model for every field, about 1 ms per event here, and a local run's watch reads a page
    twice a second on the cores the run's databases share (tests/unit/test_watch_reads.py checks that
    botocore reads the same events from both)."""
    execution = self.stepfunction_backend.describe_execution(self._get_param("executionArn"))
    newest_first = bool(self._get_param("reverseOrder"))
    after = self._get_param("nextToken")
    size = int(self._get_param("maxResults") or 100)
    worker = execution.exec_worker
    manager = worker.env.event_manager if worker is not None and worker.env is not None else None
    if manager is None:  # not started yet
        return json.dumps({"events": []})
    last = int(after) if after else None
    with manager._mutex:
        ordered = reversed(manager._history_event_list) if newest_first else iter(manager._history_event_list)
        wanted = (e for e in ordered if last is None or (e["id"] < last if newest_first else e["id"] > last))
        chosen = list(itertools.islice(wanted, size + 1))
        page: dict[str, Any] = {"events": [_with_epoch_timestamp(event) for event in chosen[:size]]}
        if len(chosen) > size:
            page["nextToken"] = str(chosen[size - 1]["id"])
        return json.dumps(page)


def _with_epoch_timestamp(event: dict[str, Any]) -> dict[str, Any]:
    """The event with its timestamp in seconds since the epoch, as Step Functions' JSON protocol sends it.
    moto keeps it as ISO 8601 text, which botocore reads with dateutil's parser: about 0.2 ms per event,
    every event of every page a watcher reads; a number it reads with ``datetime.fromtimestamp``."""
    stamp = event.get("timestamp")
    if not isinstance(stamp, str):
        return event
    return {**event, "timestamp": datetime.fromisoformat(stamp).timestamp()}


#: One Lambda client per region for the interpreter's invocations (moto builds a boto3 client for each,
#: 20-40 ms of CPU: a tenth of a second per poll loop turn here). Its arguments never vary (moto's fixed
#: "ak" key, whatever the state's credentials), and a boto3 client may be shared between threads.
_lambda_clients: dict[str, Any] = {}
_lambda_clients_lock = threading.Lock()


def _lambda_client_for(region: str, service: str, state_credentials: Any = None) -> Any:
    """The interpreter's client of ``service``; none sends anything once the account is closed."""
    if service != "lambda":
        client = _moto_boto_client_for(region=region, service=service, state_credentials=state_credentials)
        client.meta.events.register("before-send", refuse_once_closed)
        return client
    with _lambda_clients_lock:
        client = _lambda_clients.get(region)
        if client is None:
            client = _lambda_clients[region] = _moto_boto_client_for(region=region, service=service)
            client.meta.events.register("before-send", refuse_once_closed)
        return client


_original_enrich_response = BaseResponse._enrich_response


def _enrich_response_scanning_only_xml(headers: dict[str, str], body: Any) -> tuple[dict[str, str], Any]:
    """moto puts each response's request id into its XML ``<RequestId>`` with a greedy look-behind regex run
    over every body: it replaces all that lies between the body's first ``<RequestId>`` and its last
    ``</RequestId>``. Over a JSON body that is the caller's data wherever a state's input, an output or a
    cause quotes an AWS XML error: the text was altered, and a history page holding two such events lost
    the events between them. It also scanned every JSON payload and history page character by character
    (0.1 s of CPU per local run at pgbench scale 50). So only an XML body (the query protocols: SNS, IAM)
    gets the id; a JSON one is left as it is. The status and request id headers are set as moto sets
    them."""
    if isinstance(body, str) and not body.lstrip().startswith("<"):
        return _original_enrich_response(headers, "")[0], body
    return _original_enrich_response(headers, body)


#: Notified whenever an execution of the account ends (its status and last history event recorded).
_an_execution_ended = threading.Condition()
_original_terminated = BaseExecutionWorkerCommunication.terminated


def _terminated_and_told(self: BaseExecutionWorkerCommunication) -> None:
    """moto records the execution's end; then whoever sleeps in :meth:`EmbeddedAws.sleep_until_an_end` is
    woken, so a local run sees its end at once rather than up to a watch interval later."""
    _original_terminated(self)
    with _an_execution_ended:
        _an_execution_ended.notify_all()


def _install_patches() -> None:
    BaseResponse._enrich_response = staticmethod(_enrich_response_scanning_only_xml)  # type: ignore[method-assign]
    BaseExecutionWorkerCommunication.terminated = _terminated_and_told  # type: ignore[method-assign]
    asl_programs.install()
    StepFunctionResponse.get_execution_history = _get_execution_history  # type: ignore[method-assign]
    lambda_eval_utils.boto_client_for = _lambda_client_for
    StepFunctionResponse.start_execution = _start_execution  # type: ignore[method-assign]
    StateTaskServiceSfn._eval_service_task = _sfn_task_with_api_names  # type: ignore[method-assign]
    DistributedIterationComponent._map_run = _map_run_failing_as_step_functions  # type: ignore[method-assign]
    LambdaSimpleBackend.invoke = _invoke_in_process  # type: ignore[method-assign]
    StepFunctionResponse.send_task_failure = _send_task_failure  # type: ignore[method-assign]
    WaitFunction._wait_interval = _scaled_wait_interval  # type: ignore[method-assign]
    Environment.set_error = _set_error_unless_stopped  # type: ignore[method-assign]
    Program.eval = _scaled_program_eval  # type: ignore[method-assign]
    retrier_decl.time = _ScaledTime()  # type: ignore[assignment]
    botocore.endpoint.time = _ScaledTime()  # type: ignore[assignment]
    event_delivery.install()
    moto_speedups.install()


#: botocore's service models, read and parsed once per process: moto gives each mock a new boto3 default
#: session, whose own loader would read the JSON models again for every client it builds (0.3 s of a warm
#: start-up here, in every test and every local run of a process).
_service_models = botocore.loaders.create_loader()


def _share_service_models() -> None:
    """The mock's new default session, with the process's loaded service models (static data)."""
    boto3.setup_default_session()
    boto3.DEFAULT_SESSION._session.register_component("data_loader", _service_models)  # type: ignore[union-attr]


def _libpq_setting(name: str) -> bool:
    """libpq's environment variables (``PGHOST``, ``PGOPTIONS``, ``PGPASSWORD``...), not pg2rds's own
    (``PG2RDS_*``)."""
    return name.startswith("PG") and not name.startswith("PG2RDS")


# -- the embedded account ------------------------------------------------------------------------------------
class EmbeddedAws:
    """``with EmbeddedAws(engine) as aws:`` deploys the app into an in-process AWS account."""

    def __init__(self, engine: DmsEngine | None = None, time_scale: float = 1.0) -> None:
        self.engine = engine
        self.time_scale = time_scale
        self._mock = mock_aws(
            config={"stepfunctions": {"execute_state_machine": True}, "lambda": {"use_docker": False}}
        )
        self.state_machine_arn = ""
        self.function_arns: dict[str, str] = {}
        #: Logical id → ARN of what the template declares (``Ref`` of a table gives ``resource_names``).
        self.resource_arns: dict[str, str] = {}
        self.resource_names: dict[str, str] = {}
        self._saved_env: dict[str, str | None] = {}
        self._clients: dict[str, Any] = {}
        self._clients_lock = threading.Lock()
        self._scratch: tempfile.TemporaryDirectory[str] | None = None

    def __enter__(self) -> "EmbeddedAws":
        self._scratch = tempfile.TemporaryDirectory(prefix="pg2rds-account-")
        # The shell's AWS settings are another account's: none applies to this one, as its credentials do
        # not. An endpoint (`pg2rds serve --local` tells its user to export one) took every call; FIPS or
        # dual-stack endpoints (AWS_USE_FIPS_ENDPOINT, a profile's use_dualstack_endpoint) are hosts moto
        # does not answer for, so the calls failed or left the machine; a profile the shell names that the
        # embedded account's empty configuration lacks stopped the start-up. Likewise the shell's libpq
        # settings (PGOPTIONS, PGSERVICE, PGCLIENTENCODING...): the functions and DMS run in AWS, where they
        # are not, and a statement_timeout in PGOPTIONS failed the stand-in's full load. Restored on exit.
        self._unset_env(*[key for key in os.environ if key.startswith("AWS_") or _libpq_setting(key)])
        no_file = Path(self._scratch.name) / "none"
        self._set_env(
            AWS_CONFIG_FILE=str(no_file),
            AWS_SHARED_CREDENTIALS_FILE=str(no_file),
            AWS_ACCESS_KEY_ID="embedded",
            AWS_SECRET_ACCESS_KEY="embedded",
            AWS_SESSION_TOKEN="embedded",
            AWS_DEFAULT_REGION=REGION,
            AWS_REGION=REGION,
            POWERTOOLS_TRACE_DISABLED="true",
            MOTO_ACCOUNT_ID=ACCOUNT_ID,
            # the files the functions and the stand-in write (CA bundles) go with the account
            **{SCRATCH_DIR_VARIABLE: self._scratch.name},
        )
        self._mock.start()
        event_delivery.open_account()
        INVOCATIONS.reopen()
        _share_service_models()
        _install_patches()
        # moto's interpreter logs every caught error at ERROR and the handlers log each phase at INFO;
        # the execution history already holds both, and the CLI shows them.
        logging.getLogger("moto.stepfunctions.parser").setLevel(logging.CRITICAL)
        set_time_scale(self.time_scale)
        moto_dms.install(self.engine)
        with paused():  # moto's and botocore's first use of each service: long-lived objects, no garbage
            self.deploy()
        logging.getLogger("pg2rds").setLevel(os.environ.get("PG2RDS_LOCAL_LOG_LEVEL", "WARNING"))
        return self

    def __exit__(self, *exc: object) -> None:
        try:
            quiesce(self.client("stepfunctions"))  # nothing of the account goes on once it is gone
        except Exception:
            log.exception("ending the embedded account's executions failed")
        # the account's DMS tasks go with it: none is left streaming from (holding) a slot on the source,
        # also when the block ends with an error before its owner stopped them
        shutdown = getattr(self.engine, "shutdown", None)
        if shutdown is not None:
            shutdown()
        function_roles.clear()
        self._mock.stop()
        moto_dms.set_engine(None)
        for key, value in self._saved_env.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
        if self._scratch is not None:
            self._scratch.cleanup()

    def _unset_env(self, *keys: str) -> None:
        for key in keys:
            self._saved_env.setdefault(key, os.environ.get(key))
            os.environ.pop(key, None)

    def _set_env(self, **values: str) -> None:
        for key, value in values.items():
            self._saved_env.setdefault(key, os.environ.get(key))
            os.environ[key] = value

    @staticmethod
    def sleep_until_an_end(seconds: float) -> None:
        """Sleep ``seconds``, or until an execution ends if one does sooner (then a watcher reads at once:
        a child execution of a Map Run wakes it too, for one read more). A watcher's ``sleep``."""
        with _an_execution_ended:
            _an_execution_ended.wait(seconds)

    def client(self, service: str) -> Any:
        """The operator's client of ``service``, one per account and service (building a botocore client
        reads and copies its service model: tens of milliseconds each, and deploying asks for one per
        template resource). Credentials are chosen when each request is signed (``function_roles``), so
        sharing a client changes no caller's identity."""
        with self._clients_lock:
            if service not in self._clients:
                self._clients[service] = boto3.client(service, region_name=REGION)
            return self._clients[service]

    def deploy(self) -> None:
        """What ``sam deploy`` creates that the run needs, from the template: roles, functions, topics,
        tables, state machines, event buses and rules (with their targets)."""
        document = template_document()  # read once: everything below resolves against it
        iam = self.client("iam")
        trust = json.dumps({"Version": "2012-10-17", "Statement": []})
        role_arn = iam.create_role(RoleName="pg2rds-local", AssumeRolePolicyDocument=trust)["Role"]["Arn"]
        access_role = iam.create_role(RoleName="pg2rds-dms-secrets-access", AssumeRolePolicyDocument=trust)
        self._set_env(DMS_SECRETS_ACCESS_ROLE_ARN=access_role["Role"]["Arn"])
        self.resource_arns["DmsSecretsAccessRole"] = access_role["Role"]["Arn"]
        lam = self.client("lambda")
        for function in template_functions(document=document):
            name = f"pg2rds-{function.logical_id}"
            arn = lam.create_function(
                FunctionName=name,
                Runtime="python3.12",
                Role=role_arn,
                Handler=function.handler,
                Code={"ZipFile": b"in-process"},
                Timeout=120,
            )["FunctionArn"]
            _handlers[name] = _load_handler(function)
            self.function_arns[function.logical_id] = arn
        self.resource_arns.update(self.function_arns)
        resources = document["Resources"]
        for logical_id, resource in _of_type(resources, "AWS::DynamoDB::Table"):
            self._create_table(logical_id, self._resolve(resource["Properties"], document))
        self._set_function_environment(document)
        for logical_id, _topic in _of_type(resources, "AWS::SNS::Topic"):
            name = "pg2rds-notifications" if logical_id == "NotificationTopic" else f"pg2rds-{logical_id}"
            self.resource_arns[logical_id] = self.client("sns").create_topic(Name=name)["TopicArn"]
        for logical_id, resource in _of_type(resources, "AWS::Events::EventBus"):
            name = self._resolve(resource["Properties"]["Name"], document)
            self.resource_arns[logical_id] = self.client("events").create_event_bus(Name=name)["EventBusArn"]
            self.resource_names[logical_id] = name
        for logical_id, resource in _of_type(resources, "AWS::Serverless::StateMachine"):
            self._create_state_machine(logical_id, resource["Properties"], role_arn, document)
        self.state_machine_arn = self.resource_arns["MigrationStateMachine"]
        for logical_id, resource in resources.items():
            self._create_rules(logical_id, resource, document)

    def _create_table(self, logical_id: str, props: dict[str, Any]) -> None:
        name = f"pg2rds-{logical_id}"
        self.client("dynamodb").create_table(
            TableName=name,
            AttributeDefinitions=props["AttributeDefinitions"],
            KeySchema=props["KeySchema"],
            BillingMode=props.get("BillingMode", "PAY_PER_REQUEST"),
        )
        self.resource_names[logical_id] = name
        self.resource_arns[logical_id] = f"arn:aws:dynamodb:{REGION}:{ACCOUNT_ID}:table/{name}"

    def _set_function_environment(self, document: dict) -> None:
        """The functions' environment (Globals) that names resources of the account (handlers run in this
        process, so it is this process's environment while the account exists)."""
        function_globals = document.get("Globals", {}).get("Function", {})
        variables = function_globals.get("Environment", {}).get("Variables", {})
        for key, value in variables.items():
            if isinstance(value, dict) and not key.startswith("POWERTOOLS_"):
                self._set_env(**{key: str(self._resolve(value, document))})

    def _create_state_machine(
        self, logical_id: str, props: dict[str, Any], role_arn: str, document: dict
    ) -> None:
        definition = (PROJECT_ROOT / props["DefinitionUri"]).read_text()
        for key, value in props.get("DefinitionSubstitutions", {}).items():
            definition = definition.replace("${" + key + "}", self._resolve(value, document))
        name = self._resolve(props.get("Name", logical_id), document)
        self.resource_arns[logical_id] = self.client("stepfunctions").create_state_machine(
            name=name, definition=definition, roleArn=role_arn
        )["stateMachineArn"]

    def _create_rules(self, logical_id: str, resource: dict[str, Any], document: dict) -> None:
        """A resource's SAM ``EventBridgeRule`` events, or an ``AWS::Events::Rule`` and its targets."""
        events = self.client("events")
        rules: list[tuple[str, dict[str, Any], list[dict[str, Any]]]] = []
        if resource["Type"] == "AWS::Events::Rule":
            props = self._resolve(resource["Properties"], document)
            targets = [{k: v for k, v in t.items() if k != "RoleArn"} for t in props.get("Targets", [])]
            rules.append((logical_id, props, targets))
        for event_id, event in (resource.get("Properties", {}).get("Events") or {}).items():
            if event.get("Type") not in ("EventBridgeRule", "CloudWatchEvent"):
                continue
            props = self._resolve(event["Properties"], document)
            target = {"Id": event_id, "Arn": self.resource_arns[logical_id]}
            if "InputPath" in props:
                target["InputPath"] = props["InputPath"]
            if "Input" in props:
                target["Input"] = props["Input"]
            rules.append((f"{logical_id}{event_id}", {**props, "EventPattern": props["Pattern"]}, [target]))
        for name, props, targets in rules:
            bus = {"EventBusName": props["EventBusName"]} if props.get("EventBusName") else {}
            events.put_rule(
                Name=f"pg2rds-{name}",
                EventPattern=json.dumps(props["EventPattern"]),
                State=props.get("State", "ENABLED"),
                **bus,
            )
            events.put_targets(Rule=f"pg2rds-{name}", Targets=targets, **bus)

    def _resolve(self, value: Any, document: dict) -> Any:
        """CloudFormation's ``Ref``/``GetAtt``/``Sub`` for what the embedded account holds (``Ref`` of a
        resource the account does not model, such as a role, gives its logical id's parameter default or
        "")."""
        if isinstance(value, list):
            return [self._resolve(item, document) for item in value]
        if not isinstance(value, dict):
            return value
        if set(value) == {"Ref"}:
            return self._ref(value["Ref"], document)
        if set(value) == {"GetAtt"}:
            target = value["GetAtt"]
            logical_id, attribute = target if isinstance(target, list) else target.split(".", 1)
            if attribute == "TopicName":
                return self.resource_arns[logical_id].rsplit(":", 1)[-1]
            return self.resource_arns[logical_id]
        if set(value) == {"Sub"} and isinstance(value["Sub"], str):
            return re.sub(r"\$\{([^}]+)\}", lambda m: str(self._ref(m.group(1), document)), value["Sub"])
        return {key: self._resolve(item, document) for key, item in value.items()}

    def _ref(self, name: str, document: dict) -> Any:
        pseudo = {
            "AWS::Region": REGION,
            "AWS::AccountId": ACCOUNT_ID,
            "AWS::Partition": "aws",
            "AWS::StackName": STACK_NAME,
        }
        if name in pseudo:
            return pseudo[name]
        if name in self.resource_names:  # what Ref gives for a table or a bus
            return self.resource_names[name]
        if name in self.resource_arns:
            return self.resource_arns[name]
        return document.get("Parameters", {}).get(name, {}).get("Default", "")

    def put_secret(self, name: str, secret: dict[str, Any]) -> str:
        """Store a database secret (see :func:`database_secret`); returns its ARN."""
        return self.client("secretsmanager").create_secret(Name=name, SecretString=json.dumps(secret))["ARN"]


def database_secret(host: str, port: int, dbname: str, username: str, password: str) -> dict[str, Any]:
    """A secret as RDS and Secrets Manager lay out a PostgreSQL database's, which is what DMS reads."""
    return {
        "engine": "postgres",
        "host": host,
        "port": port,
        "dbname": dbname,
        "username": username,
        "password": password,
    }
