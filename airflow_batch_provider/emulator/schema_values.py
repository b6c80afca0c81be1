"""Deterministic JSON values that validate against a JSON schema: the emulator's structured answers.

:func:`value_for_schema` walks a schema and builds one value for it. Every choice (which enum
member, which number within the bounds, how many array items) comes from a hash of a seed and
the value's place in the document, so the same request always gets the same answer and
different places get different values.

What it honours: ``type`` (one or a list), ``enum``, ``const``, objects (every property of
``properties``, ``additionalProperties`` as false or as a schema), arrays (``items``,
``prefixItems``, ``minItems``/``maxItems``, ``uniqueItems``), numbers and integers within
``minimum``/``maximum``/``exclusiveMinimum``/``exclusiveMaximum`` and ``multipleOf``, strings
within ``minLength``/``maxLength`` and the usual ``format`` values (``date-time``, ``date``,
``time``, ``email``, ``uri``, ``uuid``, ``ipv4``, ``hostname``, ``duration``), ``$ref`` into
``$defs``/``definitions`` (pydantic's ``model_json_schema()``, recursive models included),
``anyOf``/``oneOf`` (the first branch that is not null) and ``allOf`` (merged). Not honoured:
``pattern``, ``not``, ``if``/``then``, ``dependentRequired`` and the like.
"""

from __future__ import annotations

import hashlib
import re
import uuid
from datetime import datetime, timedelta, timezone
from typing import Any

JSON = dict[str, Any]

MAX_DEPTH = 6
"""Nesting past which optional parts shrink: nullable values become null, arrays take their
fewest items and objects their required properties only (so recursive schemas end)."""
_HARD_DEPTH = 32
_DEFAULT_ITEMS = 2
_DEFAULT_SPAN = 100
_EPOCH = datetime(2025, 1, 1, tzinfo=timezone.utc)
_WORD_BREAK = re.compile(r"[^A-Za-z0-9]+")


