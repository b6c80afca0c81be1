"""Where a client sends its requests, with which key, and how patiently."""

from __future__ import annotations

import ipaddress
from typing import Literal
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, SecretStr

from airflow_batch_provider.rules import EMULATOR_BATCH_PAGE
from airflow_batch_provider.version import __version__

DEFAULT_BASE_URL = "https://api.openai.com/v1"
DEFAULT_TIMEOUT = 60.0
DEFAULT_MAX_RETRIES = 5
DEFAULT_KEEPALIVE_EXPIRY = 4.0
"""Seconds an idle connection is kept for reuse: below the 5 s after which uvicorn, Node.js and
Apache close idle connections, so that a request rarely meets a connection the server is closing."""
OPENAI_PLATFORM_BATCH_URL = "https://platform.openai.com/batches/{batch_id}"
USER_AGENT = f"airflow-batch-provider/{__version__}"


class ClientSettings(BaseModel):
    """Everything a client needs to call one OpenAI-compatible API.

    The API key is a :class:`~pydantic.SecretStr`: it shows as ``**********`` in reprs and
    dumps. Instances are frozen and hashable, so they key the shared async HTTP clients.

    :param name: how messages refer to these settings, e.g. ``"connection 'openai_batch_default'"``.
    :param base_url: the API root, e.g. ``https://api.openai.com/v1`` (the default).
    :param api_key: sent as ``Authorization: Bearer`` (Azure: ``api-key``); None sends none.
    :param organization: sent as ``OpenAI-Organization``; default none.
    :param project: sent as ``OpenAI-Project``; default none.
    :param timeout: seconds one try of a request may take, end to end: connecting, sending,
        waiting and reading the whole answer (default 60). Uploads and downloads are bounded
        by the time without progress instead (see :mod:`airflow_batch_provider.client.deadline`).
    :param max_retries: retries after a transient failure (default 5).
    :param api_type: ``openai`` (default) or ``azure``: how the key is sent.
    :param api_version: sent as the ``api-version`` query parameter (older Azure paths).
    :param batch_url_template: the page of a batch, e.g. ``https://gw.example/batches/{batch_id}``.
    :param keepalive_expiry: seconds an idle connection is kept for the next request (default
        :data:`DEFAULT_KEEPALIVE_EXPIRY`); keep it below the server's own keep-alive timeout.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str = "the client settings"
    base_url: str = DEFAULT_BASE_URL
    api_key: SecretStr | None = None
    organization: str | None = None
    project: str | None = None
    timeout: float = Field(default=DEFAULT_TIMEOUT, gt=0)
    max_retries: int = Field(default=DEFAULT_MAX_RETRIES, ge=0)
    api_type: Literal["openai", "azure"] = "openai"
    api_version: str | None = None
    batch_url_template: str | None = None
    keepalive_expiry: float = Field(default=DEFAULT_KEEPALIVE_EXPIRY, ge=0)

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
    def headers(self) -> dict[str, str]:
        """The headers of every request: user agent, key and account. Never log them."""
        return {"User-Agent": USER_AGENT, **self.secret_headers}

    @property
    def query_params(self) -> dict[str, str]:
        """Query parameters sent with every request (Azure's ``api-version``)."""
        return {"api-version": self.api_version} if self.api_version else {}

    @property
    def uses_proxy_settings(self) -> bool:
        """Whether the environment's proxy settings (``HTTPS_PROXY``, ...) apply: not to a loopback
        Base URL (a local emulator or gateway), which no proxy can reach."""
        return not is_loopback(urlsplit(self.base_url).hostname or "")

    def url(self, path: str) -> str:
        """The absolute URL of an API path such as ``/batches``."""
        return f"{self.base_url.rstrip('/')}{path}"

    @property
    def origin(self) -> tuple[str, str, int | None]:
        """``(scheme, host, port)`` of the base URL: the only origin the key is sent to."""
        return origin_of(self.base_url)

    def batch_page_url(self, batch_id: str) -> str | None:
        """The web page of a batch, or None when the server is not known to have one.

        ``batch_url_template`` wins; then OpenAI's platform page for ``api.openai.com``;
        then the emulator's own page for a loopback host.
        """
        if self.batch_url_template:
            return self.batch_url_template.replace("{batch_id}", batch_id)
        url = urlsplit(self.base_url)
        if url.hostname == "api.openai.com":
            return OPENAI_PLATFORM_BATCH_URL.format(batch_id=batch_id)
        if url.hostname and is_loopback(url.hostname):
            # Not ``netloc``: a user name and password in the base URL must not reach a link.
            host = f"[{url.hostname}]" if ":" in url.hostname else url.hostname
            origin = f"{url.scheme}://{host}" + (f":{url.port}" if url.port else "")
            return f"{origin}{EMULATOR_BATCH_PAGE.format(batch_id=batch_id)}"
        return None


def origin_of(url: str) -> tuple[str, str, int | None]:
    """``(scheme, host, port)`` of a URL, the port filled in for http and https."""
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    port = parts.port or {"http": 80, "https": 443}.get(scheme)
    return scheme, (parts.hostname or "").lower(), port


def is_loopback(hostname: str) -> bool:
    """True for ``localhost`` and loopback addresses (``127.0.0.1``, ``[::1]``)."""
    if hostname == "localhost":
        return True
    try:
        return ipaddress.ip_address(hostname.strip("[]")).is_loopback
    except ValueError:
        return False
