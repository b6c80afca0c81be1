"""The environment's proxy settings never apply to a loopback Base URL (a local emulator or gateway)."""

from __future__ import annotations

import asyncio
import socket

import pytest

from airflow_batch_provider.client import AsyncBatchClient, BatchClient, ClientSettings


@pytest.fixture
def dead_proxy(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every proxy variable points at a port where nothing listens, and nothing is exempted."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy", "all_proxy"):
        monkeypatch.setenv(name, f"http://127.0.0.1:{port}")
    for name in ("NO_PROXY", "no_proxy"):
        monkeypatch.delenv(name, raising=False)


def test_a_loopback_base_url_is_reached_directly_on_both_paths(dead_proxy, emulator) -> None:
    settings = ClientSettings(base_url=emulator.base_url, api_key=emulator.api_key, max_retries=0)

    assert settings.uses_proxy_settings is False
    BatchClient(settings).check()
    page = asyncio.run(AsyncBatchClient(settings).list_batches_page(limit=1))
    assert page.object == "list"


@pytest.mark.parametrize(
    ("base_url", "proxied"),
    [
        ("https://api.openai.com/v1", True),
        ("https://gateway.internal/v1", True),
        ("http://localhost:8000/v1", False),
        ("http://127.0.0.1:8000/v1", False),
        ("http://[::1]:8000/v1", False),
    ],
)
def test_which_base_urls_use_the_proxy_settings(base_url: str, proxied: bool) -> None:
    assert ClientSettings(base_url=base_url).uses_proxy_settings is proxied
