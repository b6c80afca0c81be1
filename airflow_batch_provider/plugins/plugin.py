"""The Airflow plugin: the FastAPI app of the batch pages, and where the Airflow UI shows them.

Airflow imports every plugin in each of its processes (workers too), while only the API server
serves the app; so this module imports nothing of the API server, and the app is built on its
first request (:class:`LazyApp`).

Two ways in: the provider info's ``plugins``, which Airflow reads only with
``[core] lazy_discover_providers = False``, and the ``airflow.plugins`` entry point, which it
always reads. A plugin found both ways would be reported as an import error, so the entry point
(:data:`EntryPointPlugin`) offers it only where the provider info will not.
"""

from __future__ import annotations

from typing import Any

from airflow.plugins_manager import AirflowPlugin

URL_PREFIX = "/openai-batches"
"""Where the API server mounts the app, below its base URL."""
NAV_ROUTE = "openai-batches"
"""The nav page's route in the Airflow UI: ``<base URL>/plugin/openai-batches``."""
TAB_ROUTE = "openai-batch"
"""The task instance tab's route: ``.../tasks/<task id>[/mapped/<index>]/plugin/openai-batch``."""


class LazyApp:
    """An ASGI app that builds the real one on its first call, from a factory's import path.

    :param factory: ``"module:function"`` returning the ASGI app.
    """

    def __init__(self, factory: str) -> None:
        self.factory = factory
        self._app: Any = None

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if self._app is None:
            from importlib import import_module

            module, _, name = self.factory.partition(":")
            self._app = getattr(import_module(module), name)()
        await self._app(scope, receive, send)

    def __repr__(self) -> str:
        return f"LazyApp({self.factory!r})"


class OpenAIBatchPlugin(AirflowPlugin):
    """The "OpenAI Batches" page (Browse menu) and the "Batch" tab of task instances."""

    name = "openai_batch"
    fastapi_apps = [
        {
            "name": "OpenAI Batches",
            "app": LazyApp("airflow_batch_provider.plugins.app:create_app"),
            "url_prefix": URL_PREFIX,
        }
    ]
    # hrefs without a leading slash: the UI resolves them against its base URL (a reverse
    # proxy's path prefix included). Airflow >= 3.3 fills in the task instance's ids URL-encoded;
    # an unmapped task instance leaves {MAP_INDEX} as it is, which the app reads as -1.
    external_views = [
        {
            "name": "OpenAI Batches",
            "href": f"{URL_PREFIX.lstrip('/')}/",
            "destination": "nav",
            "category": "browse",
            "url_route": NAV_ROUTE,
        },
        {
            "name": "Batch",
            "href": f"{URL_PREFIX.lstrip('/')}/task-instance/{{DAG_ID}}/{{TASK_ID}}/{{MAP_INDEX}}/{{RUN_ID}}",
            "destination": "task_instance",
            "url_route": TAB_ROUTE,
        },
    ]


def _providers_discovered_lazily() -> bool:
    from airflow import settings

    return bool(getattr(settings, "LAZY_LOAD_PROVIDERS", True))


EntryPointPlugin: type[OpenAIBatchPlugin] | None = (
    OpenAIBatchPlugin if _providers_discovered_lazily() else None
)
"""The plugin for the ``airflow.plugins`` entry point; None (skipped) where provider info loads it."""
