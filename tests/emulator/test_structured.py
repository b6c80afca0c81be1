"""Structured output and tool calls, with the official SDK: answers validate against their schemas."""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any, Literal
from uuid import UUID

import jsonschema
import openai
import pytest
from openai.types.chat import ChatCompletion
from openai.types.responses import Response
from pydantic import BaseModel, ConfigDict, Field

from airflow_batch_provider.emulator.schema_values import MAX_DEPTH, value_for_schema
from tests.support.sdk import read_lines, submit_and_wait

MODEL = "gpt-4o-mini"


class ReviewLabel(BaseModel):
    """The example DAG's answer type: a Literal enum, an int within bounds, a string."""

    model_config = ConfigDict(extra="forbid")

    sentiment: Literal["positive", "negative", "neutral"]
    stars: int = Field(ge=1, le=5)
    summary: str


class Line(BaseModel):
    model_config = ConfigDict(extra="forbid")

    sku: str = Field(min_length=4, max_length=8)
    quantity: int = Field(gt=0, le=10)
    price: float = Field(ge=0.5, lt=100)


class Order(BaseModel):
    """Nested objects through $defs, arrays with bounds, nullable fields, formats, a nested enum."""

    model_config = ConfigDict(extra="forbid")

    id: UUID
    placed: datetime
    status: Literal["new", "paid", "shipped"]
    lines: list[Line] = Field(min_length=1, max_length=3)
    note: str | None
    gift: Line | None
    tags: list[Literal["urgent", "fragile", "bulk"]] = Field(max_length=2)


class Node(BaseModel):
    """A recursive model: its schema refers to itself."""

    value: int = Field(ge=0, le=9)
    children: list[Node]


class GetWeather(BaseModel):
    """Get the current weather in a city."""

    model_config = ConfigDict(extra="forbid")

    city: str
    unit: Literal["celsius", "fahrenheit"]


class SendEmail(BaseModel):
    """Send an email to someone."""

    model_config = ConfigDict(extra="forbid")

    to: str
    subject: str = Field(max_length=40)
    body: str


HAND_WRITTEN = {
    "type": "object",
    "properties": {
        "ratio": {"type": "number", "exclusiveMinimum": 0, "exclusiveMaximum": 0.05},
        "flags": {"type": "array", "items": {"type": "boolean"}, "uniqueItems": True, "minItems": 2},
        "code": {"type": "string", "minLength": 30, "maxLength": 40},
        "step": {"type": "integer", "multipleOf": 7, "minimum": 10, "maximum": 30},
        "pair": {"type": "array", "prefixItems": [{"type": "integer"}, {"type": "string"}], "items": False},
        "counts": {"type": "object", "additionalProperties": {"type": "integer", "minimum": 1}},
        "either": {"anyOf": [{"type": "string", "maxLength": 3}, {"type": "null"}]},
        "merged": {"allOf": [{"$ref": "#/$defs/a"}, {"properties": {"b": {"const": 3}}, "required": ["b"]}]},
    },
    "required": ["ratio", "flags", "code", "step", "pair", "counts", "either", "merged"],
    "additionalProperties": False,
    "$defs": {"a": {"type": "object", "properties": {"a": {"type": "string"}}, "required": ["a"]}},
}

SCHEMAS: dict[str, tuple[dict[str, Any], type[BaseModel] | None]] = {
    "review": (ReviewLabel.model_json_schema(), ReviewLabel),
    "order": (Order.model_json_schema(), Order),
    "node": (Node.model_json_schema(), Node),
    "hand_written": (HAND_WRITTEN, None),
}


def messages(text: str) -> list[dict[str, str]]:
    return [{"role": "system", "content": "Answer in JSON."}, {"role": "user", "content": text}]


def schema_format(name: str, schema: dict[str, Any], strict: bool) -> dict[str, Any]:
    return {"type": "json_schema", "json_schema": {"name": name, "schema": schema, "strict": strict}}


