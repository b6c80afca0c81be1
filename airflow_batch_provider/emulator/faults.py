"""Faults injected into the emulator's answers, for reliability tests.

A :class:`FaultRule` matches requests by method and path and does one thing to the ones it
picks: answer an HTTP error status instead of the emulator (``500``, ``502``, ``503``, ``429``
with ``Retry-After``, any 400-599), add latency before the emulator answers, or drop the
connection mid-response (the status line, headers and half of the first body chunk are sent,
then the server closes the TCP connection, so the client sees a broken response).

For each request every matching rule is considered in order; a rule picks the request at its
``rate`` and while its ``count`` lasts. Latencies of all picking rules add up; the first picking
error or drop rule ends the search. With ``FaultSettings.seed`` the picks are reproducible for
the same sequence of requests. Paths under ``/_emulator/`` (the admin endpoint) never get faults.

CLI syntax (``--fault SPEC``, repeatable; :func:`parse_cli_fault`)::

    [METHOD ]PATH:ACTION[:OPTION=VALUE]...

``METHOD``
    an HTTP method, or ``*`` for any (the default when left out).
``PATH``
    a shell-style glob on the URL path (``*`` matches any characters, ``/`` included), e.g.
    ``/v1/batches/*``, or ``*`` for every path. It cannot contain ``:``.
``ACTION``
    an HTTP error status (``500``, ``502``, ``503``, ``429``, any 400-599); ``drop`` (cut the
    connection mid-response); or ``latency=SECONDS`` (answer normally after that delay).
``OPTION``
    ``rate=FRACTION`` of the matching requests to pick (0-1, default 1);
    ``count=N`` to pick only the next N matching requests (default: no limit);
    ``retry_after=SECONDS`` sent as ``Retry-After`` / ``retry-after-ms`` (default 1 for 429).

Examples::

    --fault "GET /v1/batches/*:429:rate=0.5:retry_after=1"
    --fault "POST /v1/files:500:count=2"
    --fault "*:latency=0.2"
    --fault "GET /v1/files/*/content:drop:rate=0.1"

At runtime (emulator started with the admin flag): ``GET /_emulator/faults`` shows the rules
(``count`` is what is left), ``PUT`` replaces them with a :class:`FaultSettings` body, and
``DELETE`` removes them all.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import math
import random
import re
import secrets
from fnmatch import fnmatchcase
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator
from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from airflow_batch_provider.emulator.errors import status_error

log = logging.getLogger(__name__)

ADMIN_PATH = "/_emulator/faults"
_UNTOUCHED_PREFIX = "/_emulator/"
_DEFAULT_429_RETRY_AFTER = 1.0


class FaultRule(BaseModel):
    """One kind of fault, for the requests it matches.

    Exactly one of ``status``, ``drop`` and ``latency`` says what the rule does.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    method: str = "*"
    """HTTP method the rule matches (``GET``, ``POST``, ...), or ``*`` for any."""
    path: str = "*"
    """Shell-style glob the URL path must match (``/v1/batches/*``); ``*`` matches every path."""
    status: int | None = Field(default=None, ge=400, le=599)
    """Answer this HTTP error status, in the live API's error shape, instead of the emulator."""
    drop: bool = False
    """Cut the TCP connection after part of the emulator's answer was sent."""
    latency: float = Field(default=0.0, ge=0)
    """Seconds to wait before the emulator answers."""
    rate: float = Field(default=1.0, ge=0, le=1)
    """Fraction of the matching requests the rule picks (1: all of them)."""
    count: int | None = Field(default=None, ge=0)
    """Pick only this many more requests (None: no limit); ``GET`` shows what is left."""
    retry_after: float | None = Field(default=None, ge=0)
    """Seconds sent in ``Retry-After`` (whole seconds, rounded up) and ``retry-after-ms``;
    a 429 sends 1 second when not set."""

    @model_validator(mode="after")
    def _one_action(self) -> FaultRule:
        actions = [self.status is not None, self.drop, self.latency > 0]
        if sum(actions) != 1:
            raise ValueError("a fault rule needs exactly one of 'status', 'drop' or a positive 'latency'")
        return self

    def matches(self, method: str, path: str) -> bool:
        """True when a request with this ``method`` and ``path`` falls under the rule."""
        return (self.method == "*" or self.method.upper() == method) and fnmatchcase(path, self.path)

    def describe(self) -> str:
        """The rule in the CLI syntax."""
        if self.status is not None:
            action = str(self.status)
        else:
            action = "drop" if self.drop else f"latency={self.latency:g}"
        options = [
            f"{name}={value:g}" if isinstance(value, float) else f"{name}={value}"
            for name, value in (("rate", self.rate), ("count", self.count), ("retry_after", self.retry_after))
            if value is not None and not (name == "rate" and value == 1.0)
        ]
        return ":".join([f"{self.method} {self.path}", action, *options])


