"""The batches Airflow tasks created, read per connection, page by page, and kept a few seconds.

A batch counts when its metadata names a DAG (``airflow_dag_id``, written by the operators).
The API lists batches newest first with a cursor, so the pages of one connection are read one
after the other, while the connections are read at the same time. Reading stops at batches
older than :data:`LOOKBACK_SECONDS` or after :data:`MAX_PAGES` pages. What a connection answers
is kept :data:`LISTING_MAX_AGE` seconds per API server worker: the pages of everybody looking
within that time, and their refreshes, cost the API one listing.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from airflow_batch_provider.client import AsyncBatchClient, ClientSettings, OpenAIBatchAPIError
from airflow_batch_provider.client.loop_cache import loop_cache
from airflow_batch_provider.hooks.batch import OpenAIBatchHook
from airflow_batch_provider.models import Batch

LISTING_MAX_AGE = 5.0
"""Seconds a connection's listing is shown before it is read again."""
LOOKBACK_SECONDS = 7 * 24 * 3600
"""Batches created longer ago than this are not listed (a week)."""
PAGE_LIMIT = 100
"""Batches per page read (the API's maximum)."""
MAX_PAGES = 50
"""Most pages read per connection and listing: the newest 5,000 batches."""
DAG_KEY = "airflow_dag_id"
UNREADABLE = "the connection could not be read; see the API server's log"

_log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ConnectionBatches:
    """What one connection's listing found.

    :param conn_id: the connection.
    :param batches: its batches that Airflow tasks created, newest first.
    :param settings: the connection's client settings (for links); None when unreadable.
        They hold the API key: never render them.
    :param prices: prices per million tokens by model, from the connection; None when unset.
    :param problems: what went wrong, in words fit to show anyone (no URL, no message of the API).
    """

    conn_id: str
    batches: tuple[Batch, ...] = ()
    settings: ClientSettings | None = None
    prices: dict[str, dict[str, float]] | None = None
    problems: tuple[str, ...] = ()


@dataclass(frozen=True)
class ListedBatch:
    """A batch and the connection it was listed on."""

    conn_id: str
    batch: Batch

    @property
    def dag_id(self) -> str:
        return (self.batch.metadata or {}).get(DAG_KEY, "")


def is_airflow_batch(batch: Batch) -> bool:
    """True when the batch's metadata names the DAG whose task created it."""
    return bool((batch.metadata or {}).get(DAG_KEY))


async def _read_pages(client: AsyncBatchClient, conn_id: str, now: float) -> tuple[list[Batch], str | None]:
    """The connection's recent Airflow batches, and the problem that cut the reading short, if any."""
    found: list[Batch] = []
    after: str | None = None
    try:
        for _ in range(MAX_PAGES):
            page = await client.list_batches_page(limit=PAGE_LIMIT, after=after)
            recent = [batch for batch in page.data if batch.created_at >= now - LOOKBACK_SECONDS]
            found.extend(batch for batch in recent if is_airflow_batch(batch))
            last_id = page.last_id or (page.data[-1].id if page.data else None)
            if not page.has_more or len(recent) < len(page.data) or last_id in (None, after):
                break
            after = last_id
    except OpenAIBatchAPIError as error:
        _log.warning("Listing the batches of connection %r failed: %s", conn_id, error)
        answer = f"HTTP {error.status_code}" if error.status_code else "no answer"
        return found, f"the batches could not be listed ({answer}); see the API server's log"
    return found, None


async def _read_connection(conn_id: str) -> ConnectionBatches:
    hook = OpenAIBatchHook(conn_id)
    try:
        client = await hook.aget_client()
    except Exception:  # not found, unreadable, or settings the client cannot use
        _log.warning("Connection %r could not be used to list batches", conn_id, exc_info=True)
        return ConnectionBatches(
            conn_id, problems=("the connection could not be read; see the API server's log",)
        )
    problems = []
    try:
        prices = await hook.aget_prices()
    except ValueError as error:
        _log.warning("%s", error)
        prices = None
        problems.append("its extra 'prices' is not valid, so no cost is estimated")
    batches, problem = await _read_pages(client, conn_id, time.time())
    if problem:
        problems.insert(0, problem)
    return ConnectionBatches(conn_id, tuple(batches), client.settings, prices, tuple(problems))


def _cache_key(conn_id: str) -> tuple[str, str, str]:
    return ("openai-batches-ui", "listing", conn_id)


async def connection_batches(conn_id: str) -> ConnectionBatches:
    """One connection's listing, read again once it is :data:`LISTING_MAX_AGE` seconds old."""
    cache = await loop_cache()
    return await cache.get(_cache_key(conn_id), lambda: _read_connection(conn_id), max_age=LISTING_MAX_AGE)


async def all_connection_batches(conn_ids: Iterable[str]) -> list[ConnectionBatches]:
    """Every connection's listing, read at the same time."""
    return list(await asyncio.gather(*(connection_batches(conn_id) for conn_id in conn_ids)))


async def forget(conn_id: str) -> None:
    """Drop a connection's listing, e.g. after a cancel, so the next page reads it afresh."""
    (await loop_cache()).pop(_cache_key(conn_id))


def newest_first(listings: Sequence[ConnectionBatches]) -> list[ListedBatch]:
    """Every listed batch of every connection, newest first."""
    listed = [ListedBatch(listing.conn_id, batch) for listing in listings for batch in listing.batches]
    listed.sort(key=lambda item: (item.batch.created_at, item.batch.id), reverse=True)
    return listed
