"""Checks of the request bodies of the five batch endpoints, with the live API's messages.

Each function reads one part of a body and returns it in a handy shape, or raises the
:class:`~airflow_batch_provider.emulator.errors.APIError` (400, ``{"error": {...}}``) the live
endpoint answers for it: no ``model``, messages without ``role`` / ``content``, empty input,
wrong types, out-of-range numbers.

Forcing a failure (for tests): a request whose ``model`` is ``"emulator-fail-<status>"`` (for a
whole batch, which has one model) or whose body carries ``"emulator_fail": <status>`` (for one
line of a batch; the field is the emulator's own, the live API does not know it) gets that
status (400-599); :func:`forced_status` reads it.
"""

from __future__ import annotations

from typing import Any

from airflow_batch_provider.emulator.errors import APIError, invalid, missing_parameter, wrong_type
from airflow_batch_provider.rules import RESPONSE_INPUT_ALTERNATIVES

JSON = dict[str, Any]
Messages = list[tuple[str, str]]
"""``(role, text)`` pairs of a conversation, in order."""

FAIL_MODEL_PREFIX = "emulator-fail-"
"""A ``model`` starting with this, followed by an HTTP status, makes every request fail with it."""
FAIL_FIELD = "emulator_fail"
"""A body field that makes this one request fail: an HTTP status (400-599) fails it every time;
``{"status": 500, "times": 1}`` fails the first ``times`` runs of its ``custom_id`` in batches
(remembered across batches and restarts), then it answers normally."""

DEFAULT_MODERATION_MODEL = "omni-moderation-latest"
"""The model ``/v1/moderations`` uses when the body names none."""
EMBEDDING_DIMENSIONS = {"text-embedding-3-large": 3072}
"""Native vector size per embedding model; any other model gets :data:`DEFAULT_EMBEDDING_DIMENSIONS`."""
DEFAULT_EMBEDDING_DIMENSIONS = 1536
MAX_EMBEDDING_REQUEST_INPUTS = 2048
"""Most inputs one ``/v1/embeddings`` request may carry."""
_FIXED_SIZE_EMBEDDING_MODELS = frozenset({"text-embedding-ada-002"})
_ENCODING_FORMATS = ("float", "base64")
_CHAT_ROLES = ("system", "assistant", "user", "function", "tool", "developer")
_CONTENT_OPTIONAL_ROLES = frozenset({"assistant"})


def optional_int(body: JSON, param: str, minimum: int = 1) -> int | None:
    """The integer ``body[param]``, or None when absent.

    :param minimum: the smallest value the endpoint accepts (default 1).
    """
    value = body.get(param)
    if value is None:
        return None
    if not isinstance(value, int) or isinstance(value, bool):
        raise wrong_type(param, "an integer", value)
    if value < minimum:
        raise invalid(
            f"Invalid '{param}': integer below minimum value. Expected a value >= {minimum}, "
            f"but got {value} instead.",
            param=param,
            code="integer_below_min_value",
        )
    return value


def model_name(body: JSON, default: str | None = None) -> str:
    """The body's ``model``.

    :param default: the model of an endpoint that does not require one (default: required).
    """
    model = body.get("model", default)
    if model is None or model == "":
        raise invalid("you must provide a model parameter")
    if not isinstance(model, str):
        raise wrong_type("model", "a string", model)
    return model


def transient_failure(body: JSON) -> tuple[int, int] | None:
    """``(status, times)`` of an ``emulator_fail`` that passes after some runs, or None.

    :raises APIError: the field's ``status`` is not an HTTP error status, or ``times`` not a count.
    """
    value = body.get(FAIL_FIELD)
    if not isinstance(value, dict) or "times" not in value:
        return None
    times = value["times"]
    if not isinstance(times, int) or isinstance(times, bool) or times < 0:
        raise invalid(
            f"Invalid value: {times!r}. 'emulator_fail.times' must be a count of runs to fail.",
            param=f"{FAIL_FIELD}.times",
            code="invalid_value",
        )
    return _error_status(value.get("status"), f"{FAIL_FIELD}.status"), times