class FaultSettings(BaseModel):
    """The faults an emulator injects.

    :param rules: the rules, considered in order for every request.
    :param seed: seed for picking requests at the rules' rates; None picks unpredictably.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    rules: list[FaultRule] = Field(default_factory=list)
    seed: int | None = None


class FaultSpecError(argparse.ArgumentTypeError, ValueError):
    """A ``--fault`` specification that does not follow the syntax (usable as an argparse type)."""


_METHOD = re.compile(r"^(?:(?P<method>[A-Za-z]+|\*)\s+)?(?P<rest>\S.*)$")
_OPTIONS = frozenset({"rate", "count", "retry_after"})


def parse_cli_fault(spec: str) -> FaultRule:
    """The :class:`FaultRule` of a ``--fault`` specification (syntax in the module docstring).

    :raises FaultSpecError: naming the specification and what is wrong with it.
    """
    match = _METHOD.match(spec.strip())
    if match is None:
        raise FaultSpecError(f"fault {spec!r}: expected '[METHOD ]PATH:ACTION[:OPTION=VALUE]...'")
    path, _, tail = match["rest"].partition(":")
    if not tail:
        raise FaultSpecError(f"fault {spec!r}: missing ':ACTION' after the path (e.g. ':500', ':drop')")
    action, *options = tail.split(":")
    fields: dict[str, Any] = {"method": (match["method"] or "*").upper(), "path": path.strip()}
    if action == "drop":
        fields["drop"] = True
    elif action.startswith("latency="):
        fields["latency"] = action.removeprefix("latency=")
    elif action.isdigit():
        fields["status"] = int(action)
    else:
        raise FaultSpecError(
            f"fault {spec!r}: unknown action {action!r}; "
            "use an HTTP status (e.g. 503), 'drop' or 'latency=SECONDS'"
        )
    for option in options:
        name, equals, value = option.partition("=")
        if not equals or name not in _OPTIONS:
            raise FaultSpecError(
                f"fault {spec!r}: unknown option {option!r}; use rate=..., count=... or retry_after=..."
            )
        fields[name] = value
    try:
        return FaultRule.model_validate(fields)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(map(str, error['loc'])) or 'rule'}: {error['msg']}" for error in exc.errors()
        )
        raise FaultSpecError(f"fault {spec!r}: {problems}") from None


class FaultState:
    """The faults in force, changed at runtime by the admin endpoint.

    :param settings: the initial rules and seed (default: none).
    """

    def __init__(self, settings: FaultSettings | None = None) -> None:
        self.replace(settings or FaultSettings())

    @property
    def settings(self) -> FaultSettings:
        """The rules in force, each ``count`` being what is left of it."""
        return self._settings

    @property
    def active(self) -> bool:
        """True while some rule can still pick a request."""
        return self._active

    def replace(self, settings: FaultSettings) -> None:
        """Put ``settings`` in force (and restart the picks from its seed)."""
        self._settings = settings
        self._random = random.Random(settings.seed)
        self._active = _any_active(settings.rules)

    def clear(self) -> None:
        """Remove every rule."""
        self.replace(FaultSettings(seed=self._settings.seed))

    def pick(self, method: str, path: str) -> tuple[float, FaultRule | None]:
        """What to do to a request: ``(seconds of latency, the error or drop rule or None)``."""
        latency = 0.0
        chosen = None
        rules = self._settings.rules
        spent: dict[int, FaultRule] = {}  # rules whose count went down, by position
        for index, rule in enumerate(rules):
            if rule.count == 0 or not rule.matches(method, path):
                continue
            if rule.rate < 1 and self._random.random() >= rule.rate:
                continue
            if rule.count is not None:
                spent[index] = rule.model_copy(update={"count": rule.count - 1})
            if rule.latency:
                latency += rule.latency
            else:
                chosen = rule
                break
        if spent:
            rules = [spent.get(index, rule) for index, rule in enumerate(rules)]
            self._settings = self._settings.model_copy(update={"rules": rules})
            self._active = _any_active(rules)
        return latency, chosen


def _any_active(rules: list[FaultRule]) -> bool:
    return any(rule.count != 0 and rule.rate > 0 for rule in rules)


class FaultMiddleware:
    """Pure-ASGI middleware injecting the faults of a :class:`FaultState`.

    :param app: the application whose answers get the faults.
    :param state: the faults in force; the middleware reads it on every request.
    """

    def __init__(self, app: ASGIApp, state: FaultState) -> None:
        self.app = app
        self.state = state

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not self.state.active or scope["path"].startswith(_UNTOUCHED_PREFIX):
            await self.app(scope, receive, send)
            return
        method, path = scope["method"], scope["path"]
        latency, rule = self.state.pick(method, path)
        if latency:
            log.info("Fault: %.3f s latency for %s %s", latency, method, path)
            await asyncio.sleep(latency)
        if rule is None:
            await self.app(scope, receive, send)
        elif rule.drop:
            log.info("Fault: dropping the connection of %s %s mid-response", method, path)
            await self.app(scope, receive, _cut_after_first_chunk(send))
        else:
            assert rule.status is not None
            log.info("Fault: %d for %s %s", rule.status, method, path)
            await _error_response(rule.status, rule.retry_after)(scope, receive, send)


def _error_response(status: int, retry_after: float | None) -> JSONResponse:
    headers = {"x-request-id": f"req_{secrets.token_hex(16)}"}
    if retry_after is None and status == 429:
        retry_after = _DEFAULT_429_RETRY_AFTER
    if retry_after is not None:
        headers["retry-after"] = str(math.ceil(retry_after))
        headers["retry-after-ms"] = str(round(retry_after * 1000))
    return JSONResponse(status_error(status).body(), status_code=status, headers=headers)


def _cut_after_first_chunk(send: Send) -> Send:
    """A ``send`` that passes the response start and half of the first body chunk, then nothing.

    The application runs to its end unaware; the server, seeing the response unfinished when
    the application returns, closes the connection.
    """
    cut = False

    async def send_until_cut(message: Message) -> None:
        nonlocal cut
        if cut:
            return
        if message["type"] == "http.response.body":
            cut = True
            body = message.get("body", b"")
            message = {"type": "http.response.body", "body": body[: len(body) // 2], "more_body": True}
        await send(message)

    return send_until_cut


__all__ = [
    "ADMIN_PATH",
    "FaultMiddleware",
    "FaultRule",
    "FaultSettings",
    "FaultSpecError",
    "FaultState",
    "parse_cli_fault",
]
