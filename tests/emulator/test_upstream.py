"""Upstream mode: requests executed by a real OpenAI-compatible server (here, another emulator)."""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import Callable

import httpx
import openai
import pytest

from airflow_batch_provider.emulator.checks import FAIL_FIELD
from airflow_batch_provider.emulator.executors import Execution, LocalExecutor, UpstreamExecutor
from airflow_batch_provider.emulator.faults import ADMIN_PATH, FaultSettings, parse_cli_fault
from airflow_batch_provider.emulator.server import EmulatorServer
from tests.support.sdk import client_for, read_lines, submit, wait_for

CHAT = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "Name three rivers."}]}
TIMESTAMPS = ("created", "created_at", "completed_at")


def without_timestamps(body: dict) -> dict:
    return {key: value for key, value in body.items() if key not in TIMESTAMPS}


def run(executor: UpstreamExecutor, url: str, body: dict) -> Execution:
    async def execute() -> Execution:
        try:
            return await executor.execute(url, body)
        finally:
            await executor.aclose()

    return asyncio.run(execute())


@pytest.fixture
def upstream(make_emulator: Callable[..., EmulatorServer]) -> EmulatorServer:
    return make_emulator(enable_admin=True)


COUNTER = 1_000


def answered(server: EmulatorServer) -> int:
    """How many requests a ``...:latency=0.001:count=COUNTER`` rule of ``server`` has seen."""
    shown = httpx.get(f"{server.url}{ADMIN_PATH}", headers={"Authorization": f"Bearer {server.api_key}"})
    return COUNTER - shown.json()["rules"][0]["count"]


def set_faults(server: EmulatorServer, *specs: str) -> None:
    settings = FaultSettings(rules=[parse_cli_fault(spec) for spec in specs])
    httpx.put(
        f"{server.url}{ADMIN_PATH}",
        json=settings.model_dump(mode="json"),
        headers={"Authorization": f"Bearer {server.api_key}"},
    ).raise_for_status()


@pytest.mark.parametrize(
    ("url", "body"),
    [
        ("/v1/chat/completions", CHAT),
        ("/v1/responses", {"model": "gpt-4o-mini", "input": "Name three rivers."}),
        ("/v1/completions", {"model": "gpt-3.5-turbo-instruct", "prompt": "Rivers:"}),
        ("/v1/embeddings", {"model": "text-embedding-3-small", "input": "rivers", "dimensions": 16}),
        ("/v1/moderations", {"input": "rivers"}),
        ("/v1/chat/completions", {"model": "gpt-4o-mini"}),  # the upstream's 400, relayed
        ("/v1/chat/completions", {**CHAT, FAIL_FIELD: 500}),  # its 500, relayed once retries run out
    ],
)
def test_relays_the_upstream_answer(upstream: EmulatorServer, url: str, body: dict):
    executor = UpstreamExecutor(upstream.base_url, api_key=upstream.api_key, max_retries=0)

    execution = run(executor, url, body)

    expected = LocalExecutor().execute_sync(url, body)
    assert execution.status_code == expected.status_code
    assert without_timestamps(execution.body) == without_timestamps(expected.body)
    assert execution.usage == expected.usage


def test_sends_the_api_key(upstream: EmulatorServer):
    executor = UpstreamExecutor(upstream.base_url, api_key="sk-not-the-upstream-key", max_retries=0)

    execution = run(executor, "/v1/chat/completions", CHAT)

    assert execution.status_code == 401
    assert execution.body["error"]["code"] == "invalid_api_key"
    assert "sk-not-the-upstream-key" not in repr(executor)


def test_retries_transient_failures(upstream: EmulatorServer):
    set_faults(upstream, "POST /v1/chat/completions:503:count=2:retry_after=0.05")
    executor = UpstreamExecutor(upstream.base_url, api_key=upstream.api_key, max_retries=2)

    assert run(executor, "/v1/chat/completions", CHAT).status_code == 200

    set_faults(upstream, "POST /v1/chat/completions:429:count=2:retry_after=0.05")
    executor = UpstreamExecutor(upstream.base_url, api_key=upstream.api_key, max_retries=1)
    execution = run(executor, "/v1/chat/completions", CHAT)

    assert execution.status_code == 429
    assert execution.body["error"]["code"] == "rate_limit_exceeded"


