"""The package's layers, read from its source: no import cycles, arrows pointing one way, small parts."""

from __future__ import annotations

import ast
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from graphlib import TopologicalSorter
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[2] / "airflow_batch_provider"
NAME = PACKAGE.name


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {module_name(path): path for path in sorted(PACKAGE.rglob("*.py"))}


def imported_names(path: Path) -> Iterator[str]:
    """Every module ``path`` imports, at any depth (inside functions too), resolved to absolute names."""
    package = module_name(path) if path.name == "__init__.py" else module_name(path).rpartition(".")[0]
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
                base = f"{anchor}.{base}" if base else anchor
            for alias in node.names:
                # ``from package import module`` imports the module; ``from module import name``, the module.
                yield f"{base}.{alias.name}" if f"{base}.{alias.name}" in MODULES else base


def internal_imports(name: str) -> set[str]:
    """The package's own modules that module ``name`` imports."""
    found = set()
    for imported in imported_names(MODULES[name]):
        while imported and imported not in MODULES:
            imported = imported.rpartition(".")[0]
        if imported and imported != name:
            found.add(imported)
    return found


GRAPH = {name: internal_imports(name) for name in MODULES}


def reaches(start: str, goal_prefixes: tuple[str, ...]) -> list[str] | None:
    """A chain of imports from ``start`` to a module under one of ``goal_prefixes``, or None."""
    stack, seen = [[start]], {start}
    while stack:
        chain = stack.pop()
        for nxt in sorted(GRAPH[chain[-1]]):
            if nxt.startswith(goal_prefixes):
                return [*chain, nxt]
            if nxt not in seen:
                seen.add(nxt)
                stack.append([*chain, nxt])
    return None


def test_the_package_has_no_import_cycle() -> None:
    TopologicalSorter(GRAPH).prepare()  # raises CycleError naming the cycle


#: What DAGs and the UI use: nothing below them may import them.
ABOVE_THE_HOOK = tuple(
    f"{NAME}.{name}" for name in ("triggers", "sensors", "operators", "decorators", "plugins", "submission")
)


@pytest.mark.parametrize(
    ("layer", "forbidden"),
    [
        # The bottom: what everything uses.
        (f"{NAME}.models", (f"{NAME}.client", f"{NAME}.hooks", f"{NAME}.emulator", f"{NAME}.operators")),
        (f"{NAME}.rules", (f"{NAME}.client", f"{NAME}.hooks", f"{NAME}.emulator", f"{NAME}.operators")),
        (f"{NAME}.jsonl", (f"{NAME}.client", f"{NAME}.hooks", f"{NAME}.emulator", f"{NAME}.operators")),
        # The client knows nothing of Airflow's layers above it, nor of the emulator.
        (f"{NAME}.client", (*ABOVE_THE_HOOK, f"{NAME}.hooks", f"{NAME}.utils", f"{NAME}.emulator")),
        # The hook never reaches up to what uses it.
        (f"{NAME}.hooks", (*ABOVE_THE_HOOK, f"{NAME}.utils")),
        (
            f"{NAME}.triggers",
            (f"{NAME}.sensors", f"{NAME}.operators", f"{NAME}.decorators", f"{NAME}.plugins"),
        ),
        (f"{NAME}.utils", (f"{NAME}.triggers", f"{NAME}.sensors", f"{NAME}.operators", f"{NAME}.plugins")),
        # The emulator stands apart: models, rules and jsonl only.
        (f"{NAME}.emulator", (f"{NAME}.client", f"{NAME}.hooks", f"{NAME}.triggers", f"{NAME}.operators")),
        # The UI plugin sits above the hook: it reads batches, it runs no task.
        (
            f"{NAME}.plugins",
            (
                f"{NAME}.operators",
                f"{NAME}.sensors",
                f"{NAME}.triggers",
                f"{NAME}.decorators",
                f"{NAME}.emulator",
            ),
        ),
    ],
)
def test_arrows_point_one_way(layer: str, forbidden: tuple[str, ...]) -> None:
    for module in (name for name in MODULES if name == layer or name.startswith(layer + ".")):
        chain = reaches(module, forbidden)
        assert chain is None, f"{module} must not import {forbidden}: {' -> '.join(chain or [])}"


