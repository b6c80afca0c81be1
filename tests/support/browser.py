"""Debian's chromium driven by Playwright, for the tests that look at Airflow's UI.

Playwright never downloads a browser here (``PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1``): it launches
``/usr/bin/chromium`` (``make chromium`` installs it). Without it the browser tests skip, except
on CI (``CI`` set), where they fail. Screenshots are kept under ``tests/artifacts/``.

    def test_page(browser):
        page = open_page(browser, airflow.base_url, airflow.token())
        page.goto(airflow.base_url + "connections")
        save_screenshot(page, "system/connections.png")
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
ARTIFACTS = Path(__file__).resolve().parents[1] / "artifacts"
"""Where screenshots are kept (``tests/artifacts/``, ignored by git)."""


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    """One headless chromium per module (a Playwright ``Browser``).

    Not one per session: while Playwright's sync API runs, the main thread has a running event
    loop, and a later test's ``asyncio.run()`` (``dag.test()`` running a trigger) would fail.
    """
    if not CHROMIUM.exists():
        if os.environ.get("CI"):
            pytest.fail(f"{CHROMIUM} is missing: `make chromium` installs it")
        pytest.skip(f"{CHROMIUM} is missing: `make chromium` installs it")
    os.environ.setdefault("PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD", "1")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            yield launched
        finally:
            launched.close()


def open_page(browser: Any, base_url: str, token: str, width: int = 1440, height: int = 900) -> Any:
    """A new page in a context of its own, logged in to Airflow with ``token`` (its ``_token`` cookie).

    Errors the page's scripts raise are collected in ``page.problems`` (a list of strings).
    """
    context = browser.new_context(viewport={"width": width, "height": height})
    context.add_cookies([{"name": "_token", "value": token, "url": base_url}])
    page = context.new_page()
    problems: list[str] = []
    page.on("pageerror", lambda error: problems.append(str(error)))
    page.problems = problems
    return page


def save_screenshot(page: Any, name: str, full_page: bool = False) -> Path:
    """Keep a screenshot of ``page`` as ``tests/artifacts/<name>``; return its path."""
    path = ARTIFACTS / name
    path.parent.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(path), full_page=full_page)
    return path
