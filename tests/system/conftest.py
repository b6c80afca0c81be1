"""Fixtures of the system tests: the emulator (holding batches until released) and deployments.

A deployment is started once per module (about half a minute on two cores) and stopped in a
finalizer, also when a test fails; a failing test's report shows the end of every component's
log, and the whole logs stay under the test's temporary directory.
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


@pytest.fixture(scope="module")
def emulator() -> Iterator[EmulatorControl]:
    """One emulator per module, holding batches in progress (``emulator.release()`` ends them)."""
    control = EmulatorControl(API_KEY).start()
    try:
        yield control
    finally:
        control.stop()


@pytest.fixture(scope="module")
def local_airflow(
    emulator: EmulatorControl, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[AirflowDeployment]:
    """Airflow with LocalExecutor (PostgreSQL when given, else SQLite), one triggerer, the system DAGs."""
    deployment = AirflowDeployment(
        tmp_path_factory.mktemp("airflow-local"),
        dags=DAGS.glob("*.py"),
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


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if MEASURED:
        terminalreporter.section("system tests: measured")
        for name, seconds in MEASURED.items():
            terminalreporter.write_line(f"{name}: {seconds:.1f} s")
