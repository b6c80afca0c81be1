"""The installed wheel gives a user what it promises. Run by check_wheel.sh with a fresh venv's
Python, from a directory outside the clone: the provider as Airflow's CLI shows it, the task
decorator, plugins when the provider declares some, the example DAGs, the emulator's command and
the demo. One line per check; exits 1 naming what is missing."""

from __future__ import annotations

import importlib
import json
import os
import signal
import subprocess
import sys
import sysconfig
import time
import urllib.request
from importlib.metadata import version
from pathlib import Path
from typing import Any

PACKAGE = "airflow-batch-provider"
BIN = Path(sys.executable).parent
# Nothing of the caller's Airflow set-up leaks in; Airflow's own examples (and plugins) stay out.
for name in [name for name in os.environ if name.startswith("AIRFLOW")]:
    del os.environ[name]
os.environ.update({"AIRFLOW_HOME": str(Path.cwd() / "airflow-home"), "AIRFLOW__CORE__LOAD_EXAMPLES": "False"})
missing: list[str] = []
STARTED = time.monotonic()


def check(ok: bool, what: str) -> None:
    print(f"{'ok' if ok else 'MISSING':8}{what} ({time.monotonic() - STARTED:.1f} s)", flush=True)
    if not ok:
        missing.append(what)


def airflow(*args: str, **settings: str) -> list[dict[str, Any]]:
    """What an ``airflow`` CLI command prints, as JSON; ``settings`` are extra environment variables."""
    done = subprocess.run(
        [BIN / "airflow", *args, "-o", "json"],
        env=os.environ | settings,
        capture_output=True,
        text=True,
        timeout=120,
    )
    if done.returncode != 0:
        sys.exit(f"`airflow {' '.join(args)}` failed:\n{done.stdout}{done.stderr}")
    # `airflow plugins` prints "No plugins loaded" rather than an empty list.
    return json.loads(done.stdout) if done.stdout.lstrip().startswith("[") else []


def has(rows: list[dict[str, Any]], expected: dict[str, str]) -> bool:
    return any(all(row.get(key) == value for key, value in expected.items()) for row in rows)


def check_package() -> Path:
    import airflow_batch_provider

    package = Path(airflow_batch_provider.__file__).parent
    site = Path(sysconfig.get_paths()["purelib"])
    check(package == site / "airflow_batch_provider", f"the package imports from the venv: {package}")
    check(version(PACKAGE) == airflow_batch_provider.__version__, f"version {version(PACKAGE)}")
    folder = airflow_batch_provider.example_dags_folder()
    check(folder == package / "example_dags", f"example_dags_folder() is inside the package: {folder}")
    return folder


def check_provider() -> None:
    from airflow_batch_provider import __version__, get_provider_info

    expected = {
        "list": {"package_name": PACKAGE, "version": __version__},
        "hooks": {
            "package_name": PACKAGE,
            "connection_type": "openai_batch",
            "class": "airflow_batch_provider.hooks.batch.OpenAIBatchHook",
        },
        "behaviours": {"field_behaviours": "openai_batch"},
        "links": {"extra_link_class_name": "airflow_batch_provider.links.OpenAIBatchLink"},
        "triggers": {"package_name": PACKAGE, "class": "airflow_batch_provider.triggers.batch"},
    }
    for command, row in expected.items():
        check(has(airflow("providers", command), row), f"airflow providers {command}: {row}")
    # Airflow's CLI has no command for task decorators: ask the place DAG authors use.
    from airflow.sdk import task

    decorator = getattr(task, "openai_batch", None)
    check(
        getattr(decorator, "__module__", None) == "airflow_batch_provider.decorators.openai_batch",
        "@task.openai_batch",
    )
    plugins = get_provider_info().get("plugins", [])
    if plugins:
        check_plugins(plugins)
    else:
        print("-       no plugins declared in the provider info")


def check_plugins(plugins: list[dict[str, str]]) -> None:
    """Each plugin the provider info declares is loaded, with Airflow's default settings."""
    loaded = airflow("plugins")
    for plugin in plugins:
        module, _, name = plugin["plugin-class"].rpartition(".")
        expected = {"name": getattr(importlib.import_module(module), name).name}
        check(has(loaded, expected), f"airflow plugins: {plugin['plugin-class']}")
        if not has(loaded, expected) and has(
            airflow("plugins", AIRFLOW__CORE__LAZY_DISCOVER_PROVIDERS="False"), expected
        ):
            print(
                "        Airflow loads the plugins of a provider's info only with [core] "
                "lazy_discover_providers = False; register the plugin under the airflow.plugins "
                "entry point too"
            )


def check_example_bundle(folder: Path) -> None:
    """With ``[core] load_examples``, Airflow makes the provider's example DAGs a bundle of their own."""
    from airflow.dag_processing.bundles.manager import DagBundlesManager

    os.environ["AIRFLOW__CORE__LOAD_EXAMPLES"] = "True"
    try:
        bundles = {bundle.name: Path(bundle.path) for bundle in DagBundlesManager().get_all_dag_bundles()}
    finally:
        os.environ["AIRFLOW__CORE__LOAD_EXAMPLES"] = "False"
    name = f"{PACKAGE}-example-dags"
    check(bundles.get(name) == folder, f"load_examples adds the DAG bundle {name}")


def check_emulator() -> None:
    command = str(BIN / "openai-batch-emulator")
    helped = subprocess.run([command, "--help"], capture_output=True, text=True, timeout=60)
    check(
        helped.returncode == 0 and "usage: openai-batch-emulator" in helped.stdout,
        "openai-batch-emulator --help",
    )
    with subprocess.Popen(
        [command, "--port", "0", "--log-level", "warning"], stdout=subprocess.PIPE, text=True
    ) as server:
        assert server.stdout is not None
        ready = server.stdout.readline()  # "Serving the OpenAI Batch API emulator at http://.../v1"
        try:
            root = ready.split()[-1].removesuffix("/v1")
            direct = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # loopback: no proxy
            with direct.open(f"{root}/", timeout=30) as page:
                served = page.status == 200 and b"</html>" in page.read()
        except (IndexError, OSError) as error:
            served = False
            print(f"        {ready!r}: {error}")
        finally:
            server.terminate()
    check(served, "openai-batch-emulator serves its batches page (the templates are in the wheel)")


def main() -> int:
    # The demo mostly waits on its batch: it runs while the other checks do.
    demo = subprocess.Popen(
        [sys.executable, "-m", "airflow_batch_provider.demo"],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    try:
        folder = check_package()
        check_provider()
        check_example_bundle(folder)
        check_emulator()
        output, _ = demo.communicate(timeout=600)
    finally:
        if demo.poll() is None:  # a check failed: stop the demo and its airflow command
            os.killpg(demo.pid, signal.SIGKILL)
    ran = demo.returncode == 0 and f"example DAGs  {folder}" in output
    check(ran, "python -m airflow_batch_provider.demo runs the installed example DAG against the emulator")
    if not ran:
        print(output)
    if missing:
        print(f"\n{len(missing)} missing from the installed package:\n  " + "\n  ".join(missing))
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
