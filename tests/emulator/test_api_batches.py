"""The Batches API, driven with the official SDK: shapes, lifecycle, listing, cancel, errors."""

from __future__ import annotations

import httpx
import openai
import pytest
from openai.types import Batch

from airflow_batch_provider.rules import SUPPORTED_ENDPOINTS
from tests.support.requests import REJECTED_CODE, chat_request, rejected_request
from tests.support.sdk import client_for, read_lines, submit, submit_and_wait, wait_for


def test_batch_runs_to_completed_with_outputs_usage_and_timestamps(client: openai.OpenAI) -> None:
    created = submit(
        client, [chat_request(f"req-{i}", f"question {i}") for i in range(10)], metadata={"k": "v"}
    )
    assert isinstance(created, Batch)
    assert created.status == "validating"
    assert created.expires_at == created.created_at + 24 * 60 * 60
    assert created.output_file_id is None

    batch = wait_for(client, created.id)

    assert batch.status == "completed"
    assert batch.metadata == {"k": "v"}
    assert batch.model == "gpt-4o-mini"
    assert batch.request_counts is not None
    assert (batch.request_counts.total, batch.request_counts.completed, batch.request_counts.failed) == (
        10,
        10,
        0,
    )
    assert batch.in_progress_at is not None
    assert batch.finalizing_at is not None
    assert batch.completed_at is not None
    assert created.created_at <= batch.in_progress_at <= batch.finalizing_at <= batch.completed_at
    assert batch.error_file_id is None
    lines = read_lines(client, batch.output_file_id)
    assert [line["custom_id"] for line in lines] == [f"req-{i}" for i in range(10)]
    for line in lines:
        assert line["id"].startswith("batch_req_")
        assert line["error"] is None
        assert line["response"]["status_code"] == 200
        assert line["response"]["request_id"]
        assert line["response"]["body"]["object"] == "chat.completion"
    usages = [line["response"]["body"]["usage"] for line in lines]
    assert batch.usage is not None
    assert batch.usage.input_tokens == sum(usage["prompt_tokens"] for usage in usages) > 0
    assert batch.usage.output_tokens == sum(usage["completion_tokens"] for usage in usages) > 0
    assert batch.usage.total_tokens == batch.usage.input_tokens + batch.usage.output_tokens
    assert batch.output_file_id is not None
    output = client.files.retrieve(batch.output_file_id)
    assert output.purpose == "batch_output"
    assert output.filename == f"{batch.id}_output.jsonl"
    assert output.bytes == len(client.files.content(output.id).content)


def test_rejected_requests_go_to_the_error_file(client: openai.OpenAI) -> None:
    batch = submit_and_wait(client, [chat_request("good"), rejected_request("bad")])

    assert batch.status == "completed"
    assert batch.request_counts is not None
    assert (batch.request_counts.completed, batch.request_counts.failed) == (1, 1)
    assert [line["custom_id"] for line in read_lines(client, batch.output_file_id)] == ["good"]
    (error,) = read_lines(client, batch.error_file_id)
    assert error["custom_id"] == "bad"
    assert error["response"]["status_code"] == 400
    assert error["response"]["body"]["error"]["code"] == REJECTED_CODE
    assert error["response"]["body"]["error"]["message"]
    assert error["error"] is None


def test_batch_whose_every_request_failed_has_no_output_file(client: openai.OpenAI) -> None:
    batch = submit_and_wait(client, [rejected_request(f"r{i}") for i in range(3)])

    assert batch.status == "completed"
    assert batch.output_file_id is None
    assert len(read_lines(client, batch.error_file_id)) == 3


def test_list_is_newest_first_and_auto_paginates(client: openai.OpenAI) -> None:
    ids = [submit(client, [chat_request("x")]).id for _ in range(5)]

    first_page = client.batches.list(limit=2)
    assert [batch.id for batch in first_page.data] == ids[::-1][:2]
    assert first_page.has_more is True
    listed = [batch.id for batch in client.batches.list(limit=2)]  # iterating fetches every page
    assert listed[:5] == ids[::-1]
    assert len(listed) == len(set(listed))


def test_list_page_fields(emulator: object) -> None:
    client = client_for(emulator)
    ids = [submit(client, [chat_request("x")]).id for _ in range(3)]
    page = httpx.get(
        f"{client.base_url}batches",
        params={"limit": 2},
        headers={"Authorization": f"Bearer {client.api_key}"},
    ).json()
    assert page["object"] == "list"
    assert (page["first_id"], page["last_id"], page["has_more"]) == (ids[2], ids[1], True)
    after = client.batches.list(after=ids[1], limit=1)
    assert [batch.id for batch in after.data] == [ids[0]]