@pytest.mark.parametrize("name", list(SCHEMAS))
@pytest.mark.parametrize("seed", ["a", "b", "c", "d"])
def test_values_validate_against_their_schema(name: str, seed: str) -> None:
    schema, model = SCHEMAS[name]

    value = value_for_schema(schema, seed, "a prompt")

    jsonschema.validate(value, schema)
    if model is not None:
        model.model_validate(value)
    assert value == value_for_schema(schema, seed, "a prompt")  # same seed, same value


def test_recursion_ends_past_the_depth_limit() -> None:
    value = value_for_schema(Node.model_json_schema(), "x")

    depth, node = 0, value
    while node["children"]:
        depth, node = depth + 1, node["children"][0]
    assert 0 < depth <= MAX_DEPTH


def test_a_batch_of_structured_answers_validates_against_each_schema(client: openai.OpenAI) -> None:
    lines = []
    for name, (schema, _) in SCHEMAS.items():
        strict = name in ("review", "order")  # closed objects, every property required: strict mode
        for number in range(2):
            body = {
                "model": MODEL,
                "messages": messages(f"Question {number} about {name}"),
                "response_format": schema_format(name, schema, strict),
            }
            lines.append(
                {
                    "custom_id": f"{name}-{number}",
                    "method": "POST",
                    "url": "/v1/chat/completions",
                    "body": body,
                }
            )

    batch = submit_and_wait(client, lines)

    assert batch.status == "completed"
    results = read_lines(client, batch.output_file_id)
    assert len(results) == len(lines)
    for result in results:
        schema, model = SCHEMAS[result["custom_id"].rsplit("-", 1)[0]]
        completion = ChatCompletion.model_validate(result["response"]["body"])
        choice = completion.choices[0]
        assert choice.finish_reason == "stop"
        value = json.loads(choice.message.content or "")
        jsonschema.validate(value, schema)
        if model is not None:
            model.model_validate(value)


def test_the_sdk_parses_answers_into_the_pydantic_model(client: openai.OpenAI) -> None:
    review = "Arrived quickly and works exactly as described."
    completion = client.chat.completions.parse(
        model=MODEL, messages=messages(review), response_format=ReviewLabel
    )
    again = client.chat.completions.parse(model=MODEL, messages=messages(review), response_format=ReviewLabel)
    other = client.chat.completions.parse(
        model=MODEL, messages=messages("Broke at once."), response_format=Order
    )

    parsed = completion.choices[0].message.parsed
    assert isinstance(parsed, ReviewLabel)
    assert review in parsed.summary  # strings quote the prompt
    assert (
        again.choices[0].message.content == completion.choices[0].message.content
    )  # same request, same answer
    assert isinstance(other.choices[0].message.parsed, Order)


def test_the_responses_api_text_format(client: openai.OpenAI) -> None:
    response = client.responses.parse(model=MODEL, input="Label: great product", text_format=ReviewLabel)
    json_object = client.responses.create(
        model=MODEL, input="Answer in JSON: hello", text={"format": {"type": "json_object"}}
    )

    assert isinstance(response.output_parsed, ReviewLabel)
    assert isinstance(json.loads(json_object.output_text), dict)


def test_json_object_needs_json_in_the_messages(client: openai.OpenAI) -> None:
    answer = client.chat.completions.create(
        model=MODEL, messages=messages("hello"), response_format={"type": "json_object"}
    )
    assert isinstance(json.loads(answer.choices[0].message.content or ""), dict)

    with pytest.raises(openai.BadRequestError) as raised:
        client.chat.completions.create(
            model=MODEL,
            messages=[{"role": "user", "content": "hello"}],
            response_format={"type": "json_object"},
        )
    assert raised.value.param == "messages"
    assert raised.value.body["message"] == (  # type: ignore[index]
        "'messages' must contain the word 'json' in some form, to use 'response_format' of type "
        "'json_object'."
    )


