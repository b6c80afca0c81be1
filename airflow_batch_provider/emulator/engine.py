"""Execution of one request of a batch: deterministic local answers, or a real upstream server.

:class:`LocalExecutor` answers the five endpoints the Batch API supports without any model:
the same request always gets the same answer (ids, text, vectors and token counts are derived
from a hash of the request; only the ``created`` timestamps follow the clock). Its answers parse
with the official SDK's types (``ChatCompletion``, ``Response``, ``Completion``,
``CreateEmbeddingResponse``, ``ModerationCreateResponse``), and a body the live endpoint would
reject (no ``model``, messages without ``role``/``content``, empty input, wrong types) gets
status 400 with the live error body ``{"error": {"message", "type", "param", "code"}}``.

What the answers contain:

- chat completions, responses and completions: an assistant text echoing the last user text
  ("Emulated reply to: ..."), cut to ``max_tokens`` / ``max_completion_tokens`` /
  ``max_output_tokens`` (then ``finish_reason`` is ``"length"``, or the response is
  ``incomplete``); ``n`` choices where the endpoint has them.
- embeddings: unit vectors of the model's size (``text-embedding-3-large``: 3072, other models
  1536) or ``dimensions``; texts that share words get closer vectors; ``encoding_format``
  ``"base64"`` packs little-endian float32 as the live API does.
- moderations: low scores everywhere, except that a text containing a category's name
  (``"violence"``, ``"self-harm"``, ...) is flagged in that category.
- token counts: about one token per four characters, plus the live per-message overhead.

Forcing a failure (for tests): a request whose ``model`` is ``"emulator-fail-<status>"`` (for
a whole batch, which has one model) or whose body carries ``"emulator_fail": <status>`` (for one
line of a batch; the field is the emulator's own, the live API does not know it) gets that
status (400-599) with the live error body of that status (429: ``rate_limit_exceeded``, 5xx:
``server_error``).

:class:`UpstreamExecutor` sends each request to a real OpenAI-compatible server instead, which
turns the emulator into a Batch API for a server that lacks one.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import math
import re
import sys
import time
import weakref
from array import array
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

import httpx
from pydantic import SecretStr
from tenacity import AsyncRetrying, retry_if_exception_type, retry_if_result, stop_after_attempt

from airflow_batch_provider.emulator.errors import APIError, json_type_name, missing_parameter

if TYPE_CHECKING:
    from airflow_batch_provider.emulator.settings import EmulatorSettings

JSON = dict[str, Any]

FAIL_MODEL_PREFIX = "emulator-fail-"
"""A ``model`` starting with this, followed by an HTTP status, makes every request fail with it."""
FAIL_FIELD = "emulator_fail"
"""A body field holding an HTTP status (400-599) that makes this one request fail with it."""

EMBEDDING_DIMENSIONS = {"text-embedding-3-large": 3072}
"""Native vector size per embedding model; any other model gets :data:`DEFAULT_EMBEDDING_DIMENSIONS`."""
DEFAULT_EMBEDDING_DIMENSIONS = 1536
_FIXED_SIZE_EMBEDDING_MODELS = frozenset({"text-embedding-ada-002"})
_MAX_EMBEDDING_INPUTS = 2048
_DEFAULT_MODERATION_MODEL = "omni-moderation-latest"


@dataclass(frozen=True)
class Execution:
    """The answer to one request: what the endpoint would have sent back.

    :param status_code: the HTTP status of the answer.
    :param body: the JSON body of the answer (an error body ``{"error": {...}}`` when not 2xx).
    :param usage: the body's ``usage`` in the endpoint's own shape (``prompt_tokens`` /
        ``completion_tokens`` or ``input_tokens`` / ``output_tokens``), None when it has none.
    """

    status_code: int
    body: JSON
    usage: JSON | None = None

    @property
    def ok(self) -> bool:
        """True for a 2xx answer (its line goes to the output file, not the error file)."""
        return 200 <= self.status_code < 300

    @property
    def input_tokens(self) -> int:
        """Input tokens of :attr:`usage`, whichever shape the endpoint uses (0 without usage)."""
        return _token_count(self.usage, "input_tokens", "prompt_tokens")

    @property
    def output_tokens(self) -> int:
        """Output tokens of :attr:`usage`, whichever shape the endpoint uses (0 without usage)."""
        return _token_count(self.usage, "output_tokens", "completion_tokens")


def _token_count(usage: JSON | None, *names: str) -> int:
    for name in names:
        value = (usage or {}).get(name)
        if isinstance(value, int):
            return value
    return 0


class Executor(Protocol):
    """Executes one request of a batch; never raises for a bad request or a failed server."""

    async def execute(self, url: str, body: JSON) -> Execution:
        """Answer ``body`` sent with POST to ``url`` (an endpoint path such as ``/v1/embeddings``)."""
        ...

    async def aclose(self) -> None:
        """Release what the executor holds (connections); it may be used again afterwards."""
        ...


_STATUS_ERRORS: dict[int, tuple[str, str, str | None]] = {
    401: ("Incorrect API key provided.", "invalid_request_error", "invalid_api_key"),
    404: ("The model does not exist or you do not have access to it.", "invalid_request_error", None),
    429: (
        "Rate limit reached for requests. Please try again in 1s.",
        "requests",
        "rate_limit_exceeded",
    ),
    500: ("The server had an error while processing your request. Sorry about that!", "server_error", None),
    502: ("Bad gateway.", "server_error", None),
    503: ("The engine is currently overloaded, please try again later.", "server_error", None),
}


def status_error(status_code: int) -> APIError:
    """The live API's error for an HTTP error status, as the emulator forces or injects it."""
    default_type = "server_error" if status_code >= 500 else "invalid_request_error"
    message, type_, code = _STATUS_ERRORS.get(
        status_code, (f"The request failed with status {status_code}.", default_type, None)
    )
    return APIError(status_code, message, type=type_, code=code)


