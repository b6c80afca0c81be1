"""Structured output and tool calls: what a request asks for, checked with the live API's messages.

- :func:`chat_output` reads chat completions' ``response_format`` and :func:`response_output`
  the Responses API's ``text.format``: ``json_schema`` (an answer that validates against the
  schema) or ``json_object`` (a JSON object; the conversation must mention JSON, as the live API
  requires for chat).
- :func:`chat_tool_call` and :func:`response_tool_call` read ``tools`` and ``tool_choice``:
  ``"none"`` answers in text; a named function is called; ``"required"`` calls the function whose
  name and description share most words with the last user text (ties: the first); ``"auto"``
  (the default when tools are given) does the same, except that it answers in text once the
  conversation ends with a tool's result.
- A schema sent with ``strict: true`` must be one the live API takes in strict mode: every
  object closed (``additionalProperties: false``) with every property required; otherwise 400,
  worded as the live API words it.

:func:`json_text` makes the answer itself (see :mod:`~airflow_batch_provider.emulator.schema_values`).
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from airflow_batch_provider.emulator.checks import Messages
from airflow_batch_provider.emulator.errors import (
    APIError,
    invalid,
    invalid_value,
    missing_parameter,
    wrong_type,
)
from airflow_batch_provider.emulator.schema_values import value_for_schema

JSON = dict[str, Any]
TOOL_CHOICES = ("none", "auto", "required")
_WORDS = re.compile(r"[a-z0-9]+")
_CAMEL = re.compile(r"(?<=[a-z0-9])(?=[A-Z])")


@dataclass(frozen=True)
class JSONOutput:
    """An answer that must be JSON: of ``schema``, or any object (``json_object``) when None."""

    schema: JSON | None


@dataclass(frozen=True)
class ToolCall:
    """The function the answer calls, and the schema its arguments must validate against."""

    name: str
    parameters: JSON


def json_text(output: JSONOutput | ToolCall, seed: str, prompt: str, fallback: str) -> str:
    """The JSON text of a structured answer or of a call's arguments, compact as the live API's.

    :param seed: what makes the answer particular to the request (its digest).
    :param prompt: the last user text; the strings of the answer quote it.
    :param fallback: the plain reply, the answer of ``json_object``.
    """
    schema = output.parameters if isinstance(output, ToolCall) else output.schema
    value = {"reply": fallback} if schema is None else value_for_schema(schema, seed, prompt)
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)


# -- structured output --


def chat_output(body: JSON, messages: Messages) -> JSONOutput | None:
    """What chat completions' ``response_format`` asks for; None for text."""
    value = body.get("response_format")
    if value is None:
        return None
    if not isinstance(value, dict):
        raise wrong_type("response_format", "an object", value)
    kind = value.get("type")
    if kind == "json_schema":
        spec = value.get("json_schema")
        if spec is None:
            raise missing_parameter("response_format.json_schema")
        if not isinstance(spec, dict):
            raise wrong_type("response_format.json_schema", "an object", spec)
        return _schema_output(spec, "response_format.json_schema", "response_format")
    if kind == "json_object":
        if not any("json" in text.lower() for _, text in messages):
            raise invalid(
                "'messages' must contain the word 'json' in some form, to use 'response_format' of type "
                "'json_object'.",
                param="messages",
            )
        return JSONOutput(None)
    if kind == "text":
        return None
    raise invalid_value("response_format.type", kind, ("text", "json_object", "json_schema"))


def response_output(body: JSON) -> JSONOutput | None:
    """What the Responses API's ``text.format`` asks for; None for text."""
    text = body.get("text")
    if text is None:
        return None
    if not isinstance(text, dict):
        raise wrong_type("text", "an object", text)
    value = text.get("format")
    if value is None:
        return None
    if not isinstance(value, dict):
        raise wrong_type("text.format", "an object", value)
    kind = value.get("type")
    if kind == "json_schema":
        return _schema_output(value, "text.format", "text.format")
    if kind == "json_object":
        return JSONOutput(None)
    if kind == "text":
        return None
    raise invalid_value("text.format.type", kind, ("text", "json_object", "json_schema"))


def _schema_output(spec: JSON, where: str, label_param: str) -> JSONOutput:
    name = spec.get("name")
    if not name:
        raise missing_parameter(f"{where}.name")
    schema = spec.get("schema")
    if schema is None:
        raise missing_parameter(f"{where}.schema")
    if not isinstance(schema, dict):
        raise wrong_type(f"{where}.schema", "an object", schema)
    if spec.get("strict") is True:
        check_strict(schema, f"response_format '{name}'", label_param)
    return JSONOutput(schema)


# -- tools --


@dataclass(frozen=True)
class _Tool:
    name: str
    description: str
    parameters: JSON


def chat_tool_call(body: JSON, messages: Messages) -> ToolCall | None:
    """The function chat completions' ``tools`` and ``tool_choice`` make the answer call, or None."""
    tools = list(_tools(body, nested=True))
    return _choose(body, tools, messages, nested=True)