class SchemaValues:
    """Builds values for one schema document.

    :param root: the whole schema (``$ref`` pointers resolve against it).
    :param seed: what makes the values of one request differ from another's (its digest).
    :param text: words for the strings, e.g. the prompt the answer replies to; default none.
    """

    def __init__(self, root: JSON, seed: str, text: str = "") -> None:
        self.root = root
        self.seed = seed
        self.text = " ".join(text.split())

    def value(self) -> Any:
        """A value of the root schema."""
        return self._value(self.root, "$", 0)

    # -- choices --

    def _number(self, place: str) -> int:
        digest = hashlib.blake2b(f"{self.seed}|{place}".encode(), digest_size=8).digest()
        return int.from_bytes(digest, "big")

    def _pick(self, place: str, count: int) -> int:
        return self._number(place) % count

    # -- schemas --

    def _resolve(self, schema: Any) -> JSON:
        """``schema`` with its ``$ref`` (and ``allOf``) resolved into one mapping."""
        if not isinstance(schema, dict):
            return {} if schema is True or schema is None else {"not": {}}
        seen = 0
        while "$ref" in schema and seen < _HARD_DEPTH:
            target = self._pointer(str(schema["$ref"]))
            schema = {**target, **{key: value for key, value in schema.items() if key != "$ref"}}
            seen += 1
        if "allOf" in schema:
            merged: JSON = {key: value for key, value in schema.items() if key != "allOf"}
            for part in schema["allOf"]:
                part = self._resolve(part)
                merged["properties"] = {**merged.get("properties", {}), **part.get("properties", {})}
                merged["required"] = [*merged.get("required", []), *part.get("required", [])]
                merged.update({k: v for k, v in part.items() if k not in ("properties", "required")})
            schema = merged
        return schema

    def _pointer(self, ref: str) -> JSON:
        if not ref.startswith("#"):
            return {}
        node: Any = self.root
        for token in filter(None, ref[1:].split("/")):
            token = token.replace("~1", "/").replace("~0", "~")
            node = node.get(token, {}) if isinstance(node, dict) else {}
        return node if isinstance(node, dict) else {}

    def _value(self, schema: Any, place: str, depth: int) -> Any:
        schema = self._resolve(schema)
        if depth > _HARD_DEPTH:
            return None
        if "const" in schema:
            return schema["const"]
        if isinstance(schema.get("enum"), list) and schema["enum"]:
            return schema["enum"][self._pick(place, len(schema["enum"]))]
        for key in ("anyOf", "oneOf"):
            if isinstance(schema.get(key), list) and schema[key]:
                return self._value(self._branch(schema, key, depth), place, depth)
        kind = self._type(schema, depth)
        if kind == "object":
            return self._object(schema, place, depth)
        if kind == "array":
            return self._array(schema, place, depth)
        if kind == "integer":
            return self._integer(schema, place)
        if kind == "number":
            return self._float(schema, place)
        if kind == "boolean":
            return self._number(place) % 2 == 0
        if kind == "null":
            return None
        return self._string(schema, place)

    def _branch(self, schema: JSON, key: str, depth: int) -> JSON:
        """The branch of ``anyOf``/``oneOf`` to follow: the first that is not null (past
        :data:`MAX_DEPTH`, a null one when there is one). Sibling keywords apply to it too."""
        siblings = {k: v for k, v in schema.items() if k not in ("anyOf", "oneOf")}
        branches = [self._resolve(branch) for branch in schema[key]]
        nulls = [branch for branch in branches if branch.get("type") == "null"]
        others = [branch for branch in branches if branch.get("type") != "null"]
        chosen = (nulls or others) if depth > MAX_DEPTH else (others or nulls)
        return {**siblings, **chosen[0]}

    @staticmethod
    def _type(schema: JSON, depth: int) -> str:
        kind = schema.get("type")
        if isinstance(kind, list):
            kinds = [str(name) for name in kind]
            others = [name for name in kinds if name != "null"]
            if depth > MAX_DEPTH and "null" in kinds:
                return "null"
            return others[0] if others else "null"
        if isinstance(kind, str):
            return kind
        if "properties" in schema or "additionalProperties" in schema:
            return "object"
        if "items" in schema or "prefixItems" in schema:
            return "array"
        return "string"

    # -- kinds --

    def _object(self, schema: JSON, place: str, depth: int) -> JSON:
        properties = schema.get("properties") or {}
        required = set(schema.get("required") or ())
        shrink = depth > MAX_DEPTH
        result = {
            name: self._value(sub, f"{place}.{name}", depth + 1)
            for name, sub in properties.items()
            if not shrink or name in required
        }
        extra = schema.get("additionalProperties")
        if not properties and isinstance(extra, dict) and not shrink:
            result["key"] = self._value(extra, f"{place}.key", depth + 1)
        return result

    def _array(self, schema: JSON, place: str, depth: int) -> list[Any]:
        prefix = schema.get("prefixItems") or []
        low = max(int(schema.get("minItems", 0)), len(prefix) if schema.get("items") is False else 0)
        high = schema.get("maxItems")
        count = low if depth > MAX_DEPTH else max(low, _DEFAULT_ITEMS)
        if isinstance(high, int):
            count = min(count, high)
        items: list[Any] = []
        seen: set[str] = set()
        for index in range(count * 4 if schema.get("uniqueItems") else count):
            if len(items) == count:
                break
            sub = prefix[index] if index < len(prefix) else schema.get("items", {})
            item = self._value(sub, f"{place}[{index}]", depth + 1)
            if schema.get("uniqueItems"):
                key = repr(item)
                if key in seen:
                    continue
                seen.add(key)
            items.append(item)
        return items

    @staticmethod
    def _bounds(schema: JSON, step: float) -> tuple[float, float]:
        """The inclusive range a number must fall in; ``step`` moves off an exclusive bound."""
        low, high = _number_or_none(schema.get("minimum")), _number_or_none(schema.get("maximum"))
        exclusive_low = _number_or_none(schema.get("exclusiveMinimum"))
        exclusive_high = _number_or_none(schema.get("exclusiveMaximum"))
        if exclusive_low is not None:
            low = exclusive_low + step if low is None else max(low, exclusive_low + step)
        if exclusive_high is not None:
            high = exclusive_high - step if high is None else min(high, exclusive_high - step)
        if low is None:
            low = (high if high is not None else _DEFAULT_SPAN) - _DEFAULT_SPAN
        if high is None:
            high = low + _DEFAULT_SPAN
        return low, max(low, high)

    def _integer(self, schema: JSON, place: str) -> int:
        low, high = self._bounds(schema, 1)
        first, last = -int(-low // 1), int(high // 1)  # ceil, floor
        multiple = schema.get("multipleOf")
        if isinstance(multiple, int) and multiple > 0:
            first, last = -(-first // multiple), last // multiple
            return multiple * (first + self._pick(place, max(last - first + 1, 1)))
        return first + self._pick(place, max(last - first + 1, 1))

    def _float(self, schema: JSON, place: str) -> float | int:
        multiple = schema.get("multipleOf")
        if isinstance(multiple, (int, float)) and multiple > 0:
            low, high = self._bounds(schema, multiple)
            first, last = -int(-low // multiple), int(high // multiple)
            steps = first + self._pick(place, max(last - first + 1, 1))
            return round(steps * multiple, 10)
        low, high = self._bounds(schema, 0.01)
        value = round(low + (high - low) * (self._number(place) % 10_001) / 10_000, 2)
        return min(max(value, low), high)

    def _string(self, schema: JSON, place: str) -> str:
        text = self._formatted(schema.get("format"), place)
        if text is None:
            name = place.rsplit(".", 1)[-1].split("[", 1)[0].lstrip("$") or "value"
            words = _WORD_BREAK.sub(" ", name).strip() or "value"
            text = f"Emulated {words} for: {self.text}" if self.text else f"Emulated {words}"
        low, high = schema.get("minLength"), schema.get("maxLength")
        if isinstance(high, int):
            text = text[:high]
        if isinstance(low, int) and len(text) < low:
            text = (text + " " if text else "") + "x" * low
            text = text[: max(low, high) if isinstance(high, int) else len(text)]
        return text

    def _formatted(self, format_name: object, place: str) -> str | None:
        number = self._number(place)
        moment = _EPOCH + timedelta(seconds=number % (5 * 365 * 86_400))
        values = {
            "date-time": moment.strftime("%Y-%m-%dT%H:%M:%SZ"),
            "date": moment.strftime("%Y-%m-%d"),
            "time": moment.strftime("%H:%M:%SZ"),
            "email": f"user{number % 10_000}@example.com",
            "uri": f"https://example.com/{number % 10_000}",
            "uuid": str(uuid.UUID(int=number << 64 | number, version=4)),
            "ipv4": f"192.0.2.{number % 254 + 1}",
            "hostname": f"host{number % 10_000}.example.com",
            "duration": f"PT{number % 3600}S",
        }
        return values.get(str(format_name)) if format_name is not None else None


def _number_or_none(value: object) -> float | None:
    """A bound of a schema as a number; None when absent (or a boolean, draft 4's exclusive flags)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return float(value)


def value_for_schema(schema: JSON, seed: str, text: str = "") -> Any:
    """A deterministic value that validates against ``schema`` (see the module for what counts).

    :param schema: a JSON schema, e.g. ``MyModel.model_json_schema()``.
    :param seed: the same seed gives the same value; e.g. a digest of the request.
    :param text: words the strings are made of, e.g. the prompt; default none.
    """
    return SchemaValues(schema, seed, text).value()