def _error_status(value: object, param: str) -> int:
    try:
        status = int(value)  # type: ignore[call-overload]
    except (TypeError, ValueError):
        status = 0
    if not 400 <= status <= 599:
        raise invalid(
            f"Invalid value: {value!r}. The emulator can only force an HTTP error status (400-599).",
            param=param,
            code="invalid_value",
        )
    return status


def forced_status(body: JSON, model: str) -> int | None:
    """The status a test asked for with ``emulator_fail`` or an ``emulator-fail-<status>`` model.

    Outside a batch (the synchronous endpoints) ``{"status": .., "times": ..}`` fails every time.
    """
    if FAIL_FIELD in body:
        value, param = body[FAIL_FIELD], FAIL_FIELD
        if isinstance(value, dict):
            value, param = value.get("status"), f"{FAIL_FIELD}.status"
    elif model.startswith(FAIL_MODEL_PREFIX):
        value, param = model.removeprefix(FAIL_MODEL_PREFIX), "model"
    else:
        return None
    return _error_status(value, param)


def _content_text(content: object, param: str) -> str:
    """The text of a message's content: a string or an array of parts (text parts are kept)."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        texts = []
        for index, part in enumerate(content):
            if not isinstance(part, dict):
                raise wrong_type(f"{param}[{index}]", "an object", part)
            text = part.get("text")
            if isinstance(text, str):
                texts.append(text)
        return " ".join(texts)
    raise wrong_type(param, "one of a string or array of objects", content)


def _empty_array(param: str) -> APIError:
    return invalid(
        f"Invalid '{param}': empty array. Expected an array with minimum length 1, "
        "but got an empty array instead.",
        param=param,
        code="empty_array",
    )


def chat_messages(body: JSON) -> Messages:
    """The ``(role, text)`` pairs of a chat completions body's ``messages``."""
    messages = body.get("messages")
    if messages is None:
        raise missing_parameter("messages")
    if not isinstance(messages, list):
        raise wrong_type("messages", "an array", messages)
    if not messages:
        raise _empty_array("messages")
    return [_chat_message(message, f"messages[{index}]") for index, message in enumerate(messages)]


def _chat_message(message: object, where: str) -> tuple[str, str]:
    if not isinstance(message, dict):
        raise wrong_type(where, "an object", message)
    role = message.get("role")
    if role is None:
        raise missing_parameter(f"{where}.role")
    if role not in _CHAT_ROLES:
        supported = ", ".join(f"'{name}'" for name in _CHAT_ROLES[:-1])
        raise invalid(
            f"Invalid value: {role!r}. Supported values are: {supported}, and '{_CHAT_ROLES[-1]}'.",
            param=f"{where}.role",
            code="invalid_value",
        )
    content = message.get("content")
    if content is None:
        if role not in _CONTENT_OPTIONAL_ROLES or not (
            message.get("tool_calls") or message.get("function_call")
        ):
            raise missing_parameter(f"{where}.content")
        text = ""
    else:
        text = _content_text(content, f"{where}.content")
    if role == "tool" and not message.get("tool_call_id"):
        raise missing_parameter(f"{where}.tool_call_id")
    return role, text