TOOLS = [openai.pydantic_function_tool(GetWeather), openai.pydantic_function_tool(SendEmail)]


def test_a_tool_call_in_the_live_chat_shape(client: openai.OpenAI) -> None:
    completion = client.chat.completions.parse(
        model=MODEL, messages=[{"role": "user", "content": "What is the weather in Paris?"}], tools=TOOLS
    )

    choice = completion.choices[0]
    assert choice.finish_reason == "tool_calls"
    assert choice.message.content is None
    (call,) = choice.message.tool_calls or []
    assert call.type == "function"
    assert call.id.startswith("call_")
    assert call.function.name == "GetWeather"  # the tool that shares words with the question
    assert isinstance(call.function.parsed_arguments, GetWeather)


@pytest.mark.parametrize(
    ("tool_choice", "called"),
    [
        ({"type": "function", "function": {"name": "SendEmail"}}, "SendEmail"),
        ("required", "GetWeather"),
        ("auto", "GetWeather"),
        ("none", None),
    ],
)
def test_tool_choice(client: openai.OpenAI, tool_choice: Any, called: str | None) -> None:
    completion = client.chat.completions.parse(
        model=MODEL,
        messages=[{"role": "user", "content": "What is the weather in Paris?"}],
        tools=TOOLS,
        tool_choice=tool_choice,
    )

    message = completion.choices[0].message
    if called is None:
        assert message.tool_calls in (None, [])
        assert message.content
    else:
        assert [call.function.name for call in message.tool_calls or []] == [called]
        arguments = json.loads(message.tool_calls[0].function.arguments)  # type: ignore[index]
        parameters = next(
            tool["function"]["parameters"] for tool in TOOLS if tool["function"]["name"] == called
        )
        jsonschema.validate(arguments, parameters)


def test_auto_answers_in_text_once_the_tool_answered(client: openai.OpenAI) -> None:
    first = client.chat.completions.create(
        model=MODEL, messages=[{"role": "user", "content": "Weather in Oslo?"}], tools=TOOLS
    )
    call = (first.choices[0].message.tool_calls or [])[0]
    conversation = [
        {"role": "user", "content": "Weather in Oslo?"},
        first.choices[0].message.model_dump(exclude_none=True),
        {"role": "tool", "tool_call_id": call.id, "content": '{"temperature": 3}'},
    ]

    second = client.chat.completions.create(model=MODEL, messages=conversation, tools=TOOLS)  # type: ignore[arg-type]

    assert second.choices[0].finish_reason == "stop"
    assert second.choices[0].message.content


def test_a_function_call_in_the_live_responses_shape(client: openai.OpenAI) -> None:
    parameters = GetWeather.model_json_schema()
    tool = {
        "type": "function",
        "name": "get_weather",
        "description": "Weather",
        "parameters": parameters,
        "strict": True,
    }

    response = client.responses.create(model=MODEL, input="Weather in Rome?", tools=[tool])  # type: ignore[list-item]

    assert isinstance(response, Response)
    (item,) = response.output
    assert item.type == "function_call"
    assert (item.name, item.status) == ("get_weather", "completed")
    assert item.call_id.startswith("call_")
    jsonschema.validate(json.loads(item.arguments), parameters)
    followed = client.responses.create(
        model=MODEL,
        input=[
            {"role": "user", "content": "Weather in Rome?"},
            item.model_dump(exclude_none=True),  # type: ignore[list-item]
            {"type": "function_call_output", "call_id": item.call_id, "output": '{"temperature": 20}'},
        ],
        tools=[tool],  # type: ignore[list-item]
    )
    assert followed.output[0].type == "message"


def test_tools_other_than_functions_are_never_called(client: openai.OpenAI) -> None:
    response = client.responses.create(
        model=MODEL, input="Search the web", tools=[{"type": "web_search"}], tool_choice="auto"
    )

    assert [item.type for item in response.output] == ["message"]


