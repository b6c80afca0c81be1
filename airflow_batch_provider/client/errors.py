"""The client's error type, and which answers are errors, which are worth another try, and what they say.

One place for the sync (requests) and async (httpx) paths alike.
"""

from __future__ import annotations

import json
import os
import re
import socket
from collections.abc import Iterator, Mapping
from typing import Any
from urllib.parse import urljoin, urlsplit

from airflow_batch_provider.client.settings import ClientSettings, origin_of
from airflow_batch_provider.exceptions import OpenAIBatchAPIError
from airflow_batch_provider.rules import is_retryable_status, parse_retry_after, should_retry

_KEY_LIKE = re.compile(r"\b(sk-[A-Za-z0-9_*.\-]{3,})")


class TransientError(Exception):
    """A failure worth another try; carries the error to raise if none is left.

    :param error: the error the caller gets when retries run out.
    :param retry_after: seconds the server asked us to wait, if it said.
    """

    def __init__(self, error: OpenAIBatchAPIError, retry_after: float | None = None) -> None:
        super().__init__(error.message)
        self.error = error
        self.retry_after = retry_after


class StaleConnectionError(TransientError):
    """A kept-alive connection the server closed just as a request went out on it, before answering.

    Not the server's failure: the request is sent again at once on a new connection, without a
    warning and without counting as a retry (see :class:`~airflow_batch_provider.client.RetryPolicy`).
    """


def is_transient(error: OpenAIBatchAPIError) -> bool:
    """True for errors that waiting can fix: no answer, 408, 429 and 5xx (the retry rule)."""
    return error.status_code is None or is_retryable_status(error.status_code)


def api_error(
    settings: ClientSettings,
    action: str,
    status_code: int,
    headers: Mapping[str, str],
    body: bytes,
    retry_after: float | None = None,
) -> OpenAIBatchAPIError:
    """Build the error for an HTTP error answer.

    :param settings: the settings, named in the advice.
    :param action: what was attempted, e.g. ``GET /batches/batch_abc``.
    :param status_code: the HTTP status of the answer.
    :param headers: the answer's headers (case-insensitive mapping).
    :param body: the answer's body; the live API sends ``{"error": {...}}``.
    :param retry_after: seconds the server asked to wait before a retry, if it said.
    """
    details = _error_details(body)
    server_message = redact(str(details.get("message") or "").strip(), settings)
    message = f"{action} failed with HTTP {status_code}"
    if server_message:
        message += f": {server_message}"
    advice = _advice(settings, status_code)
    if advice:
        message = f"{message.rstrip('.')}. {advice}"
    if retry_after is not None:
        message += f" (the server asked to wait {retry_after:g} s)"
    if not message.endswith((".", "!", "?")):
        message += "."
    return OpenAIBatchAPIError(
        message,
        status_code=status_code,
        type=_as_text(details.get("type")),
        code=_as_text(details.get("code")),
        param=_as_text(details.get("param")),
        request_id=headers.get("x-request-id"),
    )


def check_answer(
    settings: ClientSettings,
    action: str,
    status_code: int,
    headers: Mapping[str, str],
    body: bytes,
    url: str | None = None,
) -> None:
    """Raise for an answer that is not a success.

    An error is :class:`TransientError` if worth retrying, else the API error. A redirect
    (3xx) is never followed, on either path: the API key goes to the configured origin only,
    so a redirect is an error naming where the server pointed (see :func:`redirect_error`).

    :param url: the URL the request went to, against which a relative ``Location`` is read.
    """
    if status_code < 300:
        return
    if status_code < 400:
        raise redirect_error(settings, action, status_code, headers, url or settings.base_url)
    if should_retry(status_code, headers):
        retry_after = parse_retry_after(headers)
        raise TransientError(
            api_error(settings, action, status_code, headers, body, retry_after), retry_after
        )
    raise api_error(settings, action, status_code, headers, body)


def redirect_error(
    settings: ClientSettings, action: str, status_code: int, headers: Mapping[str, str], url: str
) -> OpenAIBatchAPIError:
    """The error for a redirect, which the client does not follow.

    The message names where the server redirected (without its query, which may hold
    parameters), and the Base URL that would reach it directly. It is not retried.
    """
    location = headers.get("location")
    if not location:
        where = "without saying where (no Location header)"
        advice = f"Check the Base URL of {settings.name} ({settings.base_url})."
    else:
        target = urlsplit(urljoin(url, location.strip()))
        shown = redact(target._replace(query="", fragment="").geturl(), settings)
        here = origin_of(settings.base_url) == origin_of(shown)
        where = f"to {shown}" + ("" if here else " (another origin: the API key is never sent there)")
        suggested = _base_url_for(shown, url, settings.base_url)
        advice = f"Set the Base URL of {settings.name} to {suggested} if that is right."
    return OpenAIBatchAPIError(
        f"{action}: the server redirected (HTTP {status_code}) {where}; redirects are not followed. {advice}",
        status_code=status_code,
        request_id=headers.get("x-request-id"),
    )


def _base_url_for(location: str, url: str, base_url: str) -> str:
    """The base URL under which ``location`` is what ``url`` is under ``base_url``, else ``location``."""
    tail = urlsplit(url).path.removeprefix(urlsplit(base_url).path.rstrip("/"))
    if tail and location.endswith(tail):
        return location.removesuffix(tail)
    return location