def test_cancel_keeps_partial_output(make_emulator) -> None:  # type: ignore[no-untyped-def]
    client = client_for(make_emulator(request_delay=0.05, concurrency=1))
    created = submit(client, [chat_request(f"r{i}") for i in range(200)])
    wait_for(
        client,
        created.id,
        lambda batch: batch.request_counts is not None and batch.request_counts.completed >= 3,
    )

    cancelling = client.batches.cancel(created.id)
    assert cancelling.status == "cancelling"
    assert cancelling.cancelling_at is not None
    batch = wait_for(client, created.id)

    assert batch.status == "cancelled"
    assert batch.cancelled_at is not None
    assert batch.request_counts is not None
    done = batch.request_counts.completed
    assert 3 <= done < 200
    assert [line["custom_id"] for line in read_lines(client, batch.output_file_id)] == [
        f"r{i}" for i in range(done)
    ]
    # Every request it did not run is an error line, counted as failed.
    not_run = read_lines(client, batch.error_file_id)
    assert [line["custom_id"] for line in not_run] == [f"r{i}" for i in range(done, 200)]
    assert {line["error"]["code"] for line in not_run} == {"batch_cancelled"}
    assert all(line["response"] is None and line["error"]["message"] for line in not_run)
    assert (batch.request_counts.failed, batch.request_counts.total) == (200 - done, 200)
    assert client.batches.cancel(created.id).status == "cancelled"  # cancelling again is allowed


def test_cancel_while_validating(make_emulator) -> None:  # type: ignore[no-untyped-def]
    client = client_for(make_emulator(validation_delay=30))
    created = submit(client, [chat_request("r")])

    assert client.batches.cancel(created.id).status == "cancelling"
    batch = wait_for(client, created.id)
    assert batch.status == "cancelled"
    assert batch.output_file_id is None
    assert batch.error_file_id is None  # it ran nothing: no request to report
    assert batch.request_counts is not None
    assert batch.request_counts.total == 0


@pytest.mark.parametrize("outcome", ["completed", "failed"])
def test_cancel_of_a_finished_batch_is_a_conflict(client: openai.OpenAI, outcome: str) -> None:
    lines = [chat_request("r")] if outcome == "completed" else ["not json"]
    batch = submit_and_wait(client, lines)
    assert batch.status == outcome

    with pytest.raises(openai.ConflictError) as raised:
        client.batches.cancel(batch.id)
    assert raised.value.body == {
        "message": f"Cannot cancel a batch with status '{outcome}'.",
        "type": "invalid_request_error",
        "param": None,
        "code": None,
    }


def test_unknown_batch_is_not_found(client: openai.OpenAI) -> None:
    with pytest.raises(openai.NotFoundError, match=r"No batch found with id 'batch_nope'\."):
        client.batches.retrieve("batch_nope")
    with pytest.raises(openai.NotFoundError):
        client.batches.cancel("batch_nope")


def _create_error(client: openai.OpenAI, **params: object) -> dict[str, object]:
    file = client.files.create(file=("r.jsonl", b'{"custom_id": "a"}\n'), purpose="batch")
    fields = {
        "input_file_id": file.id,
        "endpoint": "/v1/chat/completions",
        "completion_window": "24h",
        **params,
    }
    with pytest.raises(openai.BadRequestError) as raised:
        client.batches.create(**{k: v for k, v in fields.items() if v is not None})  # type: ignore[arg-type]
    assert raised.value.status_code == 400
    error = raised.value.body
    assert isinstance(error, dict)
    assert error["type"] == "invalid_request_error"
    assert raised.value.response.headers["x-request-id"]
    return error


def test_unsupported_endpoint_lists_the_supported_ones(client: openai.OpenAI) -> None:
    error = _create_error(client, endpoint="/v1/images/generations")

    assert (error["param"], error["code"]) == ("endpoint", "invalid_value")
    for endpoint in SUPPORTED_ENDPOINTS:
        assert f"'{endpoint}'" in str(error["message"])


def test_completion_window_other_than_24h(client: openai.OpenAI) -> None:
    error = _create_error(client, completion_window="1h")
    assert (error["param"], error["code"]) == ("completion_window", "invalid_value")


