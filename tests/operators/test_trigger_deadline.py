"""The triggers' deadline event fires on time even while a read of the batch hangs."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from typing import Any

import pytest

from airflow_batch_provider.triggers.batch import OpenAIBatchesTrigger, OpenAIBatchTrigger
from tests.support.connections import set_connection
from tests.support.scripted_server import Reply, ScriptedServer, batch_json

DEADLINE_IN = 1.5


@pytest.fixture
def hanging(monkeypatch) -> Iterator[ScriptedServer]:
    """A server that dribbles its answer a byte a second, behind a connection with a long timeout."""
    with ScriptedServer() as server:
        server.script("GET", "/batches/b1", Reply(json=batch_json("b1"), trickle=1.0, trickle_head=True))
        set_connection(
            monkeypatch,
            "hanging",
            conn_type="openai_batch",
            host=server.base_url,
            password="sk-hanging-0123",
            extra={"timeout": 120, "max_retries": 5},
        )
        yield server


def first_event(trigger: Any) -> tuple[dict[str, Any], float]:
    async def main() -> Any:
        return await anext(trigger.run())

    started = time.monotonic()
    event = asyncio.run(main())
    return event.payload, time.monotonic() - started


@pytest.mark.parametrize("trigger_class", [OpenAIBatchTrigger, OpenAIBatchesTrigger])
def test_the_deadline_fires_while_a_read_hangs(hanging, trigger_class) -> None:
    ids: Any = "b1" if trigger_class is OpenAIBatchTrigger else ["b1"]
    trigger = trigger_class("hanging", ids, poll_interval=0.01, deadline=time.time() + DEADLINE_IN)

    payload, took = first_event(trigger)

    assert payload["status"] == "timeout"
    assert "deadline" in payload["message"]
    assert took < DEADLINE_IN + 1.0
    assert len(hanging.received()) == 1  # one read, still dribbling when the deadline came
