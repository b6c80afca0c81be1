"""The local executor: deterministic answers for the five batch endpoints, without any model.

The same request always gets the same answer (ids, text, vectors and token counts are derived
from a hash of the request; only the ``created`` timestamps follow the clock). The answers
parse with the official SDK's types (``ChatCompletion``, ``Response``, ``Completion``,
``CreateEmbeddingResponse``, ``ModerationCreateResponse``); a body the live endpoint would
reject gets status 400 with the live error body (see
:mod:`~airflow_batch_provider.emulator.checks`).

- chat completions, responses and completions: the reply of
  :func:`~airflow_batch_provider.emulator.content.reply_text`, cut to ``max_tokens`` /
  ``max_completion_tokens`` / ``max_output_tokens`` (then ``finish_reason`` is ``"length"``,
  or the response is ``incomplete``); ``n`` choices where the endpoint has them.
- structured output (``response_format`` / ``text.format`` of type ``json_schema`` or
  ``json_object``) and ``tools``: JSON that validates against the schema, or a call of a
  function whose arguments validate against its ``parameters`` (see
  :mod:`~airflow_batch_provider.emulator.structured`).
- embeddings: unit vectors of the model's size (``text-embedding-3-large``: 3072, other models
  1536) or ``dimensions``, as floats or ``base64``.
- moderations: one result per input.

A request forced to fail (``emulator_fail`` or an ``emulator-fail-<status>`` model) gets the
live error body of that status (429: ``rate_limit_exceeded``, 5xx: ``server_error``).
"""

from __future__ import annotations

import time
from collections.abc import Callable

from airflow_batch_provider.emulator import checks, content, structured
from airflow_batch_provider.emulator.errors import APIError, invalid, json_type_name, status_error
from airflow_batch_provider.emulator.executors.base import JSON, Execution
from airflow_batch_provider.rules import EMBEDDINGS_ENDPOINT

_LEGACY_COMPLETION_MAX_TOKENS = 16
"""What ``/v1/completions`` generates at most when the body does not say."""


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
            EMBEDDINGS_ENDPOINT: self._embeddings,
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
            return Execution.of_error(APIError(404, f"Invalid URL (POST {url})"))
        if not isinstance(body, dict):
            message = f"Invalid type for body: expected an object, got {json_type_name(body)}."
            return Execution.of_error(invalid(message))
        try:
            default_model = checks.DEFAULT_MODERATION_MODEL if url == "/v1/moderations" else None
            model = checks.model_name(body, default_model)
            status = checks.forced_status(body, model)
            if status is not None:
                return Execution.of_error(status_error(status))
            return handler(body, model)
        except APIError as error:
            return Execution.of_error(error)

    async def aclose(self) -> None:
        """Nothing to release."""

    def _created(self) -> int:
        return int(self._clock())

    def _chat_completion(self, body: JSON, model: str) -> Execution:
        messages = checks.chat_messages(body)
        n = checks.optional_int(body, "n") or 1
        limit = checks.optional_int(body, "max_completion_tokens") or checks.optional_int(body, "max_tokens")
        digest = content.request_digest("/v1/chat/completions", body)
        output = structured.chat_output(body, messages)
        wanted = structured.chat_tool_call(body, messages) or output
        message, tokens, finish_reason = _chat_message(wanted, digest, messages, limit)
        prompt_tokens = content.prompt_tokens(messages)
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
        choices = [
            {"index": index, "message": dict(message), "logprobs": None, "finish_reason": finish_reason}
            for index in range(n)
        ]
        answer = {
            "id": f"chatcmpl-{digest}",
            "object": "chat.completion",
            "created": self._created(),
            "model": model,
            "choices": choices,
            "usage": usage,
            "service_tier": "default",
            "system_fingerprint": "fp_emulator",
        }
        return Execution(200, answer, usage)

    def _response(self, body: JSON, model: str) -> Execution:
        messages = checks.response_input(body)
        limit = checks.optional_int(body, "max_output_tokens", minimum=16)
        digest = content.request_digest("/v1/responses", body)
        output = structured.response_output(body)
        wanted = structured.response_tool_call(body, messages) or output
        item, tokens, was_cut = _response_item(wanted, digest, messages, limit)
        input_tokens = content.prompt_tokens(messages)
        usage = {
            "input_tokens": input_tokens,
            "input_tokens_details": {"cached_tokens": 0, "cache_write_tokens": 0},
            "output_tokens": tokens,
            "output_tokens_details": {"reasoning_tokens": 0},
            "total_tokens": input_tokens + tokens,
        }
        status = "incomplete" if was_cut else "completed"
        created = self._created()
        answer = {
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
            "output": [item],
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
        }
        return Execution(200, answer, usage)

    def _completion(self, body: JSON, model: str) -> Execution:
        prompts = checks.input_texts(body, "prompt", tokens=True)
        n = checks.optional_int(body, "n") or 1
        limit = checks.optional_int(body, "max_tokens", minimum=0)
        if limit is None:
            limit = _LEGACY_COMPLETION_MAX_TOKENS
        choices = []
        completion_tokens = 0
        for prompt_index, prompt in enumerate(prompts):
            text, tokens, was_cut = content.cut_to_tokens(content.reply_text([("user", prompt)]), limit)
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
        prompt_tokens = sum(content.count_tokens(prompt) for prompt in prompts)
        usage = {
            "prompt_tokens": prompt_tokens,
            "completion_tokens": completion_tokens,
            "total_tokens": prompt_tokens + completion_tokens,
        }
        answer = {
            "id": f"cmpl-{content.request_digest('/v1/completions', body)}",
            "object": "text_completion",
            "created": self._created(),
            "model": model,
            "choices": choices,
            "usage": usage,
            "system_fingerprint": "fp_emulator",
        }
        return Execution(200, answer, usage)

    def _embeddings(self, body: JSON, model: str) -> Execution:
        texts = checks.embedding_inputs(body)
        dimensions = checks.embedding_dimensions(body, model)
        encoding_format = checks.encoding_format(body)
        tokens = sum(content.count_tokens(text) for text in texts)
        usage = {"prompt_tokens": tokens, "total_tokens": tokens}
        data = [
            {
                "object": "embedding",
                "index": index,
                "embedding": content.encode_embedding(
                    content.embedding(model, text, dimensions), encoding_format
                ),
            }
            for index, text in enumerate(texts)
        ]
        return Execution(200, {"object": "list", "data": data, "model": model, "usage": usage}, usage)

    def _moderations(self, body: JSON, model: str) -> Execution:
        texts = checks.input_texts(body, "input", parts=True)
        answer = {
            "id": f"modr-{content.request_digest('/v1/moderations', body)}",
            "model": model,
            "results": [content.moderation(text) for text in texts],
        }
        return Execution(200, answer)


