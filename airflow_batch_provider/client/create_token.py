"""One batch per ``create_batch`` call, however many of its answers are lost.

``POST /batches`` is not idempotent: when its answer is lost (the connection dropped, a 5xx
after the batch was made, a timeout), sending it again may make a second batch, paid for twice.
So each call puts a token of its own in the batch's metadata, under :data:`CREATE_TOKEN_KEY`,
and before sending again looks for a batch carrying that token among the batches created since
the call started (``GET /batches``, newest first). The API allows 16 metadata keys; the client
keeps one of them for the token.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterable, Mapping

from airflow_batch_provider.models import Batch
from airflow_batch_provider.rules import METADATA_MAX_KEYS

CREATE_TOKEN_KEY = "batch_create_token"
"""The metadata key ``create_batch`` reserves for its token."""
LOOKBACK_SECONDS = 600.0
"""How much earlier than the call's start a batch may say it was created and still be looked at:
the server's clock and ours may disagree."""


def add_create_token(metadata: Mapping[str, str] | None) -> tuple[str | None, dict[str, str] | None]:
    """The metadata to send, with a new token in it, and the token.

    :param metadata: the caller's metadata (default none).
    :return: ``(token, metadata)``; the token is None, and the metadata unchanged, when the
        caller's metadata already holds all 16 keys: there is no room for a token.
    :raises ValueError: the caller's metadata uses :data:`CREATE_TOKEN_KEY` itself.
    """
    given = dict(metadata) if metadata is not None else None
    if given and CREATE_TOKEN_KEY in given:
        raise ValueError(f"The metadata key {CREATE_TOKEN_KEY!r} is reserved by the client; use another.")
    if given is not None and len(given) >= METADATA_MAX_KEYS:
        return None, given
    token = secrets.token_hex(16)
    return token, {**(given or {}), CREATE_TOKEN_KEY: token}


def find_created(batches_newest_first: Iterable[Batch], token: str, since: float) -> Batch | None:
    """The batch carrying ``token``, looking no further back than ``since`` (epoch seconds).

    :param batches_newest_first: the account's batches, newest first (read lazily).
    :param token: the token the call put in its metadata.
    :param since: when the call started; batches created before it (less
        :data:`LOOKBACK_SECONDS`) end the search.
    """
    for batch in batches_newest_first:
        if batch.created_at < since - LOOKBACK_SECONDS:
            return None
        if (batch.metadata or {}).get(CREATE_TOKEN_KEY) == token:
            return batch
    return None
