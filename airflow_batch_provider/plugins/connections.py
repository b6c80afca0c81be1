"""The Airflow connections of type ``openai_batch`` whose batches the pages show.

Read on the API server's side: the metadata database's connections, and those defined by
``AIRFLOW_CONN_<ID>`` environment variables. Other secrets backends cannot be listed; name
their connections in the Airflow option ``[openai_batch] ui_conn_ids`` (comma-separated).
Only ids leave this module: settings and keys are read by the hook, one connection at a time,
and never reach a page.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping

from starlette.concurrency import run_in_threadpool

from airflow_batch_provider.client.loop_cache import loop_cache
from airflow_batch_provider.hooks.connection import CONN_TYPE

ENV_PREFIX = "AIRFLOW_CONN_"
CONN_IDS_MAX_AGE = 30.0
"""Seconds one reading of the connection ids is used before reading them again."""


def env_conn_ids(environ: Mapping[str, str]) -> set[str]:
    """Ids of the ``openai_batch`` connections among ``AIRFLOW_CONN_<ID>`` variables (JSON or URI form).

    :param environ: the environment to read, e.g. ``os.environ``.
    """
    found = set()
    for name, value in environ.items():
        if not name.startswith(ENV_PREFIX) or not value:
            continue
        value = value.strip()
        if value.startswith("{"):
            try:
                conn_type = json.loads(value).get("conn_type")
            except (ValueError, AttributeError):
                continue
        else:
            # The URI form: the scheme is the type, with "-" for "_".
            conn_type = value.partition("://")[0].replace("-", "_")
        if conn_type == CONN_TYPE:
            found.add(name.removeprefix(ENV_PREFIX).lower())
    return found


def _stored_and_configured_conn_ids() -> set[str]:
    from airflow.configuration import conf
    from airflow.models.connection import Connection
    from airflow.utils.session import create_session
    from sqlalchemy import select

    with create_session() as session:
        stored = set(session.scalars(select(Connection.conn_id).where(Connection.conn_type == CONN_TYPE)))
    configured = conf.get("openai_batch", "ui_conn_ids", fallback="") or ""
    return stored | {conn_id.strip() for conn_id in configured.split(",") if conn_id.strip()}


async def batch_conn_ids() -> list[str]:
    """Every ``openai_batch`` connection id, sorted; read again every :data:`CONN_IDS_MAX_AGE` seconds."""

    async def read() -> list[str]:
        stored = await run_in_threadpool(_stored_and_configured_conn_ids)
        return sorted(stored | env_conn_ids(os.environ))

    return await (await loop_cache()).get(("openai-batches-ui", "conn_ids"), read, max_age=CONN_IDS_MAX_AGE)