def test_a_batch_of_tool_calls(client: openai.OpenAI) -> None:
    body = {"model": MODEL, "messages": [{"role": "user", "content": "Email Bob"}], "tools": TOOLS}
    lines = [
        {"custom_id": f"r{n}", "method": "POST", "url": "/v1/chat/completions", "body": body}
        for n in range(3)
    ]

    batch = submit_and_wait(client, lines)

    calls = [
        line["response"]["body"]["choices"][0]["message"]["tool_calls"][0]
        for line in read_lines(client, batch.output_file_id)
    ]
    assert {call["function"]["name"] for call in calls} == {"SendEmail"}
    assert len({call["function"]["arguments"] for call in calls}) == 1  # same request, same answer
    jsonschema.validate(json.loads(calls[0]["function"]["arguments"]), TOOLS[1]["function"]["parameters"])


@pytest.mark.parametrize(
    ("schema", "problem"),
    [
        (
            {"type": "object", "properties": {"a": {"type": "string"}}, "required": ["a"]},
            "In context=(), 'additionalProperties' is required to be supplied and to be false.",
        ),
        (
            {
                "type": "object",
                "properties": {"a": {"type": "string"}, "b": {"type": "string"}},
                "required": ["a"],
                "additionalProperties": False,
            },
            "In context=(), 'required' is required to be supplied and to be an array including every key "
            "in properties. Missing 'b'.",
        ),
        (
            {
                "type": "object",
                "additionalProperties": False,
                "required": ["a"],
                "properties": {"a": {"type": "object", "properties": {}, "required": []}},
            },
            "In context=('properties', 'a'), 'additionalProperties' is required to be supplied and to be "
            "false.",
        ),
    ],
)
def test_strict_schemas_must_be_closed_with_every_property_required(
    client: openai.OpenAI, schema: dict[str, Any], problem: str
) -> None:
    with pytest.raises(openai.BadRequestError) as raised:
        client.chat.completions.create(
            model=MODEL,
            messages=messages("x"),
            response_format=schema_format("thing", schema, True),  # type: ignore[arg-type]
        )
    assert raised.value.body["message"] == f"Invalid schema for response_format 'thing': {problem}"  # type: ignore[index]
    assert raised.value.param == "response_format"

    tool = {"type": "function", "function": {"name": "f", "parameters": schema, "strict": True}}
    with pytest.raises(openai.BadRequestError) as raised:
        client.chat.completions.create(model=MODEL, messages=messages("x"), tools=[tool])  # type: ignore[list-item]
    assert raised.value.body["message"] == f"Invalid schema for function 'f': {problem}"  # type: ignore[index]
    # Not strict: the same schema is taken.
    assert client.chat.completions.create(
        model=MODEL,
        messages=messages("x"),
        response_format=schema_format("thing", schema, False),  # type: ignore[arg-type]
    ).choices


@pytest.mark.parametrize(
    ("changes", "param"),
    [
        ({"tool_choice": "required"}, "tool_choice"),  # without tools
        ({"tools": TOOLS, "tool_choice": {"type": "function", "function": {"name": "Nope"}}}, "tool_choice"),
        ({"tools": TOOLS, "tool_choice": "sometimes"}, "tool_choice"),
        ({"tools": [{"type": "function", "function": {}}]}, "tools[0].function.name"),
        ({"response_format": {"type": "json_schema"}}, "response_format.json_schema"),
        (
            {"response_format": {"type": "json_schema", "json_schema": {"schema": {}}}},
            "response_format.json_schema.name",
        ),
        ({"response_format": {"type": "xml"}}, "response_format.type"),
    ],
)
def test_malformed_requests_get_the_400_naming_the_param(
    client: openai.OpenAI, changes: dict[str, Any], param: str
) -> None:
    with pytest.raises(openai.BadRequestError) as raised:
        client.chat.completions.create(model=MODEL, messages=messages("x"), **changes)

    assert raised.value.param == param