def test_nothing_imports_the_ui_plugin() -> None:
    users = {
        module: sorted(name for name in GRAPH[module] if name.startswith(f"{NAME}.plugins"))
        for module in MODULES
        if not module.startswith(f"{NAME}.plugins")
    }
    assert not {module: names for module, names in users.items() if names}


def test_the_plugin_module_leaves_the_api_server_unimported() -> None:
    """Every Airflow process imports plugins; only the API server needs the app (over 1 s of imports)."""
    script = (
        "import sys; import airflow_batch_provider.plugins.plugin; "
        "print(sorted(m for m in sys.modules if m.startswith(('airflow.api_fastapi', 'fastapi'))))"
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"


def dependencies(module: str) -> set[str]:
    """The package's modules that ``module`` imports, directly or through others."""
    found, todo = set(), [module]
    while todo:
        for nxt in GRAPH[todo.pop()] - found:
            found.add(nxt)
            todo.append(nxt)
    return found


@pytest.mark.parametrize("layer", ["models", "rules", "jsonl", "exceptions", "client", "emulator"])
def test_airflow_free_layers_never_import_airflow(layer: str) -> None:
    modules = {name for name in MODULES if name == f"{NAME}.{layer}" or name.startswith(f"{NAME}.{layer}.")}
    for module in modules.union(*(dependencies(name) for name in modules)):
        airflow = [name for name in imported_names(MODULES[module]) if name.split(".")[0] == "airflow"]
        assert not airflow, f"{module} (used by the {layer} layer) imports {airflow}"


def test_the_emulator_uses_only_models_rules_jsonl_and_exceptions() -> None:
    allowed = tuple(
        f"{NAME}.{name}" for name in ("models", "rules", "jsonl", "exceptions", "version", "emulator")
    )
    for module in (name for name in MODULES if name.startswith(f"{NAME}.emulator")):
        outside = [name for name in GRAPH[module] if not name.startswith(allowed) and name != NAME]
        assert not outside, f"{module} imports {outside}"
        clients = [
            name for name in imported_names(MODULES[module]) if name.split(".")[0] in ("openai", "requests")
        ]
        assert not clients, f"{module} imports {clients}"


def test_the_client_works_with_airflow_absent(emulator) -> None:
    script = textwrap.dedent(
        f"""
        import asyncio, importlib.abc, io, sys

        class NoAirflow(importlib.abc.MetaPathFinder):
            def find_spec(self, name, path, target=None):
                if name == "airflow" or name.startswith("airflow."):
                    raise ImportError(f"{{name}} is blocked")

        sys.meta_path.insert(0, NoAirflow())
        from airflow_batch_provider.client import AsyncBatchClient, BatchClient, ClientSettings

        settings = ClientSettings(base_url={emulator.base_url!r}, api_key={emulator.api_key!r})
        client = BatchClient(settings)
        line = b'{{"custom_id": "a", "method": "POST", "url": "/v1/embeddings", '
        line += b'"body": {{"model": "text-embedding-3-small", "input": "x"}}}}\\n'
        uploaded = client.upload_file(io.BytesIO(line), filename="in.jsonl")
        batch = client.create_batch(uploaded.id, "/v1/embeddings")
        again = asyncio.run(AsyncBatchClient(settings).get_batch(batch.id))
        assert again.id == batch.id
        assert not any(name == "airflow" or name.startswith("airflow.") for name in sys.modules)
        print("ok", batch.id)
        """
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("ok batch_")


def test_no_module_is_over_600_lines_and_no_function_over_80() -> None:
    too_long = []
    for name, path in MODULES.items():
        source = path.read_text()
        if source.count("\n") > 600:
            too_long.append(f"{name}: {source.count(chr(10))} lines")
        for node in ast.walk(ast.parse(source)):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                length = (node.end_lineno or node.lineno) - node.lineno + 1
                if length > 80:
                    too_long.append(f"{name}.{node.name}: {length} lines")
    assert not too_long, too_long
