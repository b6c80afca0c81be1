"""An OpenAI Batch connection: what it holds, its form in the Airflow UI, the client settings it gives.

This module does not import Airflow: ``get_provider_info()`` reads the form description from
it, and Airflow loads provider info without importing hooks.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError

from airflow_batch_provider.client.settings import (
    DEFAULT_BASE_URL,
    DEFAULT_MAX_RETRIES,
    DEFAULT_TIMEOUT,
    ClientSettings,
    is_loopback,
)

CONN_TYPE = "openai_batch"
PRICES_EXTRA = "prices"
"""The extra holding prices per million tokens by model, e.g.
``{"gpt-4o-mini": {"input": 0.075, "cached_input": 0.0375, "output": 0.30}}``."""

# The connection form, in the declarative shape Airflow >= 3.2 reads from provider info
# (``conn-fields`` / ``ui-field-behaviour``): the UI then renders it without importing the hook.
CONN_FIELDS: dict[str, dict[str, Any]] = {
    "organization": {
        "label": "Organization ID",
        "description": "Sent as the OpenAI-Organization header. Leave empty for the key's default.",
        "schema": {"type": ["string", "null"]},
    },
    "project": {
        "label": "Project ID",
        "description": "Sent as the OpenAI-Project header. Leave empty for the key's default.",
        "schema": {"type": ["string", "null"]},
    },
    "timeout": {
        "label": "Timeout (seconds)",
        "description": "Seconds one try of a request may take, end to end; for uploads and downloads, "
        "seconds without progress.",
        "schema": {"type": ["number", "null"], "default": DEFAULT_TIMEOUT, "minimum": 0},
    },
    "max_retries": {
        "label": "Max retries",
        "description": "Retries of a request after a connection error, a timeout, 408, 429 or 5xx.",
        "schema": {"type": ["integer", "null"], "default": DEFAULT_MAX_RETRIES, "minimum": 0},
    },
    "api_type": {
        "label": "API type",
        "description": "'azure' sends the key in the api-key header instead of Authorization.",
        "schema": {"type": ["string", "null"], "default": "openai", "enum": ["openai", "azure"]},
    },
    "api_version": {
        "label": "API version",
        "description": "Sent as the api-version query parameter (Azure OpenAI).",
        "schema": {"type": ["string", "null"]},
    },
    "batch_url_template": {
        "label": "Batch page URL template",
        "description": "Link shown on the task for a batch, e.g. https://gw.example/batches/{batch_id}.",
        "schema": {"type": ["string", "null"]},
    },
}

UI_FIELD_BEHAVIOUR: dict[str, Any] = {
    "hidden-fields": ["schema", "port", "login"],
    "relabeling": {"host": "Base URL", "password": "API key"},
    "placeholders": {
        "host": DEFAULT_BASE_URL,
        "password": "sk-...",
        "organization": "org-...",
        "project": "proj_...",
        "api_version": "2024-10-21",
        "batch_url_template": "https://gw.example/batches/{batch_id}",
    },
}


def connection_type_info(hook_class_name: str) -> dict[str, Any]:
    """The ``connection-types`` entry of the provider info for the OpenAI Batch connection."""
    return {
        "hook-class-name": hook_class_name,
        "hook-name": "OpenAI Batch",
        "connection-type": CONN_TYPE,
        "conn-fields": CONN_FIELDS,
        "ui-field-behaviour": UI_FIELD_BEHAVIOUR,
    }


def settings_from_connection(conn: Any, extra: Mapping[str, Any], name: str | None = None) -> ClientSettings:
    """Read a connection of type ``openai_batch``, or of the official provider's ``openai`` type.

    :param conn: the Airflow connection (anything with ``conn_id``, ``host``, ``port``,
        ``password``).
    :param extra: the connection's extra, already parsed from JSON.
    :param name: how messages name the connection (default ``connection '<conn_id>'``; e.g.
        ``this connection`` where the id is one Airflow made up for a test).
    :raises ValueError: an extra has a value the client cannot use; the message names it.
    """
    # The official provider keeps SDK arguments under ``openai_client_kwargs``.
    client_kwargs = extra.get("openai_client_kwargs") or {}

    def value(field: str) -> Any:
        for candidate in (extra.get(field), extra.get(f"extra__{CONN_TYPE}__{field}")):
            if candidate not in (None, ""):
                return candidate
        return client_kwargs.get(field)

    label = name or f"connection {conn.conn_id!r}"
    fields = {
        "name": label,
        "base_url": _base_url(client_kwargs.get("base_url") or conn.host, conn.port),
        "api_key": client_kwargs.get("api_key") or conn.password or None,
        **{field: value(field) for field in CONN_FIELDS},
    }
    try:
        return ClientSettings.model_validate({k: v for k, v in fields.items() if v is not None})
    except ValidationError as exc:
        problems = "; ".join(
            f"extra {'.'.join(map(str, error['loc']))!r}: {error['msg']}" for error in exc.errors()
        )
        raise ValueError(f"{label[0].upper()}{label[1:]} cannot be used: {problems}") from None


def _base_url(host: str | None, port: int | None) -> str:
    """The base URL from the host field, which may hold a whole URL or a bare host name."""
    if not host:
        return DEFAULT_BASE_URL
    host = host.strip().rstrip("/")
    if "://" in host:
        url = urlsplit(host)
        if port and url.port is None:  # the port given in its own field
            return url._replace(netloc=f"{url.netloc}:{port}").geturl()
        return host
    # A bare host, as the URI form of a connection stores it: assume the usual /v1 path.
    netloc, _, path = host.partition("/")
    if port and ":" not in netloc:
        netloc = f"{netloc}:{port}"
    scheme = "http" if is_loopback(netloc.rsplit(":", 1)[0]) else "https"
    return f"{scheme}://{netloc}/{path or 'v1'}"


class ModelPrices(BaseModel):
    """One model's prices per million tokens; ``cached_input`` defaults to ``input``."""

    model_config = ConfigDict(extra="forbid")

    input: float = Field(ge=0)
    output: float = Field(ge=0)
    cached_input: float | None = Field(default=None, ge=0)


_PRICES = TypeAdapter(dict[str, ModelPrices])


def prices_from_extra(extra: Mapping[str, Any], conn_id: str) -> dict[str, dict[str, float]] | None:
    """The connection's prices per million tokens by model (extra ``prices``), or None when unset.

    The shape :func:`airflow_batch_provider.outputs.estimate_cost` takes. The extra may hold
    the prices as an object or as a JSON string of one.

    :param extra: the connection's extra, already parsed from JSON.
    :param conn_id: the connection's id, for the error message.
    :raises ValueError: the prices are not ``{model: {"input": n, "output": n}}``; it says where.
    """
    raw = extra.get(PRICES_EXTRA)
    if raw in (None, "", {}):
        return None
    try:
        prices = _PRICES.validate_python(json.loads(raw) if isinstance(raw, str) else raw)
    except (ValueError, ValidationError) as exc:
        problem = exc.errors()[0] if isinstance(exc, ValidationError) else {"loc": (), "msg": str(exc)}
        where = ".".join(map(str, (PRICES_EXTRA, *problem["loc"])))
        raise ValueError(
            f"Connection {conn_id!r} cannot be used: extra {where!r}: {problem['msg']}. "
            'Expected {"<model>": {"input": <price>, "output": <price>}} per million tokens.'
        ) from None
    return {model: price.model_dump(exclude_none=True) for model, price in prices.items()}