def _failed(error: APIError) -> Execution:
    return Execution(error.status_code, error.body())


# --- validation, with the live API's messages ------------------------------------------------------


def _invalid(message: str, param: str | None = None, code: str | None = None) -> APIError:
    return APIError(400, message, param=param, code=code)


def _wrong_type(param: str, expected: str, value: object) -> APIError:
    return _invalid(
        f"Invalid type for '{param}': expected {expected}, but got {json_type_name(value)} instead.",
        param=param,
        code="invalid_type",
    )


def _optional_int(body: JSON, param: str, minimum: int = 1) -> int | None:
    value = body.get(param)
    if value is None:
        return None
    if not isinstance(value, int) or isinstance(value, bool):
        raise _wrong_type(param, "an integer", value)
    if value < minimum:
        raise _invalid(
            f"Invalid '{param}': integer below minimum value. Expected a value >= {minimum}, "
            f"but got {value} instead.",
            param=param,
            code="integer_below_min_value",
        )
    return value


def _model(body: JSON, default: str | None = None) -> str:
    model = body.get("model", default)
    if model is None or model == "":
        raise _invalid("you must provide a model parameter")
    if not isinstance(model, str):
        raise _wrong_type("model", "a string", model)
    return model


def _forced_status(body: JSON, model: str) -> int | None:
    """The status a test asked for with ``emulator_fail`` or an ``emulator-fail-<status>`` model."""
    if FAIL_FIELD in body:
        value, param = body[FAIL_FIELD], FAIL_FIELD
    elif model.startswith(FAIL_MODEL_PREFIX):
        value, param = model.removeprefix(FAIL_MODEL_PREFIX), "model"
    else:
        return None
    try:
        status = int(value)
    except (TypeError, ValueError):
        status = 0
    if not 400 <= status <= 599:
        raise _invalid(
            f"Invalid value: {value!r}. The emulator can only force an HTTP error status (400-599).",
            param=param,
            code="invalid_value",
        )
    return status


_CHAT_ROLES = ("system", "assistant", "user", "function", "tool", "developer")
_CONTENT_OPTIONAL_ROLES = frozenset({"assistant"})


