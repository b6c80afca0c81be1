"""Executors answer one request of a batch: locally (deterministic) or on an upstream server."""

from __future__ import annotations

from typing import Protocol

from pydantic import SecretStr

from airflow_batch_provider.emulator.executors.base import Execution, Executor
from airflow_batch_provider.emulator.executors.local import LocalExecutor
from airflow_batch_provider.emulator.executors.upstream import UpstreamExecutor

DEFAULT_UPSTREAM_TIMEOUT = 600.0


class UpstreamChoice(Protocol):
    """The settings :func:`make_executor` reads (:class:`EmulatorSettings` has them)."""

    @property
    def upstream_url(self) -> str | None: ...

    @property
    def upstream_api_key(self) -> SecretStr | str | None: ...


def make_executor(settings: UpstreamChoice) -> Executor:
    """The executor ``settings`` ask for: upstream when ``upstream_url`` is set, else local.

    :param settings: ``upstream_url`` (None or empty: the local executor), ``upstream_api_key``
        (a string or ``SecretStr``) and, when present, ``upstream_timeout`` in seconds
        (default 600).
    """
    if not settings.upstream_url:
        return LocalExecutor()
    api_key = settings.upstream_api_key
    if isinstance(api_key, SecretStr):
        api_key = api_key.get_secret_value()
    timeout = getattr(settings, "upstream_timeout", None) or DEFAULT_UPSTREAM_TIMEOUT
    return UpstreamExecutor(str(settings.upstream_url), api_key=api_key, timeout=timeout)


__all__ = ["Execution", "Executor", "LocalExecutor", "UpstreamExecutor", "make_executor"]