Wanted = structured.JSONOutput | structured.ToolCall | None
"""What an answer must be: JSON, a call of a function, or (None) text."""


def _answer_text(wanted: Wanted, digest: str, messages: checks.Messages) -> str:
    reply = content.reply_text(messages)
    if wanted is None:
        return reply
    return structured.json_text(wanted, digest, content.prompt_snippet(messages), reply)


def _chat_message(
    wanted: Wanted, digest: str, messages: checks.Messages, limit: int | None
) -> tuple[JSON, int, str]:
    """A chat completion's ``message``, its completion tokens and its ``finish_reason``."""
    text = _answer_text(wanted, digest, messages)
    message: JSON = {"role": "assistant", "content": text, "refusal": None, "annotations": []}
    if isinstance(wanted, structured.ToolCall):
        function = {"name": wanted.name, "arguments": text}
        message["content"] = None
        message["tool_calls"] = [{"id": f"call_{digest[:24]}", "type": "function", "function": function}]
        return message, content.count_tokens(text), "tool_calls"
    message["content"], tokens, was_cut = content.cut_to_tokens(text, limit)
    return message, tokens, "length" if was_cut else "stop"


def _response_item(
    wanted: Wanted, digest: str, messages: checks.Messages, limit: int | None
) -> tuple[JSON, int, bool]:
    """A response's one ``output`` item (a message, or a function call), its tokens, and whether it
    was cut at ``limit``."""
    text = _answer_text(wanted, digest, messages)
    if isinstance(wanted, structured.ToolCall):
        call = {
            "id": f"fc_{digest}",
            "type": "function_call",
            "status": "completed",
            "call_id": f"call_{digest[:24]}",
            "name": wanted.name,
            "arguments": text,
        }
        return call, content.count_tokens(text), False
    text, tokens, was_cut = content.cut_to_tokens(text, limit)
    output_text = {"type": "output_text", "text": text, "annotations": [], "logprobs": []}
    status = "incomplete" if was_cut else "completed"
    message = {
        "id": f"msg_{digest}",
        "type": "message",
        "status": status,
        "role": "assistant",
        "content": [output_text],
    }
    return message, tokens, was_cut
