"""Fixtures of the system tests: the emulator (holding batches until released) and deployments.

The LocalExecutor deployment is started once per session (about half a minute on two cores) and
shared by the browser and LocalExecutor modules, which run last and one after the other (see
:func:`pytest_collection_modifyitems`); it is stopped in a finalizer, also when a test fails.
Every component's log stays under the session's temporary directory.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.deployment import AirflowDeployment
from tests.support.emulator import EmulatorControl

DAGS = Path(__file__).resolve().parent / "dags"
API_KEY = "sk-system-test-6f1c0a9d2b7e"
"""The emulator's API key: no log file of any component may contain it."""
CONN_VARIABLE = "AIRFLOW_CONN_OPENAI_BATCH_DEFAULT"


@pytest.fixture(scope="session")
def emulator() -> Iterator[EmulatorControl]:
    """One emulator for the session, holding batches in progress (``emulator.release()`` ends them)."""
    control = EmulatorControl(API_KEY).start()
    try:
        yield control
    finally:
        control.stop()


@pytest.fixture(scope="session")
def local_airflow(
    emulator: EmulatorControl, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[AirflowDeployment]:
    """Airflow with LocalExecutor (PostgreSQL when given, else SQLite), one triggerer, the system DAGs."""
    deployment = AirflowDeployment(
        tmp_path_factory.mktemp("airflow-local"),
        dags=[DAGS / "system_dags.py"],
        env={CONN_VARIABLE: emulator.connection()},
    )
    with deployment:
        yield deployment


@pytest.fixture
def emulator_held(emulator: EmulatorControl) -> EmulatorControl:
    """The emulator, holding every batch created from now on."""
    emulator.hold()
    return emulator


MEASURED: dict[str, float] = {}
"""Figures the tests measured (seconds), printed at the end of the session."""


def record(name: str, seconds: float) -> None:
    """Keep a measured figure for the session's summary (and print it in the test's output)."""
    MEASURED[name] = seconds
    print(f"measured: {name}: {seconds:.1f} s")


LAST_MODULES = ("test_browser.py", "test_local.py")
"""The modules on the session's LocalExecutor deployment, in this order after all others: the last
test of ``test_local.py`` reads every log file the deployment wrote."""


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    def rank(item: pytest.Item) -> int:
        name = item.path.name
        return (
            LAST_MODULES.index(name) + 1
            if item.path.parent == Path(__file__).parent and name in LAST_MODULES
            else 0
        )

    items.sort(key=rank)  # stable: the order within each module stays


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if MEASURED:
        terminalreporter.section("system tests: measured")
        for name, seconds in MEASURED.items():
            terminalreporter.write_line(f"{name}: {seconds:.1f} s")