def timed_out_error(settings: ClientSettings, action: str, seconds: float) -> OpenAIBatchAPIError:
    """The error for a try that passed its deadline (see :mod:`~airflow_batch_provider.client.deadline`)."""
    return OpenAIBatchAPIError(
        f"{action} got no complete answer from {settings.base_url} within {seconds:g} s (timed out). "
        f"Check that the server is up, or raise the timeout of {settings.name}."
    )


def unreachable_error(settings: ClientSettings, action: str, exc: BaseException) -> OpenAIBatchAPIError:
    """The error for a request that got no answer: refused, reset, timed out, unknown host."""
    return OpenAIBatchAPIError(
        f"{action} got no answer from {settings.base_url}: {describe_transport_error(exc)}. "
        f"Check the Base URL of {settings.name} and that the server is up."
    )


_DROPPED = (ConnectionResetError, BrokenPipeError, ConnectionAbortedError)
_NO_ANSWER = "disconnected without sending a response"


def closed_without_answer(exc: BaseException) -> bool:
    """Whether the server closed the connection before any byte of an answer.

    http.client says so with ``RemoteDisconnected`` (a ``ConnectionResetError``); httpcore with
    "Server disconnected without sending a response"; a reset or broken pipe says the same.
    """
    return any(isinstance(error, _DROPPED) or _NO_ANSWER in str(error) for error in _causes(exc))


def no_answer(
    settings: ClientSettings, action: str, exc: BaseException, *, reused: bool, timed_out: float | None
) -> TransientError:
    """The retryable error for a try that got no answer, on either path.

    :param reused: the request went out on a connection kept alive from an earlier request.
    :param timed_out: the try's deadline in seconds, when it was the deadline that ended it.
    """
    if timed_out is not None:
        return TransientError(timed_out_error(settings, action, timed_out))
    if reused and closed_without_answer(exc):
        return StaleConnectionError(unreachable_error(settings, action, exc))
    return TransientError(unreachable_error(settings, action, exc))


def interrupted_error(settings: ClientSettings, action: str, exc: BaseException) -> OpenAIBatchAPIError:
    """The error for an answer whose body was cut off (connection dropped mid-answer)."""
    return OpenAIBatchAPIError(
        f"{action}: the answer from {settings.base_url} was cut off ({describe_transport_error(exc)}). "
        "Nothing partial was kept; retry later."
    )


def describe_transport_error(exc: BaseException) -> str:
    """A short reason for a transport failure, e.g. ``Connection refused`` or ``timed out``.

    requests and httpx wrap the socket error in several layers whose messages repeat the
    whole URL; the innermost operating-system error says it best.
    """
    if "timeout" in type(exc).__name__.lower() or "timed out" in str(exc).lower():
        return "timed out"
    innermost: BaseException = exc
    for current in _causes(exc):
        innermost = current
        if isinstance(current, OSError) and (current.errno or current.strerror):
            # asyncio words a refused connection "Connect call failed (...)": use the errno's name.
            if current.errno and current.errno > 0 and not isinstance(current, socket.gaierror):
                return os.strerror(current.errno)
            return str(current.strerror)
    text = str(innermost)
    return text.rsplit(": ", 1)[-1] if text else type(innermost).__name__


def _causes(exc: BaseException) -> Iterator[BaseException]:
    """``exc`` and the errors inside it, outermost first.

    requests and httpx wrap the socket error in several layers: as the cause, as urllib3's
    ``reason``, or as requests' first argument.
    """
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        yield current
        reason = getattr(current, "reason", None)  # urllib3's MaxRetryError
        nested = reason if isinstance(reason, BaseException) else None
        if nested is None and current.args and isinstance(current.args[0], BaseException):
            nested = current.args[0]  # requests wraps urllib3's error as its first argument
        current = nested or current.__cause__ or current.__context__


def redact(text: str, settings: ClientSettings) -> str:
    """Remove the API key, and anything shaped like an OpenAI key, from a server's message."""
    if settings.api_key is not None:
        key = settings.api_key.get_secret_value()
        if key:
            text = text.replace(key, "***")
    return _KEY_LIKE.sub("sk-***", text)


def _error_details(body: bytes) -> dict[str, Any]:
    try:
        payload = json.loads(body) if body else None
    except ValueError:
        payload = None
    if isinstance(payload, dict):
        error = payload.get("error", payload)
        if isinstance(error, dict):
            return error
        if isinstance(error, str):
            return {"message": error}
    text = body[:300].decode("utf-8", "replace").strip()
    return {"message": text} if text else {}


def _as_text(value: Any) -> str | None:
    return None if value is None else str(value)


def _advice(settings: ClientSettings, status_code: int) -> str | None:
    if status_code == 401:
        return f"Check the API key of {settings.name}"
    if status_code == 403:
        return f"Check that the API key of {settings.name} may use this organization, project and API"
    if status_code == 404:
        return (
            f"Check the id, and the Base URL of {settings.name} ({settings.base_url}; it usually ends in /v1)"
        )
    if status_code == 429:
        return "The server is rate limiting: run fewer requests at once, or retry later"
    if status_code >= 500:
        return "The server had a problem; retry later"
    return None