def test_a_dropped_connection_is_retried(upstream: EmulatorServer):
    set_faults(upstream, "POST /v1/embeddings:drop:count=1")
    executor = UpstreamExecutor(upstream.base_url, api_key=upstream.api_key, max_retries=1)

    execution = run(executor, "/v1/embeddings", {"model": "text-embedding-3-small", "input": "x"})

    assert execution.status_code == 200


def test_an_unreachable_server_gives_502():
    with socket.socket() as probe:  # a port nothing listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    executor = UpstreamExecutor(f"http://127.0.0.1:{port}/v1", max_retries=0)

    execution = run(executor, "/v1/chat/completions", CHAT)

    assert execution.status_code == 502
    assert execution.body["error"]["code"] == "upstream_unreachable"
    assert str(port) in execution.body["error"]["message"]


def test_a_slow_server_gives_504(upstream: EmulatorServer):
    set_faults(upstream, "POST /v1/chat/completions:latency=1")
    executor = UpstreamExecutor(upstream.base_url, api_key=upstream.api_key, timeout=0.3, max_retries=0)

    started = time.monotonic()
    execution = run(executor, "/v1/chat/completions", CHAT)

    assert execution.status_code == 504
    assert execution.body["error"]["code"] == "upstream_timeout"
    assert time.monotonic() - started < 1


def lines(client: openai.OpenAI, file_id: str | None) -> dict[str, dict]:
    return {line["custom_id"]: line for line in read_lines(client, file_id)}


def test_a_batch_on_a_chained_emulator_gets_the_upstream_answers(
    make_emulator: Callable[..., EmulatorServer],
):
    upstream = make_emulator(enable_admin=True)
    chained = make_emulator(upstream_url=upstream.base_url, upstream_api_key=upstream.api_key)
    set_faults(upstream, f"POST /v1/chat/completions:latency=0.001:count={COUNTER}")  # counts calls
    bodies = {
        **{
            f"ok-{index}": {**CHAT, "messages": [{"role": "user", "content": f"Question {index}?"}]}
            for index in range(8)
        },
        "bad": {"model": "gpt-4o-mini", "messages": [{"content": "no role"}]},
        "fails": {**CHAT, FAIL_FIELD: 500},
    }
    requests = [
        {"custom_id": custom_id, "method": "POST", "url": "/v1/chat/completions", "body": body}
        for custom_id, body in bodies.items()
    ]

    with client_for(chained) as client, client_for(upstream) as direct:
        batch = wait_for(client, submit(client, requests).id, timeout=30)

        assert answered(upstream) == len(bodies) + 2  # every line went upstream; the 500 was retried twice
        assert batch.status == "completed"
        assert batch.request_counts is not None
        assert (batch.request_counts.completed, batch.request_counts.failed) == (8, 2)
        outputs, errors = lines(client, batch.output_file_id), lines(client, batch.error_file_id)
        assert set(outputs) == {f"ok-{index}" for index in range(8)}
        assert set(errors) == {"bad", "fails"}
        for custom_id, line in outputs.items():
            answer = direct.chat.completions.create(**bodies[custom_id]).model_dump(exclude_unset=True)
            assert line["response"]["status_code"] == 200
            assert without_timestamps(line["response"]["body"]) == without_timestamps(answer)
        # The chained emulator's synchronous endpoints go upstream too.
        before = answered(upstream)
        relayed = client.chat.completions.create(**bodies["ok-0"]).model_dump(exclude_unset=True)
        assert answered(upstream) == before + 1
        assert without_timestamps(relayed) == without_timestamps(outputs["ok-0"]["response"]["body"])
        for custom_id, line in errors.items():
            response = httpx.post(
                f"{upstream.base_url}/chat/completions",
                json=bodies[custom_id],
                headers={"Authorization": f"Bearer {upstream.api_key}"},
            )
            assert line["response"]["status_code"] == response.status_code
            assert line["response"]["body"] == response.json()
