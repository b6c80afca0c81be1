"""Shared test set-up.

Airflow reads its configuration when it is first imported, so the throwaway
AIRFLOW_HOME is set here, before any test module imports Airflow.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from airflow_batch_provider import example_dags_folder

_AIRFLOW_HOME = Path(tempfile.mkdtemp(prefix="abp-airflow-home-"))
os.environ["AIRFLOW_HOME"] = str(_AIRFLOW_HOME)
os.environ["AIRFLOW__CORE__LOAD_EXAMPLES"] = "False"
os.environ["AIRFLOW__CORE__DAGS_FOLDER"] = str(example_dags_folder())
os.environ["AIRFLOW__CORE__UNIT_TEST_MODE"] = "False"
os.environ["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"] = f"sqlite:///{_AIRFLOW_HOME / 'airflow.db'}"


# --- The emulator -----------------------------------------------------------------------------

import json  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
from collections.abc import Callable, Iterator  # noqa: E402
from typing import Any  # noqa: E402

import pytest  # noqa: E402

from airflow_batch_provider.emulator.server import EmulatorServer  # noqa: E402
from tests.support.browser import browser  # noqa: E402, F401 (Debian's chromium, for every browser test)

EMULATOR_API_KEY = "sk-emulator-test"
FAST_PROCESSING: dict[str, Any] = {
    "validation_delay": 0.05,
    "request_delay": 0.0,
    "finalizing_delay": 0.05,
    "cancel_delay": 0.05,
    "concurrency": 16,
}
"""Emulator settings that run a small batch to completion in well under a second."""


@pytest.fixture(scope="session")
def emulator() -> Iterator[EmulatorServer]:
    """One emulator for the whole session: fast processing, API key ``sk-emulator-test``."""
    with EmulatorServer(api_key=EMULATOR_API_KEY, **FAST_PROCESSING) as server:
        yield server


@pytest.fixture
def make_emulator() -> Iterator[Callable[..., EmulatorServer]]:
    """Start emulators with custom settings: ``make_emulator(request_delay=0.5)``.

    Defaults are those of ``emulator`` (fast, key ``sk-emulator-test``); every one made is
    stopped at teardown.
    """
    started: list[EmulatorServer] = []

    def make(**overrides: Any) -> EmulatorServer:
        server = EmulatorServer(**{"api_key": EMULATOR_API_KEY, **FAST_PROCESSING, **overrides})
        started.append(server.start())
        return server

    yield make
    for server in started:
        server.stop()


@pytest.fixture
def emulator_conn(monkeypatch: pytest.MonkeyPatch) -> Callable[..., str]:
    """Point an Airflow connection at an emulator: ``emulator_conn(server, "my_conn")``.

    Sets ``AIRFLOW_CONN_<ID>`` (undone at teardown) and returns the connection id
    (default ``openai_batch_default``). Keyword arguments become the connection's extras.
    """

    def point(server: Any, conn_id: str = "openai_batch_default", **extra: Any) -> str:
        connection: dict[str, Any] = {"conn_type": "openai_batch", "host": server.base_url}
        if server.api_key is not None:
            connection["password"] = server.api_key
        if extra:
            connection["extra"] = extra
        monkeypatch.setenv(f"AIRFLOW_CONN_{conn_id.upper()}", json.dumps(connection))
        return conn_id

    return point


# --- The SDK version ---------------------------------------------------------------------------


def pytest_addoption(parser: Any) -> None:
    parser.addoption(
        "--openai-major",
        type=int,
        default=None,
        help="fail unless the official openai SDK imported has this major version "
        "(`make sdk2` runs the emulator's SDK tests with 2.x)",
    )


def pytest_configure(config: Any) -> None:
    major = config.getoption("openai_major")
    if major is None:
        return
    import openai

    if int(openai.__version__.split(".")[0]) != major:
        raise pytest.UsageError(
            f"--openai-major {major}, but the openai SDK imported is {openai.__version__} ({openai.__file__})"
        )


# --- Airflow's metadata database ----------------------------------------------------------------


@pytest.fixture(scope="session")
def airflow_db() -> None:
    """Migrate the throwaway metadata database once per test session."""
    subprocess.run(
        [sys.executable, "-m", "airflow", "db", "migrate"], check=True, capture_output=True, timeout=300
    )