def _content_text(content: object, param: str) -> str:
    """The text of a message's content: a string or an array of parts (text parts are kept)."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        texts = []
        for index, part in enumerate(content):
            if not isinstance(part, dict):
                raise _wrong_type(f"{param}[{index}]", "an object", part)
            text = part.get("text")
            if isinstance(text, str):
                texts.append(text)
        return " ".join(texts)
    raise _wrong_type(param, "one of a string or array of objects", content)


def _chat_messages(body: JSON) -> list[tuple[str, str]]:
    """Validated ``(role, text)`` pairs of a chat completions body."""
    messages = body.get("messages")
    if messages is None:
        raise missing_parameter("messages")
    if not isinstance(messages, list):
        raise _wrong_type("messages", "an array", messages)
    if not messages:
        raise _invalid(
            "Invalid 'messages': empty array. Expected an array with minimum length 1, "
            "but got an empty array instead.",
            param="messages",
            code="empty_array",
        )
    pairs = []
    for index, message in enumerate(messages):
        where = f"messages[{index}]"
        if not isinstance(message, dict):
            raise _wrong_type(where, "an object", message)
        role = message.get("role")
        if role is None:
            raise missing_parameter(f"{where}.role")
        if role not in _CHAT_ROLES:
            supported = ", ".join(f"'{name}'" for name in _CHAT_ROLES[:-1])
            raise _invalid(
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
        pairs.append((role, text))
    return pairs


def _response_input(body: JSON) -> list[tuple[str, str]]:
    """Validated ``(role, text)`` pairs of a responses body's ``instructions`` and ``input``."""
    pairs = []
    instructions = body.get("instructions")
    if instructions is not None:
        if not isinstance(instructions, str):
            raise _wrong_type("instructions", "a string", instructions)
        pairs.append(("developer", instructions))
    items = body.get("input")
    if items is None:
        if body.get("previous_response_id") or body.get("conversation"):
            return pairs
        raise missing_parameter("input")
    if isinstance(items, str):
        return [*pairs, ("user", items)]
    if not isinstance(items, list):
        raise _wrong_type("input", "one of a string or array of input items", items)
    if not items:
        raise _invalid(
            "Invalid 'input': empty array. Expected an array with minimum length 1, "
            "but got an empty array instead.",
            param="input",
            code="empty_array",
        )
    for index, item in enumerate(items):
        where = f"input[{index}]"
        if not isinstance(item, dict):
            raise _wrong_type(where, "an object", item)
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


def _texts(
    body: JSON, param: str, *, tokens: bool = False, parts: bool = False, nonempty: bool = False
) -> list[str]:
    """The inputs of a completions, embeddings or moderations body, one text per input.

    :param param: the body field holding the inputs (a string or an array of strings).
    :param tokens: also accept an array of token ids, or an array of such arrays (each token
        array stands for the text of its ids).
    :param parts: also accept an array of content parts (``{"type": "text", "text": ...}``).
    :param nonempty: reject an empty string, as the embeddings endpoint does.
    """
    value = body.get(param)
    if value is None:
        raise missing_parameter(param)
    invalid = _invalid(
        f"'$.{param}' is invalid. Please check the API reference: https://platform.openai.com/docs/api-reference."
    )
    if isinstance(value, str):
        inputs: list[object] = [value]
    elif isinstance(value, list):
        inputs = [value] if value and tokens and all(_is_token(item) for item in value) else value
    else:
        raise _wrong_type(param, "one of a string or array of strings", value)
    if not inputs:
        raise invalid
    texts = []
    for item in inputs:
        if isinstance(item, str):
            text = item
        elif parts and isinstance(item, dict):
            text = item.get("text", "") if item.get("type") == "text" else ""
        elif tokens and isinstance(item, list) and item and all(_is_token(token) for token in item):
            text = " ".join(map(str, item))
        else:
            raise invalid
        if nonempty and not text:
            raise invalid
        texts.append(text)
    return texts