def response_input(body: JSON) -> Messages:
    """The ``(role, text)`` pairs of a responses body's ``instructions`` and ``input``."""
    pairs = []
    instructions = body.get("instructions")
    if instructions is not None:
        if not isinstance(instructions, str):
            raise wrong_type("instructions", "a string", instructions)
        pairs.append(("developer", instructions))
    items = body.get("input")
    if items is None:
        if any(body.get(name) for name in RESPONSE_INPUT_ALTERNATIVES):
            return pairs
        raise missing_parameter("input")
    if isinstance(items, str):
        return [*pairs, ("user", items)]
    if not isinstance(items, list):
        raise wrong_type("input", "one of a string or array of input items", items)
    if not items:
        raise _empty_array("input")
    for index, item in enumerate(items):
        where = f"input[{index}]"
        if not isinstance(item, dict):
            raise wrong_type(where, "an object", item)
        if item.get("type", "message") != "message":
            # Tool outputs and other items: only their text counts.
            pairs.append(("tool", str(item.get("output", ""))))
            continue
        if "role" not in item:
            raise missing_parameter(f"{where}.role")
        if "content" not in item:
            raise missing_parameter(f"{where}.content")
        pairs.append((item["role"], _content_text(item["content"], f"{where}.content")))
    return pairs


def input_texts(
    body: JSON, param: str, *, tokens: bool = False, parts: bool = False, nonempty: bool = False
) -> list[str]:
    """The inputs of a completions, embeddings or moderations body, one text per input.

    :param param: the body field holding the inputs (a string or an array of strings).
    :param tokens: also accept an array of token ids, or an array of such arrays (each token
        array stands for the text of its ids); default False.
    :param parts: also accept an array of content parts (``{"type": "text", "text": ...}``);
        default False.
    :param nonempty: reject an empty string, as the embeddings endpoint does; default False.
    """
    value = body.get(param)
    if value is None:
        raise missing_parameter(param)
    unreadable = invalid(
        f"'$.{param}' is invalid. Please check the API reference: https://platform.openai.com/docs/api-reference."
    )
    if isinstance(value, str):
        inputs: list[object] = [value]
    elif isinstance(value, list):
        inputs = [value] if value and tokens and all(_is_token(item) for item in value) else value
    else:
        raise wrong_type(param, "one of a string or array of strings", value)
    if not inputs:
        raise unreadable
    texts = []
    for item in inputs:
        if isinstance(item, str):
            text = item
        elif parts and isinstance(item, dict):
            text = item.get("text", "") if item.get("type") == "text" else ""
        elif tokens and isinstance(item, list) and item and all(_is_token(token) for token in item):
            text = " ".join(map(str, item))
        else:
            raise unreadable
        if nonempty and not text:
            raise unreadable
        texts.append(text)
    return texts


def _is_token(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def embedding_inputs(body: JSON) -> list[str]:
    """The texts of an embeddings body's ``input``, at most :data:`MAX_EMBEDDING_REQUEST_INPUTS`."""
    texts = input_texts(body, "input", tokens=True, nonempty=True)
    if len(texts) > MAX_EMBEDDING_REQUEST_INPUTS:
        raise invalid(
            f"Invalid 'input': array too long. Expected an array with maximum length "
            f"{MAX_EMBEDDING_REQUEST_INPUTS}, but got an array with length {len(texts)} instead.",
            param="input",
            code="array_above_max_length",
        )
    return texts


def embedding_dimensions(body: JSON, model: str) -> int:
    """The vector size asked for with ``dimensions``, or the model's own size."""
    native = EMBEDDING_DIMENSIONS.get(model, DEFAULT_EMBEDDING_DIMENSIONS)
    dimensions = optional_int(body, "dimensions")
    if dimensions is None:
        return native
    if model in _FIXED_SIZE_EMBEDDING_MODELS:
        raise invalid("This model does not support specifying dimensions.", "dimensions")
    if dimensions > native:
        raise invalid(
            f"Invalid value for 'dimensions' = {dimensions}. Must be less than or equal to {native}.",
            param="dimensions",
            code="invalid_value",
        )
    return dimensions


def encoding_format(body: JSON) -> str:
    """The embeddings body's ``encoding_format``: ``"float"`` (the default) or ``"base64"``."""
    value = body.get("encoding_format") or "float"
    if value not in _ENCODING_FORMATS:
        raise invalid(
            f"Invalid value: {value!r}. Supported values are: 'float' and 'base64'.",
            param="encoding_format",
            code="invalid_value",
        )
    return str(value)
