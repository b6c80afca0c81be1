"""Failures that pass (``emulator_fail`` with ``times``) and the enqueued-token limit, through the SDK."""

from __future__ import annotations

import openai
import pytest

from airflow_batch_provider.emulator.server import EmulatorProcess
from tests.support.requests import chat_request, jsonl_bytes
from tests.support.sdk import client_for, read_lines, submit, submit_and_wait, wait_for

FLAKY = {"status": 503, "times": 2}


def test_a_request_fails_its_first_runs_then_answers(client: openai.OpenAI) -> None:
    lines = [chat_request("steady"), chat_request("flaky-1", emulator_fail=FLAKY)]

    first = submit_and_wait(client, lines)
    second = submit_and_wait(client, [chat_request("flaky-1", emulator_fail=FLAKY)])
    third = submit_and_wait(client, [chat_request("flaky-1", emulator_fail=FLAKY)])

    (failed,) = read_lines(client, first.error_file_id)
    assert (failed["custom_id"], failed["response"]["status_code"]) == ("flaky-1", 503)
    assert failed["response"]["body"]["error"]["type"] == "server_error"
    assert second.request_counts is not None
    assert second.request_counts.failed == 1  # the second run of that custom_id fails too
    (answered,) = read_lines(client, third.output_file_id)
    assert answered["custom_id"] == "flaky-1"
    assert answered["response"]["status_code"] == 200
    assert "emulator_fail" not in answered["response"]["body"]["choices"][0]["message"]["content"]


def test_a_bad_times_fails_only_that_line(client: openai.OpenAI) -> None:
    batch = submit_and_wait(client, [chat_request("bad", emulator_fail={"status": 500, "times": -1})])

    (line,) = read_lines(client, batch.error_file_id)
    assert line["response"]["status_code"] == 400
    assert line["response"]["body"]["error"]["param"] == "emulator_fail.times"


def test_the_count_of_failures_outlives_a_restart(tmp_path) -> None:  # type: ignore[no-untyped-def]
    process = EmulatorProcess("--request-delay", "0", "--validation-delay", "0", data_dir=tmp_path)
    with process:
        client = client_for(process)
        first = submit_and_wait(client, [chat_request("flaky", emulator_fail={"status": 500, "times": 1})])
        assert first.request_counts is not None
        assert first.request_counts.failed == 1
        process.restart()
        client = client_for(process)
        second = submit_and_wait(client, [chat_request("flaky", emulator_fail={"status": 500, "times": 1})])
        assert second.request_counts is not None
        assert second.request_counts.completed == 1


def test_a_batch_past_the_enqueued_token_limit_fails_until_earlier_ones_finish(make_emulator) -> None:  # type: ignore[no-untyped-def]
    # The limit counts a quarter of the input's bytes: it admits the first batch, not both.
    first_tokens = len(jsonl_bytes([chat_request("a"), chat_request("b")])) // 4 + 1
    server = make_emulator(enqueued_token_limit=first_tokens + 5, request_delay=0.3, concurrency=1)
    client = client_for(server)
    running = submit(client, [chat_request("a"), chat_request("b")])
    wait_for(client, running.id, until=lambda batch: batch.status == "in_progress")

    refused = wait_for(client, submit(client, [chat_request("c")]).id)
    wait_for(client, running.id)
    admitted = wait_for(client, submit(client, [chat_request("c")]).id)

    assert refused.status == "failed"
    assert refused.errors is not None
    (error,) = refused.errors.data
    assert error.code == "token_limit_exceeded"
    assert "Enqueued token limit reached for gpt-4o-mini" in (error.message or "")
    assert refused.failed_at is not None
    assert admitted.status == "completed"


@pytest.mark.parametrize("limit", [0, -5])
def test_the_limit_must_be_positive(limit: int) -> None:
    from pydantic import ValidationError

    from airflow_batch_provider.emulator.settings import EmulatorSettings

    with pytest.raises(ValidationError):
        EmulatorSettings(enqueued_token_limit=limit)
