"""A local emulator of the OpenAI Files and Batch APIs.

Run it with ``openai-batch-emulator`` (or ``python -m airflow_batch_provider.emulator``), in
this process with :class:`EmulatorServer`, or as a subprocess with :class:`EmulatorProcess`.
It does not import Airflow.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from airflow_batch_provider.emulator.app import create_app
    from airflow_batch_provider.emulator.server import EmulatorProcess, EmulatorServer
    from airflow_batch_provider.emulator.settings import EmulatorSettings

__all__ = ["EmulatorProcess", "EmulatorServer", "EmulatorSettings", "create_app"]

_HOMES = {
    "create_app": "airflow_batch_provider.emulator.app",
    "EmulatorProcess": "airflow_batch_provider.emulator.server",
    "EmulatorServer": "airflow_batch_provider.emulator.server",
    "EmulatorSettings": "airflow_batch_provider.emulator.settings",
}


def __getattr__(name: str) -> Any:
    # Lazy, so that the executors and friends import without pulling in uvicorn and the app.
    if name in _HOMES:
        import importlib

        return getattr(importlib.import_module(_HOMES[name]), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
