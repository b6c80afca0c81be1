"""The emulator's imports: no cycles among its modules, and nothing it must not depend on."""

from __future__ import annotations

import ast
from graphlib import TopologicalSorter
from pathlib import Path

import airflow_batch_provider.emulator as emulator

PACKAGE = Path(emulator.__file__).parent
OUTSIDE_ALLOWED = tuple(
    f"airflow_batch_provider.{name}" for name in ("models", "rules", "jsonl", "exceptions")
)
FORBIDDEN_TOP_LEVEL = ("airflow", "openai", "requests")


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


SOURCES = {module_name(path): ast.parse(path.read_text()) for path in PACKAGE.rglob("*.py")}


def imported_modules(tree: ast.Module) -> set[str]:
    """The modules an import statement names, type-checking imports included.

    ``from package import module`` names the module only (the package's ``__init__`` runs
    too, but that is the package's business); ``from module import name`` names the module.
    """
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            submodules = {f"{node.module}.{alias.name}" for alias in node.names} & SOURCES.keys()
            names.update(submodules if len(submodules) == len(node.names) else {node.module, *submodules})
    return names


IMPORTS = {name: imported_modules(tree) for name, tree in SOURCES.items()}


def test_no_import_cycles_among_emulator_modules():
    graph = {name: (imports & SOURCES.keys()) - {name} for name, imports in IMPORTS.items()}

    TopologicalSorter(graph).prepare()  # raises CycleError naming the cycle


def test_the_emulator_imports_neither_airflow_nor_a_client():
    for name, imports in IMPORTS.items():
        for target in imports:
            assert target.split(".")[0] not in FORBIDDEN_TOP_LEVEL, f"{name} imports {target}"
            if target.startswith("airflow_batch_provider.") and not target.startswith(emulator.__name__):
                assert target.startswith(OUTSIDE_ALLOWED), f"{name} imports {target}"
