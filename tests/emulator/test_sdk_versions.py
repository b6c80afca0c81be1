"""What differs between the official SDK's releases that drive the emulator (3.x, and 2.x in `make sdk2`).

Both read the error body into ``.body``, ``.code``, ``.param`` and ``.status_code`` alike; only
the exception's text differs: 3.x says ``Error code: 404 - <message>``, 2.x puts the whole error
body after the status. The emulator's tests assert on the parsed fields, or on text both share.
"""

from __future__ import annotations

import openai
import pytest

from tests.support.requests import chat_request
from tests.support.sdk import submit_and_wait

SDK_MAJOR = int(openai.__version__.split(".")[0])
MESSAGE = "No batch found with id 'batch_nope'."


def test_the_sdk_is_a_2x_or_3x_release() -> None:
    assert SDK_MAJOR in (2, 3), openai.__version__


def test_errors_read_alike_in_both_releases(client: openai.OpenAI) -> None:
    with pytest.raises(openai.NotFoundError) as raised:
        client.batches.retrieve("batch_nope")

    error = raised.value
    assert (error.status_code, error.code, error.param) == (404, None, None)
    assert error.body == {"message": MESSAGE, "type": "invalid_request_error", "param": None, "code": None}
    text = str(error)
    assert text.startswith("Error code: 404 - ")
    assert MESSAGE in text  # what both releases say
    if SDK_MAJOR >= 3:
        assert text == f"Error code: 404 - {MESSAGE}"
    else:
        assert "'type': 'invalid_request_error'" in text  # 2.x: the whole body


def test_batches_and_files_parse_in_both_releases(client: openai.OpenAI) -> None:
    batch = submit_and_wait(client, [chat_request("a")], metadata={"release": openai.__version__})

    assert batch.status == "completed"
    assert batch.metadata == {"release": openai.__version__}
    assert batch.usage is not None  # typed in both releases
    assert batch.output_file_id is not None
    assert client.files.retrieve(batch.output_file_id).purpose == "batch_output"