@pytest.mark.parametrize(
    ("metadata", "param"),
    [
        ({f"k{i}": "v" for i in range(17)}, "metadata"),
        ({"k" * 65: "v"}, "metadata"),
        ({"k": "v" * 513}, "metadata.k"),
        ({"k": 1}, "metadata.k"),
    ],
    ids=["17 keys", "long key", "long value", "not a string"],
)
def test_metadata_limits(client: openai.OpenAI, metadata: dict[str, object], param: str) -> None:
    assert _create_error(client, metadata=metadata)["param"] == param


def test_metadata_at_the_limits_is_accepted(client: openai.OpenAI) -> None:
    metadata = {f"{i:02d}" + "k" * 62: "v" * 512 for i in range(16)}
    assert submit(client, [chat_request("r")], metadata=metadata).metadata == metadata


def test_missing_parameter_is_a_400_not_a_422(client: openai.OpenAI) -> None:
    with pytest.raises(openai.BadRequestError) as raised:
        client.post(
            "/batches", body={"endpoint": "/v1/chat/completions", "completion_window": "24h"}, cast_to=Batch
        )
    assert raised.value.body == {
        "message": "Missing required parameter: 'input_file_id'.",
        "type": "invalid_request_error",
        "param": "input_file_id",
        "code": "missing_required_parameter",
    }


def test_output_expires_after_sets_the_output_files_expiry(client: openai.OpenAI) -> None:
    created = submit(
        client, [chat_request("r")], output_expires_after={"anchor": "created_at", "seconds": 7200}
    )
    batch = wait_for(client, created.id)
    assert batch.output_file_id is not None
    output = client.files.retrieve(batch.output_file_id)
    assert output.expires_at == output.created_at + 7200
    assert _create_error(client, output_expires_after={"anchor": "created_at", "seconds": 5})["param"] == (
        "output_expires_after.seconds"
    )


def test_api_key_is_required(emulator: object) -> None:
    base_url = client_for(emulator).base_url
    with pytest.raises(openai.AuthenticationError):
        openai.OpenAI(base_url=base_url, api_key="sk-wrong", max_retries=0).batches.list()
    response = httpx.get(f"{base_url}batches")
    assert response.status_code == 401
    assert response.json()["error"]["type"] == "invalid_request_error"
    assert response.headers["x-request-id"].startswith("req_")
    azure = httpx.get(f"{base_url}batches", headers={"api-key": str(client_for(emulator).api_key)})
    assert azure.status_code == 200


def test_every_response_has_a_request_id(client: openai.OpenAI) -> None:
    headers = {"Authorization": f"Bearer {client.api_key}"}
    for response in (
        httpx.get(f"{client.base_url}batches", headers=headers),
        httpx.get(f"{client.base_url}batches/batch_nope", headers=headers),
        httpx.post(f"{client.base_url}batches", headers=headers, json={}),
        httpx.get(f"{client.base_url}no-such-route", headers=headers),
    ):
        assert response.headers["x-request-id"].startswith("req_"), response
        if response.is_error:
            assert set(response.json()["error"]) == {"message", "type", "param", "code"}


@pytest.mark.parametrize(
    ("request_args", "status", "message"),
    [
        ({"method": "DELETE", "url": "batches"}, 404, "Invalid URL (DELETE /v1/batches)"),
        ({"method": "POST", "url": "batches", "content": b"{nope"}, 400, "We could not parse the JSON body"),
        (
            {
                "method": "POST",
                "url": "batches",
                "json": {"input_file_id": 3, "endpoint": "e", "completion_window": "24h"},
            },
            400,
            "Invalid type for 'input_file_id': expected a string, but got an integer instead.",
        ),
        ({"method": "GET", "url": "batches", "params": {"limit": 101}}, 400, "Invalid value for 'limit'"),
    ],
    ids=["wrong method", "not json", "wrong type", "limit too high"],
)
def test_framework_errors_take_the_live_shape(
    client: openai.OpenAI, request_args: dict[str, object], status: int, message: str
) -> None:
    with httpx.Client(
        base_url=str(client.base_url), headers={"Authorization": f"Bearer {client.api_key}"}
    ) as http:
        response = http.request(**request_args)  # type: ignore[arg-type]
    assert response.status_code == status
    error = response.json()["error"]
    assert set(error) == {"message", "type", "param", "code"}
    assert error["message"].startswith(message)
