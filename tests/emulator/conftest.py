"""Fixtures of the emulator's tests."""

from __future__ import annotations

from typing import Any

import openai
import pytest

from tests.support.sdk import client_for


@pytest.fixture
def client(emulator: Any) -> openai.OpenAI:
    """The official SDK, pointed at the session's emulator."""
    return client_for(emulator)
