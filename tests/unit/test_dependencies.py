"""Dependencies declared once and honestly: what each package imports is what pyproject.toml declares for
it, and the Lambda layer's requirements.txt is exactly the layer's share of it."""

import ast
import re
import sys
import tomllib
from importlib.metadata import packages_distributions
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
#: In the Lambda Python runtime already; the layer does not ship them.
LAMBDA_RUNTIME = {"boto3", "botocore"}
FIRST_PARTY = {"pg2rds", "pg2rds_cli", "pg2rds_emulator"}


def _name(requirement: str) -> str:
    return re.split(r"[\[<>=!~; ]", requirement, maxsplit=1)[0].lower().replace("_", "-")


class _RuntimeImports(ast.NodeVisitor):
    """Top-level module names imported at run time (``if TYPE_CHECKING:`` blocks are the type checker's)."""

    def __init__(self) -> None:
        self.found: set[str] = set()

    def visit_If(self, node: ast.If) -> None:
        if isinstance(node.test, ast.Name) and node.test.id == "TYPE_CHECKING":
            for child in node.orelse:
                self.visit(child)
            return
        self.generic_visit(node)

    def visit_Import(self, node: ast.Import) -> None:
        self.found |= {alias.name.split(".")[0] for alias in node.names}

    def visit_ImportFrom(self, node: ast.ImportFrom) -> None:
        if node.level == 0 and node.module:
            self.found.add(node.module.split(".")[0])


def _imports(folder: Path) -> set[str]:
    """Modules imported at run time anywhere under ``folder`` that are neither stdlib nor ours."""
    visitor = _RuntimeImports()
    for path in folder.rglob("*.py"):
        visitor.visit(ast.parse(path.read_text()))
    return visitor.found - set(sys.stdlib_module_names) - FIRST_PARTY - {"__future__"}


def _distributions(modules: set[str]) -> set[str]:
    mapping = packages_distributions()
    missing = {module for module in modules if module not in mapping}
    assert not missing, f"imported but not installed: {missing}"
    return {_name(mapping[module][0]) for module in modules}


def _declared(*extras: str) -> set[str]:
    names = {_name(r) for r in PYPROJECT["dependencies"]}
    for extra in extras:
        names |= {_name(r) for r in PYPROJECT["optional-dependencies"][extra]}
    return names


def test_layer_requirements_are_exactly_what_the_layer_imports() -> None:
    lines = (ROOT / "layers/pg2rds/requirements.txt").read_text().splitlines()
    requirements = [line.strip() for line in lines if line.strip() and not line.startswith("#")]
    imported = _distributions(_imports(ROOT / "layers/pg2rds/pg2rds")) - LAMBDA_RUNTIME
    assert {_name(r) for r in requirements} == imported
    # and each line is declared, with the same bounds, as a dependency of the package
    assert set(requirements) <= set(PYPROJECT["dependencies"])


@pytest.mark.parametrize(
    ("folder", "extras"),
    [("functions", ()), ("cli/pg2rds_cli", ()), ("emulator/pg2rds_emulator", ("emulator",))],
)
def test_each_package_imports_only_what_it_declares(folder: str, extras: tuple[str, ...]) -> None:
    imported = _distributions(_imports(ROOT / folder))
    assert imported - _declared(*extras) == set()


def test_the_cli_never_imports_the_emulator() -> None:
    for path in (ROOT / "cli").rglob("*.py"):
        assert "pg2rds_emulator" not in path.read_text(), path


def test_test_tools_are_not_runtime_dependencies() -> None:
    assert {"pytest", "pytest-xdist", "moto"} & _declared() == set()