def response_tool_call(body: JSON, messages: Messages) -> ToolCall | None:
    """The function the Responses API's ``tools`` and ``tool_choice`` make the answer call, or None.

    Tools other than functions (web search, file search, ...) are never called.
    """
    tools = list(_tools(body, nested=False))
    return _choose(body, tools, messages, nested=False)


def _tools(body: JSON, nested: bool) -> Iterator[_Tool]:
    """The function tools of ``body``: ``{"type": "function", "function": {...}}`` in chat
    completions (``nested``), ``{"type": "function", "name": ...}`` in the Responses API."""
    tools = body.get("tools")
    if tools is None:
        return
    if not isinstance(tools, list):
        raise wrong_type("tools", "an array", tools)
    for index, tool in enumerate(tools):
        where = f"tools[{index}]"
        if not isinstance(tool, dict):
            raise wrong_type(where, "an object", tool)
        if tool.get("type", "function") != "function":
            continue
        if nested:
            where = f"{where}.function"
            tool = tool.get("function")
            if tool is None:
                raise missing_parameter(where)
            if not isinstance(tool, dict):
                raise wrong_type(where, "an object", tool)
        name = tool.get("name")
        if not name:
            raise missing_parameter(f"{where}.name")
        parameters = tool.get("parameters") or {"type": "object", "properties": {}}
        if not isinstance(parameters, dict):
            raise wrong_type(f"{where}.parameters", "an object", parameters)
        if tool.get("strict") is True:
            check_strict(parameters, f"function '{name}'", f"{where}.parameters")
        yield _Tool(str(name), str(tool.get("description") or ""), parameters)


def _choose(body: JSON, tools: list[_Tool], messages: Messages, nested: bool) -> ToolCall | None:
    choice = body.get("tool_choice")
    if choice is not None and not body.get("tools"):
        raise invalid(
            "Invalid value for 'tool_choice': 'tool_choice' is only allowed when 'tools' are specified.",
            param="tool_choice",
        )
    if not tools or choice == "none":
        return None
    if isinstance(choice, dict):
        function = choice.get("function") if nested else choice
        name = function.get("name") if isinstance(function, dict) else None
        if not name:
            raise missing_parameter("tool_choice.function.name" if nested else "tool_choice.name")
        for tool in tools:
            if tool.name == name:
                return ToolCall(tool.name, tool.parameters)
        raise invalid(f"Tool choice '{name}' not found in 'tools' parameter.", param="tool_choice")
    if choice not in (None, *TOOL_CHOICES):
        raise invalid_value("tool_choice", choice, TOOL_CHOICES)
    if choice in (None, "auto") and messages and messages[-1][0] == "tool":
        return None  # the tool answered: the model answers the user
    tool = _likeliest(tools, messages)
    return ToolCall(tool.name, tool.parameters)


def _likeliest(tools: list[_Tool], messages: Messages) -> _Tool:
    """The tool whose name and description share most words with the last user text."""
    asked = next((text for role, text in reversed(messages) if role == "user"), "")
    wanted = set(_words(asked))
    return max(tools, key=lambda tool: len(wanted & set(_words(f"{tool.name} {tool.description}"))))


def _words(text: str) -> list[str]:
    return _WORDS.findall(_CAMEL.sub(" ", text).lower())


# -- strict mode --


def check_strict(schema: JSON, label: str, param: str) -> None:
    """Raise the live API's 400 for a schema that strict mode does not take.

    :param label: what the schema belongs to, as the message names it (``response_format 'x'``).
    :param param: the request field holding it.
    """
    for context, node in _objects(schema, ()):
        properties = node.get("properties") or {}
        if node.get("additionalProperties") is not False:
            problem = "'additionalProperties' is required to be supplied and to be false."
        elif missing := [name for name in properties if name not in (node.get("required") or ())]:
            problem = (
                "'required' is required to be supplied and to be an array including every key in "
                f"properties. Missing '{missing[0]}'."
            )
        else:
            continue
        raise APIError(400, f"Invalid schema for {label}: In context={context!r}, {problem}", param=param)


def _objects(node: Any, context: tuple[str, ...]) -> Iterator[tuple[tuple[str, ...], JSON]]:
    """Every object schema in ``node``, with where it is (the live API's ``context``)."""
    if not isinstance(node, dict):
        return
    if node.get("type") == "object" or "properties" in node:
        yield context, node
    for key in ("properties", "$defs", "definitions"):
        for name, sub in (node.get(key) or {}).items():
            yield from _objects(sub, (*context, key, name))
    if isinstance(node.get("items"), dict):
        yield from _objects(node["items"], (*context, "items"))
    for key in ("anyOf", "oneOf", "allOf"):
        for index, sub in enumerate(node.get(key) or []):
            yield from _objects(sub, (*context, key, str(index)))
