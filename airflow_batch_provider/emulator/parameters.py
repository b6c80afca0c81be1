"""Checks of the parameters of batches, files and uploads, with the live API's messages.

The limits come from :mod:`airflow_batch_provider.rules`; each check raises the
:class:`~airflow_batch_provider.emulator.errors.APIError` the live API answers.
"""

from __future__ import annotations

from typing import Any

from airflow_batch_provider.emulator.errors import invalid, invalid_value, wrong_type
from airflow_batch_provider.jsonl import endpoint_problem
from airflow_batch_provider.models import ExpiresAfter
from airflow_batch_provider.rules import (
    COMPLETION_WINDOWS,
    MAX_FILE_BYTES,
    METADATA_MAX_KEY_LENGTH,
    METADATA_MAX_KEYS,
    METADATA_MAX_VALUE_LENGTH,
    OUTPUT_EXPIRY_MAX_SECONDS,
    OUTPUT_EXPIRY_MIN_SECONDS,
)

PURPOSES = ("assistants", "batch", "fine-tune", "vision", "user_data", "evals")
"""Purposes a client may upload a file for (``batch_output`` files are made by batches)."""


def check_endpoint(endpoint: str) -> None:
    """Raise the live API's 400 for an endpoint a batch may not target."""
    problem = endpoint_problem(endpoint)
    if problem is not None:
        raise invalid(problem.message or "", param=problem.param, code=problem.code)


def check_completion_window(completion_window: str) -> None:
    """Raise the live API's 400 for a completion window other than the ones it offers."""
    if completion_window not in COMPLETION_WINDOWS:
        raise invalid_value("completion_window", completion_window, COMPLETION_WINDOWS)


def check_metadata(metadata: dict[str, Any]) -> dict[str, str]:
    """Raise the live API's 400 when ``metadata`` breaks its limits; return it as checked."""
    if len(metadata) > METADATA_MAX_KEYS:
        raise invalid(
            f"Invalid 'metadata': too many properties. Expected an object with at most {METADATA_MAX_KEYS} "
            f"properties, but got an object with {len(metadata)} properties instead.",
            param="metadata",
            code="object_above_max_properties",
        )
    for key, value in metadata.items():
        if len(key) > METADATA_MAX_KEY_LENGTH:
            raise invalid(
                f"Invalid 'metadata': key too long. Expected a key with maximum length "
                f"{METADATA_MAX_KEY_LENGTH}, but got a key with length {len(key)} instead.",
                param="metadata",
                code="string_above_max_length",
            )
        if not isinstance(value, str):
            raise wrong_type(f"metadata.{key}", "a string", value)
        if len(value) > METADATA_MAX_VALUE_LENGTH:
            raise invalid(
                f"Invalid 'metadata.{key}': string too long. Expected a string with maximum length "
                f"{METADATA_MAX_VALUE_LENGTH}, but got a string with length {len(value)} instead.",
                param=f"metadata.{key}",
                code="string_above_max_length",
            )
    return metadata


def check_expires_after(expires_after: dict[str, Any], param: str) -> ExpiresAfter:
    """The ``{"anchor": "created_at", "seconds": N}`` policy in ``expires_after``, checked.

    :param expires_after: the policy as sent; multipart forms send ``seconds`` as text.
    :param param: the request field holding it, named in errors (``output_expires_after``).
    """
    anchor = expires_after.get("anchor")
    if anchor != "created_at":
        raise invalid_value(f"{param}.anchor", anchor, ("created_at",))
    seconds = expires_after.get("seconds")
    if isinstance(seconds, str) and seconds.isdigit():
        seconds = int(seconds)
    if not isinstance(seconds, int) or isinstance(seconds, bool):
        raise wrong_type(f"{param}.seconds", "an integer", seconds)
    if not OUTPUT_EXPIRY_MIN_SECONDS <= seconds <= OUTPUT_EXPIRY_MAX_SECONDS:
        raise invalid(
            f"Invalid '{param}.seconds': expected a value between {OUTPUT_EXPIRY_MIN_SECONDS} and "
            f"{OUTPUT_EXPIRY_MAX_SECONDS}, but got {seconds} instead.",
            param=f"{param}.seconds",
            code="invalid_value",
        )
    return ExpiresAfter(anchor="created_at", seconds=seconds)


def check_purpose(purpose: str, filename: str, size: int) -> None:
    """Raise the live API's 400 for a purpose it does not take or a file it would refuse.

    :param purpose: the purpose the file is uploaded for.
    :param filename: the client's name of the file (a ``batch`` file must end in ``.jsonl``).
    :param size: the file's size in bytes, as far as known.
    """
    if purpose not in PURPOSES:
        raise invalid_value("purpose", purpose, PURPOSES)
    if purpose == "batch":
        if not filename.lower().endswith(".jsonl"):
            raise invalid("Invalid file format for Batch API. Must be .jsonl", param="file")
        if size > MAX_FILE_BYTES:
            raise invalid(
                f"File is too large: {size} bytes. The Batch API takes input files of at most "
                f"{MAX_FILE_BYTES // (1024 * 1024)} MB.",
                param="file",
            )
