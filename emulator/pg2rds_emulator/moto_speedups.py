"""Work moto's Step Functions interpreter repeats for every state, done once or done more cheaply.

A local run shares two cores between its databases and the embedded account, so every millisecond of CPU
the interpreter spends on a state is taken from the rows being copied and checksummed. Nothing here changes
a result: each replacement computes what moto computes, for the data moto gives it.

- moto parses a JSONPath (``$.progress.wait_seconds``) with jsonpath-ng's parser, which builds its ply
  grammar tables anew for each expression, every time a state reads or writes its data: a few hundred
  parses per run, about 2 ms each. A parsed expression is immutable and depends on the text alone, so each
  text is parsed once.
- moto reads a service's model (to route and parse each request) through a model loader it creates anew
  for every model: each new loader first lists botocore's data directories (about 400 services, 20 ms)
  before reading the file, eight times in a local run's start-up. The loader is moto's own (botocore's
  with moto's extras) and holds static data, so moto gets one, which lists once and keeps what it read.
- moto deep-copies a state's data (a JSON document: dicts, lists, strings, numbers, booleans, None) each
  time a state reads its input or writes its output, with :func:`copy.deepcopy`, whose memo and dispatch
  cost about 1 µs per value: hundreds of thousands of values per run. :func:`json_copy` copies JSON values
  directly and hands anything else to :func:`copy.deepcopy`.
"""

import copy
import functools
from typing import Any

from moto.core import loaders as moto_loaders
from moto.core import utils as moto_utils
from moto.stepfunctions.parser.asl.component.common.path import result_path
from moto.stepfunctions.parser.asl.component.common.string import string_expression
from moto.stepfunctions.parser.asl.component.state.exec import execute_state
from moto.stepfunctions.parser.asl.eval import states
from moto.stepfunctions.parser.asl.utils import json_path

#: Distinct JSONPath texts kept parsed: the template's paths are a few dozen.
PARSED_PATHS_KEPT = 1024

_IMMUTABLE = (str, int, float, bool, type(None))


def json_copy(value: Any) -> Any:
    """A deep copy of a JSON value (what :func:`copy.deepcopy` returns for one), without deepcopy's memo;
    a value of any other type is copied by :func:`copy.deepcopy`."""
    kind = type(value)
    if kind is dict:
        return {key: json_copy(item) for key, item in value.items()}
    if kind is list:
        return [json_copy(item) for item in value]
    if kind in _IMMUTABLE:
        return value
    return copy.deepcopy(value)


class _JsonCopyModule:
    """Stands in for the ``copy`` module in the interpreter modules that copy a state's data."""

    @staticmethod
    def deepcopy(value: Any, memo: Any = None) -> Any:
        return json_copy(value)


#: The interpreter modules whose ``copy.deepcopy`` calls copy a state's data (its input, output, result,
#: context, or the evaluation stack of values handed to a state's thread).
COPYING_MODULES = (states, execute_state, string_expression, result_path)


#: The interpreter modules that parse JSONPath texts, and the parser each uses (jsonpath-ng's, with and
#: without its extensions), as moto imported them.
PARSING_MODULES = {json_path: json_path.parse, result_path: result_path.parse}
_cached_parsers = {
    module: functools.lru_cache(maxsize=PARSED_PATHS_KEPT)(parse) for module, parse in PARSING_MODULES.items()
}


#: moto's model loader, one per process (see the module's docstring).
_one_loader = functools.cache(moto_loaders.create_loader)


def install() -> None:
    moto_utils.create_loader = _one_loader  # type: ignore[attr-defined]
    for module, parse in _cached_parsers.items():
        module.parse = parse  # type: ignore[attr-defined]
    for module in COPYING_MODULES:
        module.copy = _JsonCopyModule()  # type: ignore[attr-defined]