def _is_token(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


# --- deterministic content -------------------------------------------------------------------------

_CHARS_PER_TOKEN = 4
_SNIPPET_CHARS = 160
_WORD = re.compile(r"\w+")


def count_tokens(text: str) -> int:
    """A cheap, deterministic stand-in for a tokenizer: about one token per four characters."""
    return -(-len(text) // _CHARS_PER_TOKEN)


def _prompt_tokens(pairs: list[tuple[str, str]]) -> int:
    # The live chat format costs 3 tokens per message and 3 to prime the reply.
    return sum(count_tokens(text) + 3 for _, text in pairs) + 3


def _digest(url: str, body: JSON) -> str:
    canonical = json.dumps([url, body], sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.blake2b(canonical.encode(), digest_size=16).hexdigest()


def _reply(pairs: list[tuple[str, str]]) -> str:
    prompt = next((text for role, text in reversed(pairs) if role == "user" and text), "")
    if not prompt:
        prompt = next((text for _, text in reversed(pairs) if text), "")
    snippet = " ".join(prompt.split())
    if len(snippet) > _SNIPPET_CHARS:
        snippet = snippet[: _SNIPPET_CHARS - 3].rstrip() + "..."
    return f"Emulated reply to: {snippet}" if snippet else "Emulated reply."


def _cut(text: str, max_tokens: int | None) -> tuple[str, int, bool]:
    """``text`` cut to ``max_tokens``: ``(text, tokens, was_cut)``."""
    tokens = count_tokens(text)
    if max_tokens is None or tokens <= max_tokens:
        return text, tokens, False
    return text[: max_tokens * _CHARS_PER_TOKEN], max_tokens, True


def _embedding(model: str, text: str, dimensions: int) -> list[float]:
    """A unit vector for ``text``: hashed word features over a noise floor from model and text.

    Each word adds +-1 at four hashed positions, so texts sharing words have a higher cosine
    similarity; pseudo-random noise from the model and the whole text keeps every vector dense
    and distinct.
    """
    words = _WORD.findall(text.lower())
    noise = array("h", hashlib.shake_256(f"{model}\n{text}".encode()).digest(2 * dimensions))
    if sys.byteorder == "big":
        noise.byteswap()
    # Uniform int16 noise has a norm of about 18918 * sqrt(dimensions); scale it to half the
    # norm of the word features (which is about 2 * sqrt(len(words))).
    scale = max(math.sqrt(len(words)), 1.0) / (18918.0 * math.sqrt(dimensions))
    values = [sample * scale for sample in noise]
    for word in words:
        digest = hashlib.blake2b(word.encode(), digest_size=16).digest()
        for offset in range(0, 16, 4):
            position = int.from_bytes(digest[offset : offset + 4], "little")
            values[(position >> 1) % dimensions] += 1.0 if position & 1 else -1.0
    inverse_norm = 1.0 / (math.hypot(*values) or 1.0)
    return [value * inverse_norm for value in values]


def _encode_embedding(vector: list[float], encoding_format: str) -> list[float] | str:
    if encoding_format == "float":
        return vector
    packed = array("f", vector)
    if sys.byteorder == "big":
        packed.byteswap()
    return base64.b64encode(packed.tobytes()).decode("ascii")


_MODERATION_CATEGORIES = (
    "harassment",
    "harassment/threatening",
    "hate",
    "hate/threatening",
    "illicit",
    "illicit/violent",
    "self-harm",
    "self-harm/instructions",
    "self-harm/intent",
    "sexual",
    "sexual/minors",
    "violence",
    "violence/graphic",
)
_FLAGGED_SCORE = 0.93


def _moderation(text: str) -> JSON:
    lowered = text.lower()
    digest = hashlib.blake2b(text.encode(), digest_size=len(_MODERATION_CATEGORIES)).digest()
    categories = {}
    scores = {}
    for category, byte in zip(_MODERATION_CATEGORIES, digest, strict=True):
        flagged = category in lowered
        categories[category] = flagged
        scores[category] = _FLAGGED_SCORE if flagged else round(byte / 255 * 1e-3, 8)
    return {
        "flagged": any(categories.values()),
        "categories": categories,
        "category_scores": scores,
        "category_applied_input_types": {category: ["text"] for category in _MODERATION_CATEGORIES},
    }


# --- the local executor ----------------------------------------------------------------------------


class LocalExecutor:
    """Deterministic answers for the five batch endpoints, computed in this process.

    :param clock: where the ``created`` timestamps come from (default ``time.time``); pass a
        constant to make whole bodies reproducible.
    """

    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        self._clock = clock
        self._handlers: dict[str, Callable[[JSON, str], Execution]] = {
            "/v1/chat/completions": self._chat_completion,
            "/v1/responses": self._response,
            "/v1/completions": self._completion,
            "/v1/embeddings": self._embeddings,
            "/v1/moderations": self._moderations,
        }

    @property
    def endpoints(self) -> tuple[str, ...]:
        """The endpoint paths this executor answers."""
        return tuple(self._handlers)

    async def execute(self, url: str, body: JSON) -> Execution:
        """Answer ``body`` sent to ``url``; an unknown ``url`` gets the live 404."""
        return self.execute_sync(url, body)

    def execute_sync(self, url: str, body: JSON) -> Execution:
        """:meth:`execute` without the event loop (it does no I/O)."""
        handler = self._handlers.get(url)
        if handler is None:
            return _failed(APIError(404, f"Invalid URL (POST {url})"))
        if not isinstance(body, dict):
            message = f"Invalid type for body: expected an object, got {json_type_name(body)}."
            return _failed(_invalid(message))
        try:
            model = _model(body, _DEFAULT_MODERATION_MODEL if url == "/v1/moderations" else None)
            status = _forced_status(body, model)
            if status is not None:
                return _failed(status_error(status))
            return handler(body, model)
        except APIError as error:
            return _failed(error)

    async def aclose(self) -> None:
        """Nothing to release."""

    def _created(self) -> int:
        return int(self._clock())

    def _chat_completion(self, body: JSON, model: str) -> Execution:
        pairs = _chat_messages(body)
        n = _optional_int(body, "n") or 1
        limit = _optional_int(body, "max_completion_tokens") or _optional_int(body, "max_tokens")
        text, tokens, was_cut = _cut(_reply(pairs), limit)
        digest = _digest("/v1/chat/completions", body)
        prompt_tokens = _prompt_tokens(pairs)
        usage = {
            "prompt_tokens": prompt_tokens,
            "completion_tokens": tokens * n,
            "total_tokens": prompt_tokens + tokens * n,
            "prompt_tokens_details": {"cached_tokens": 0, "audio_tokens": 0},
            "completion_tokens_details": {
                "reasoning_tokens": 0,
                "audio_tokens": 0,
                "accepted_prediction_tokens": 0,
                "rejected_prediction_tokens": 0,
            },
        }
        choice_message: JSON = {"role": "assistant", "content": text, "refusal": None, "annotations": []}
        return Execution(
            200,
            {
                "id": f"chatcmpl-{digest}",
                "object": "chat.completion",
                "created": self._created(),
                "model": model,
                "choices": [
                    {
                        "index": index,
                        "message": dict(choice_message),
                        "logprobs": None,
                        "finish_reason": "length" if was_cut else "stop",
                    }
                    for index in range(n)
                ],
                "usage": usage,
                "service_tier": "default",
                "system_fingerprint": "fp_emulator",
            },
            usage,
        )

    def _response(self, body: JSON, model: str) -> Execution:
        pairs = _response_input(body)
        limit = _optional_int(body, "max_output_tokens", minimum=16)
        text, tokens, was_cut = _cut(_reply(pairs), limit)
        digest = _digest("/v1/responses", body)
        input_tokens = _prompt_tokens(pairs)
        usage = {
            "input_tokens": input_tokens,
            "input_tokens_details": {"cached_tokens": 0, "cache_write_tokens": 0},
            "output_tokens": tokens,
            "output_tokens_details": {"reasoning_tokens": 0},
            "total_tokens": input_tokens + tokens,
        }
        status = "incomplete" if was_cut else "completed"
        created = self._created()
        return Execution(
            200,
            {
                "id": f"resp_{digest}",
                "object": "response",
                "created_at": created,
                "status": status,
                "completed_at": None if was_cut else created,
                "error": None,
                "incomplete_details": {"reason": "max_output_tokens"} if was_cut else None,
                "instructions": body.get("instructions"),
                "max_output_tokens": limit,
                "model": model,
                "output": [
                    {
                        "id": f"msg_{digest}",
                        "type": "message",
                        "status": status,
                        "role": "assistant",
                        "content": [{"type": "output_text", "text": text, "annotations": [], "logprobs": []}],
                    }
                ],
                "parallel_tool_calls": body.get("parallel_tool_calls", True),
                "previous_response_id": body.get("previous_response_id"),
                "reasoning": {"effort": None, "summary": None},
                "store": body.get("store", True),
                "temperature": body.get("temperature", 1.0),
                "text": body.get("text", {"format": {"type": "text"}}),
                "tool_choice": body.get("tool_choice", "auto"),
                "tools": body.get("tools", []),
                "top_p": body.get("top_p", 1.0),
                "truncation": body.get("truncation", "disabled"),
                "usage": usage,
                "user": body.get("user"),
                "metadata": body.get("metadata", {}),
            },
            usage,
        )

    def _completion(self, body: JSON, model: str) -> Execution:
        prompts = _texts(body, "prompt", tokens=True)
        n = _optional_int(body, "n") or 1
        limit = _optional_int(body, "max_tokens", minimum=0)
        limit = 16 if limit is None else limit  # the legacy endpoint's default
        choices = []
        completion_tokens = 0
        for prompt_index, prompt in enumerate(prompts):
            text, tokens, was_cut = _cut(_reply([("user", prompt)]), limit)
            for copy in range(n):
                choices.append(
                    {
                        "index": prompt_index * n + copy,
                        "text": text,
                        "logprobs": None,
                        "finish_reason": "length" if was_cut else "stop",
                    }
                )
                completion_tokens += tokens
        prompt_tokens = sum(count_tokens(prompt) for prompt in prompts)
        usage = {
            "prompt_tokens": prompt_tokens,
            "completion_tokens": completion_tokens,
            "total_tokens": prompt_tokens + completion_tokens,
        }
        return Execution(
            200,
            {
                "id": f"cmpl-{_digest('/v1/completions', body)}",
                "object": "text_completion",
                "created": self._created(),
                "model": model,
                "choices": choices,
                "usage": usage,
                "system_fingerprint": "fp_emulator",
            },
            usage,
        )

    def _embeddings(self, body: JSON, model: str) -> Execution:
        texts = _texts(body, "input", tokens=True, nonempty=True)
        if len(texts) > _MAX_EMBEDDING_INPUTS:
            raise _invalid(
                f"Invalid 'input': array too long. Expected an array with maximum length "
                f"{_MAX_EMBEDDING_INPUTS}, but got an array with length {len(texts)} instead.",
                param="input",
                code="array_above_max_length",
            )
        native = EMBEDDING_DIMENSIONS.get(model, DEFAULT_EMBEDDING_DIMENSIONS)
        dimensions = _optional_int(body, "dimensions")
        if dimensions is None:
            dimensions = native
        elif model in _FIXED_SIZE_EMBEDDING_MODELS:
            raise _invalid("This model does not support specifying dimensions.", "dimensions")
        elif dimensions > native:
            raise _invalid(
                f"Invalid value for 'dimensions' = {dimensions}. Must be less than or equal to {native}.",
                param="dimensions",
                code="invalid_value",
            )
        encoding_format = body.get("encoding_format") or "float"
        if encoding_format not in ("float", "base64"):
            raise _invalid(
                f"Invalid value: {encoding_format!r}. Supported values are: 'float' and 'base64'.",
                param="encoding_format",
                code="invalid_value",
            )
        tokens = sum(count_tokens(text) for text in texts)
        usage = {"prompt_tokens": tokens, "total_tokens": tokens}
        data = [
            {
                "object": "embedding",
                "index": index,
                "embedding": _encode_embedding(_embedding(model, text, dimensions), encoding_format),
            }
            for index, text in enumerate(texts)
        ]
        return Execution(200, {"object": "list", "data": data, "model": model, "usage": usage}, usage)

    def _moderations(self, body: JSON, model: str) -> Execution:
        texts = _texts(body, "input", parts=True)
        return Execution(
            200,
            {
                "id": f"modr-{_digest('/v1/moderations', body)}",
                "model": model,
                "results": [_moderation(text) for text in texts],
            },
        )


# --- the upstream executor -------------------------------------------------------------------------

_RETRIED_STATUSES = frozenset({408, 429, 500, 502, 503, 504})
_MAX_RETRY_WAIT = 30.0


class UpstreamExecutor:
    """Sends each request to a real OpenAI-compatible server and relays its answer.

    A request for ``/v1/<endpoint>`` goes to ``{base_url}/<endpoint>``: ``base_url`` is the
    server's API root as the SDK takes it (``https://api.openai.com/v1``,
    ``http://localhost:8000/v1``). Connection errors, timeouts, 408, 429 and 5xx are retried with
    exponential backoff (honouring ``Retry-After``); what still fails becomes an error
    :class:`Execution` (502 when the server could not be reached, 504 on a timeout).

    :param base_url: the upstream server's API root.
    :param api_key: sent as ``Authorization: Bearer``; None sends no such header.
    :param timeout: seconds to wait for one answer (default 600: long generations).
    :param max_retries: retries after the first attempt (default 2).
    :param max_connections: concurrent connections to the upstream server (default 64).
    """

    def __init__(
        self,
        base_url: str,
        api_key: str | None = None,
        *,
        timeout: float = 600.0,
        max_retries: int = 2,
        max_connections: int = 64,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self._headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self._timeout = httpx.Timeout(timeout, connect=min(timeout, 10.0))
        self._max_retries = max_retries
        self._limits = httpx.Limits(
            max_connections=max_connections, max_keepalive_connections=max_connections
        )
        # One client per event loop: an httpx.AsyncClient must not cross loops.
        self._clients: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, httpx.AsyncClient] = (
            weakref.WeakKeyDictionary()
        )

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.base_url!r})"

    def target(self, url: str) -> str:
        """The upstream URL that answers ``url``."""
        return self.base_url + (url[3:] if url.startswith("/v1/") else url)

    async def execute(self, url: str, body: JSON) -> Execution:
        """Relay ``body`` to the upstream server; never raises for a failed or unreachable server."""
        target = self.target(url)
        try:
            response = await self._post_with_retries(target, body)
        except httpx.TimeoutException:
            message = f"The upstream server did not answer POST {target} in time."
            return _failed(APIError(504, message, type="server_error", code="upstream_timeout"))
        except httpx.TransportError as exc:
            message = f"The upstream server could not be reached for POST {target}: {type(exc).__name__}."
            return _failed(APIError(502, message, type="server_error", code="upstream_unreachable"))
        try:
            answer = response.json()
        except ValueError:
            answer = None
        if not isinstance(answer, dict):
            message = (
                f"The upstream server answered POST {target} with status {response.status_code} "
                "and a body that is not a JSON object."
            )
            status = response.status_code if response.is_error else 502
            return _failed(APIError(status, message, type="server_error", code="upstream_invalid_body"))
        usage = answer.get("usage")
        return Execution(response.status_code, answer, usage if isinstance(usage, dict) else None)

    async def _post_with_retries(self, target: str, body: JSON) -> httpx.Response:
        client = self._client()
        retrying = AsyncRetrying(
            retry=retry_if_exception_type(httpx.TransportError)
            | retry_if_result(lambda response: response.status_code in _RETRIED_STATUSES),
            stop=stop_after_attempt(self._max_retries + 1),
            wait=_retry_wait,
            retry_error_callback=_last_outcome,
        )
        response: httpx.Response = await retrying(client.post, target, json=body)
        return response

    def _client(self) -> httpx.AsyncClient:
        loop = asyncio.get_running_loop()
        client = self._clients.get(loop)
        if client is None or client.is_closed:
            client = httpx.AsyncClient(headers=self._headers, timeout=self._timeout, limits=self._limits)
            self._clients[loop] = client
        return client

    async def aclose(self) -> None:
        """Close the connections of the running event loop's client."""
        client = self._clients.pop(asyncio.get_running_loop(), None)
        if client is not None:
            await client.aclose()


def _retry_wait(retry_state: Any) -> float:
    """Exponential backoff from 0.5 s, or the server's ``Retry-After`` when it sends one."""
    outcome = retry_state.outcome
    if outcome is not None and not outcome.failed:
        headers = outcome.result().headers
        for name, unit in (("retry-after-ms", 0.001), ("retry-after", 1.0)):
            try:
                return min(float(headers[name]) * unit, _MAX_RETRY_WAIT)
            except (KeyError, ValueError):
                continue
    return min(0.5 * 2 ** (retry_state.attempt_number - 1), _MAX_RETRY_WAIT)


def _last_outcome(retry_state: Any) -> httpx.Response:
    """When retries run out: the last response, or the last transport error raised again."""
    return retry_state.outcome.result()


def make_executor(settings: EmulatorSettings | Any) -> Executor:
    """The executor ``settings`` ask for: upstream when ``upstream_url`` is set, else local.

    Reads ``settings.upstream_url``, ``settings.upstream_api_key`` (a string or ``SecretStr``) and,
    when present, ``settings.upstream_timeout``.
    """
    upstream_url = getattr(settings, "upstream_url", None)
    if not upstream_url:
        return LocalExecutor()
    api_key = getattr(settings, "upstream_api_key", None)
    if isinstance(api_key, SecretStr):
        api_key = api_key.get_secret_value()
    timeout = getattr(settings, "upstream_timeout", None)
    return UpstreamExecutor(str(upstream_url), api_key=api_key, timeout=timeout or 600.0)


__all__ = [
    "FAIL_FIELD",
    "FAIL_MODEL_PREFIX",
    "Execution",
    "Executor",
    "LocalExecutor",
    "UpstreamExecutor",
    "count_tokens",
    "make_executor",
    "status_error",
]
