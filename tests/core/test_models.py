"""The API models: forward compatible, JSON-safe, and a superset of the official SDK's types."""

from __future__ import annotations

import json
from typing import Any

import openai.types
import pytest
from openai.types.batch import Errors as SDKErrors
from openai.types.batch_error import BatchError as SDKBatchError
from openai.types.batch_request_counts import BatchRequestCounts as SDKRequestCounts
from openai.types.batch_usage import BatchUsage as SDKUsage
from openai.types.batch_usage import InputTokensDetails, OutputTokensDetails

from airflow_batch_provider.models import Batch, BatchList, BatchResult, BatchStatus, FileObject

BATCH: dict[str, Any] = {
    "id": "batch_abc",
    "object": "batch",
    "endpoint": "/v1/chat/completions",
    "input_file_id": "file-in",
    "completion_window": "24h",
    "status": "in_progress",
    "created_at": 1_700_000_000,
}


def test_unknown_status_parses_to_a_pseudo_member_that_is_neither_terminal_nor_in_progress():
    batch = Batch.model_validate({**BATCH, "status": "paused_for_review"})

    assert isinstance(batch.status, BatchStatus)
    assert batch.status == "paused_for_review"
    assert str(batch.status) == "paused_for_review"
    assert not batch.status.is_known
    assert not batch.status.is_terminal
    assert not batch.status.is_in_progress
    assert batch.model_dump(mode="json")["status"] == "paused_for_review"


@pytest.mark.parametrize(
    ("status", "terminal", "in_progress"),
    [
        ("validating", False, True),
        ("in_progress", False, True),
        ("finalizing", False, True),
        ("cancelling", False, True),
        ("completed", True, False),
        ("failed", True, False),
        ("expired", True, False),
        ("cancelled", True, False),
    ],
)
def test_known_statuses_are_terminal_or_in_progress(status, terminal, in_progress):
    assert BatchStatus(status).is_known
    assert BatchStatus(status).is_terminal is terminal
    assert BatchStatus(status).is_in_progress is in_progress


def test_non_string_status_is_still_an_error():
    with pytest.raises(ValueError, match="status"):
        Batch.model_validate({**BATCH, "status": 3})


def test_unknown_fields_are_kept_and_dumped_again():
    batch = Batch.model_validate(
        {
            **BATCH,
            "priority": "high",
            "request_counts": {"total": 2, "completed": 1, "failed": 0, "queued": 1},
        }
    )

    assert batch.model_extra == {"priority": "high"}
    assert batch.request_counts is not None
    assert batch.request_counts.model_extra == {"queued": 1}
    dumped = batch.model_dump(mode="json")
    assert dumped["priority"] == "high"
    assert dumped["request_counts"]["queued"] == 1


@pytest.mark.parametrize("field", ["output_file_id", "error_file_id"])
def test_empty_string_file_id_means_no_file(field):
    assert getattr(Batch.model_validate({**BATCH, field: ""}), field) is None
    assert getattr(Batch.model_validate({**BATCH, field: "file-x"}), field) == "file-x"


def test_json_dump_survives_json_dumps_and_parses_back_equal():
    batch = Batch.model_validate(
        {
            **BATCH,
            "status": "failed",
            "errors": {"object": "list", "data": [{"code": "invalid_json_line", "line": 2, "message": "x"}]},
            "metadata": {"airflow_dag_id": "d"},
            "usage": {"input_tokens": 3, "output_tokens": 4, "total_tokens": 7},
            "output_expires_after": {"anchor": "created_at", "seconds": 3600},
            "future": {"nested": [1, 2]},
        }
    )
    listing = BatchList(data=[batch], first_id="batch_abc", last_id="batch_abc")

    for model in (batch, listing):
        text = json.dumps(model.model_dump(mode="json"))
        assert type(model).model_validate(json.loads(text)) == model


def test_batch_result_from_an_error_line_keeps_the_response_body_as_is():
    result = BatchResult.model_validate(
        {
            "id": "batch_req_1",
            "custom_id": "req-1",
            "response": {"status_code": 429, "request_id": "r", "body": {"error": {"code": "rate_limit"}}},
            "error": None,
        }
    )

    assert not result.succeeded
    assert result.response is not None
    assert result.response.body == {"error": {"code": "rate_limit"}}


def _sdk_batch() -> openai.types.Batch:
    return openai.types.Batch(
        id="batch_abc",
        object="batch",
        endpoint="/v1/embeddings",
        errors=SDKErrors(
            object="list",
            data=[SDKBatchError(code="invalid_url", line=3, message="The url ...", param="url")],
        ),
        input_file_id="file-in",
        completion_window="24h",
        status="completed",
        output_file_id="file-out",
        error_file_id="file-err",
        created_at=1_700_000_000,
        in_progress_at=1_700_000_001,
        expires_at=1_700_086_400,
        finalizing_at=1_700_000_002,
        completed_at=1_700_000_003,
        failed_at=1_700_000_004,
        expired_at=1_700_000_005,
        cancelling_at=1_700_000_006,
        cancelled_at=1_700_000_007,
        request_counts=SDKRequestCounts(total=10, completed=9, failed=1),
        metadata={"team": "search"},
        model="text-embedding-3-small",
        usage=SDKUsage(
            input_tokens=100,
            input_tokens_details=InputTokensDetails(cached_tokens=10),
            output_tokens=0,
            output_tokens_details=OutputTokensDetails(reasoning_tokens=0),
            total_tokens=100,
        ),
    )


def _sdk_file() -> openai.types.FileObject:
    return openai.types.FileObject(
        id="file-abc",
        object="file",
        bytes=1234,
        created_at=1_700_000_000,
        expires_at=1_702_592_000,
        filename="requests.jsonl",
        purpose="batch",
        status="processed",
        status_details="ok",
    )


@pytest.mark.parametrize(
    ("sdk_object", "ours"),
    [pytest.param(_sdk_batch(), Batch, id="Batch"), pytest.param(_sdk_file(), FileObject, id="FileObject")],
)
def test_our_models_declare_and_keep_every_field_of_the_official_sdk(sdk_object, ours):
    sdk_type = type(sdk_object)
    # The fixture sets every field the SDK declares, so a field the SDK gains is noticed here.
    assert sdk_object.model_fields_set == set(sdk_type.model_fields)
    missing = set(sdk_type.model_fields) - set(ours.model_fields)
    assert not missing, f"{ours.__name__} lacks fields the openai SDK declares: {sorted(missing)}"

    sdk_dump = sdk_object.model_dump(mode="json")
    parsed = ours.model_validate(sdk_dump)

    assert parsed.model_extra == {}
    assert parsed.model_dump(mode="json", include=set(sdk_dump)) == sdk_dump
    # And back: what we dump, the SDK parses to the same object.
    assert sdk_type.model_validate(parsed.model_dump(mode="json", include=set(sdk_dump))) == sdk_object
