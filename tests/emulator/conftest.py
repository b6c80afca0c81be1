"""Fixtures of the emulator's tests, and which of them `make sdk2` runs with the SDK's 2.x release."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import openai
import pytest

from tests.support.sdk import client_for

SDK_MODULES = frozenset(
    {
        "test_api_batches",
        "test_api_files",
        "test_azure",
        "test_inference",
        "test_lifecycle",
        "test_models",
        "test_retention",
        "test_sdk_versions",
        "test_structured",
        "test_transient_and_limits",
    }
)
"""The modules that hold the emulator to the live API's shapes through the official SDK; their
tests are marked ``sdk``, and ``make sdk2`` runs them again with the SDK's latest 2.x release."""
_HERE = Path(__file__).parent


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    seen = set()
    for item in items:
        if item.path.parent == _HERE and item.path.stem in SDK_MODULES:
            item.add_marker(pytest.mark.sdk)
            seen.add(item.path.stem)
    # The run of another SDK version must not shrink unnoticed when a module is renamed.
    if config.getoption("openai_major") is not None and seen != SDK_MODULES:
        raise pytest.UsageError(f"--openai-major: no tests collected from {sorted(SDK_MODULES - seen)}")


@pytest.fixture
def client(emulator: Any) -> openai.OpenAI:
    """The official SDK, pointed at the session's emulator."""
    return client_for(emulator)
