"""What an OpenAI Batch connection holds, and how its form looks in the Airflow UI.

This module imports nothing heavy: ``get_provider_info()`` reads the form description
from it, and Airflow loads provider info without importing hooks.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping
from typing import Any, Literal
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError

CONN_TYPE = "openai_batch"
DEFAULT_BASE_URL = "https://api.openai.com/v1"
DEFAULT_TIMEOUT = 60.0
DEFAULT_MAX_RETRIES = 5
OPENAI_PLATFORM_BATCH_URL = "https://platform.openai.com/batches/{batch_id}"

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
        "description": "Connect, read and write timeout of each HTTP request.",
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


class ConnectionSettings(BaseModel):
    """An Airflow connection resolved once into what the hook needs to make requests.

    The API key is a :class:`~pydantic.SecretStr`: it shows as ``**********`` in reprs and
    dumps. Instances are frozen and hashable, so they key the shared async clients.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    conn_id: str
    base_url: str = DEFAULT_BASE_URL
    api_key: SecretStr | None = None
    organization: str | None = None
    project: str | None = None
    timeout: float = Field(default=DEFAULT_TIMEOUT, gt=0)
    max_retries: int = Field(default=DEFAULT_MAX_RETRIES, ge=0)
    api_type: Literal["openai", "azure"] = "openai"
    api_version: str | None = None
    batch_url_template: str | None = None

    @classmethod
    def from_connection(cls, conn: Any, extra: Mapping[str, Any]) -> ConnectionSettings:
        """Read a connection of type ``openai_batch``, or of the official provider's ``openai`` type.

        :param conn: the Airflow connection (anything with ``conn_id``, ``host``, ``port``,
            ``password``).
        :param extra: the connection's extra, already parsed from JSON.
        :raises ValueError: an extra has a value the hook cannot use; the message names it.
        """
        # The official provider keeps SDK arguments under ``openai_client_kwargs``.
        client_kwargs = extra.get("openai_client_kwargs") or {}

        def value(name: str) -> Any:
            for candidate in (extra.get(name), extra.get(f"extra__{CONN_TYPE}__{name}")):
                if candidate not in (None, ""):
                    return candidate
            return client_kwargs.get(name)

        fields = {
            "conn_id": conn.conn_id,
            "base_url": _base_url(client_kwargs.get("base_url") or conn.host, conn.port),
            "api_key": client_kwargs.get("api_key") or conn.password or None,
            **{
                name: value(name)
                for name in (
                    "organization",
                    "project",
                    "timeout",
                    "max_retries",
                    "api_type",
                    "api_version",
                    "batch_url_template",
                )
            },
        }
        try:
            return cls.model_validate({k: v for k, v in fields.items() if v is not None})
        except ValidationError as exc:
            problems = "; ".join(
                f"extra {'.'.join(map(str, error['loc']))!r}: {error['msg']}" for error in exc.errors()
            )
            raise ValueError(f"Connection {conn.conn_id!r} cannot be used: {problems}") from None

    @property
    def secret_headers(self) -> dict[str, str]:
        """Authentication and account headers. They carry the API key: never log them."""
        headers: dict[str, str] = {}
        if self.api_key is not None:
            key = self.api_key.get_secret_value()
            if self.api_type == "azure":
                headers["api-key"] = key
            else:
                headers["Authorization"] = f"Bearer {key}"
        if self.organization:
            headers["OpenAI-Organization"] = self.organization
        if self.project:
            headers["OpenAI-Project"] = self.project
        return headers

    @property
    def query_params(self) -> dict[str, str]:
        """Query parameters sent with every request (Azure's ``api-version``)."""
        return {"api-version": self.api_version} if self.api_version else {}

    def batch_page_url(self, batch_id: str) -> str | None:
        """The web page of a batch, or None when the server is not known to have one.

        The ``batch_url_template`` extra wins; then OpenAI's platform page for
        ``api.openai.com``; then the emulator's own page for a loopback host.
        """
        if self.batch_url_template:
            return self.batch_url_template.replace("{batch_id}", batch_id)
        url = urlsplit(self.base_url)
        if url.hostname == "api.openai.com":
            return OPENAI_PLATFORM_BATCH_URL.format(batch_id=batch_id)
        if url.hostname and _is_loopback(url.hostname):
            return f"{url.scheme}://{url.netloc}/batches/{batch_id}"
        return None


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
    scheme = "http" if _is_loopback(netloc.rsplit(":", 1)[0]) else "https"
    return f"{scheme}://{netloc}/{path or 'v1'}"


def _is_loopback(hostname: str) -> bool:
    if hostname == "localhost":
        return True
    try:
        return ipaddress.ip_address(hostname.strip("[]")).is_loopback
    except ValueError:
        return False
