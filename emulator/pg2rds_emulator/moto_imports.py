"""moto's Step Functions interpreter without moto's EC2, which nothing here uses and which took a third of a
local run's start.

The interpreter imports every service integration it has, Batch's among them; Batch's integration needs
only ``moto.batch.utils`` (an enum of job states), but importing that runs ``moto/batch/__init__.py``,
which imports Batch's models and with them EC2's: its regions, zones, AMIs and instance types, read from
JSON files at import, 1.0 s of a 2.2 s import on this machine (``python -X importtime``), paid by every
``pg2rds run --local``, ``pg2rds demo`` and test process.

:func:`defer_batch_package` puts a finder first on ``sys.meta_path`` that gives ``moto.batch`` a loader
whose package runs its ``__init__`` only when one of its own names is first used (``batch_backends``, if a
mock ever serves Batch): ``moto.batch.utils`` then imports alone. Installing the finder imports nothing,
so the CLI's start (``pg2rds status``) stays as light.
"""

import importlib.abc
import importlib.machinery
import sys
import types
from collections.abc import Sequence
from importlib.machinery import ModuleSpec

PACKAGE = "moto.batch"


class _DeferredPackage(types.ModuleType):
    """A package whose ``__init__`` runs at the first use of a name it defines; its submodules import as
    usual meanwhile (``__path__`` is set)."""

    def __getattr__(self, name: str) -> object:
        if name.startswith("__"):
            raise AttributeError(name)
        loader = self.__spec__.loader if self.__spec__ else None
        assert isinstance(loader, _DeferredLoader)
        self.__class__ = types.ModuleType  # from now on an ordinary module: no second run
        loader.real.exec_module(self)
        return getattr(self, name)


class _DeferredLoader(importlib.abc.Loader):
    def __init__(self, real: importlib.abc.Loader) -> None:
        self.real = real

    def create_module(self, spec: ModuleSpec) -> types.ModuleType:
        return _DeferredPackage(spec.name)

    def exec_module(self, module: types.ModuleType) -> None:
        """Nothing yet: :class:`_DeferredPackage` runs the real ``__init__`` when a name of it is used."""


class _DeferringFinder(importlib.abc.MetaPathFinder):
    """Finds :data:`PACKAGE` as the file system does, and gives it the deferring loader."""

    def find_spec(
        self, name: str, path: Sequence[str] | None, target: types.ModuleType | None = None
    ) -> ModuleSpec | None:
        if name != PACKAGE:
            return None
        real = importlib.machinery.PathFinder.find_spec(name, path)
        if real is None or real.loader is None or real.submodule_search_locations is None:
            return real
        spec = ModuleSpec(name, _DeferredLoader(real.loader), origin=real.origin, is_package=True)
        spec.submodule_search_locations = real.submodule_search_locations
        spec.has_location = True
        return spec


def defer_batch_package() -> None:
    """Have :data:`PACKAGE` imported deferred, unless it is imported already. Nothing is imported here:
    the finder acts when moto's interpreter imports it."""
    if PACKAGE in sys.modules or any(isinstance(finder, _DeferringFinder) for finder in sys.meta_path):
        return
    sys.meta_path.insert(0, _DeferringFinder())
