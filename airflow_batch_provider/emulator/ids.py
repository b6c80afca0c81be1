"""Identifiers in the live API's formats."""

from __future__ import annotations

import secrets


def new_id(prefix: str) -> str:
    """A fresh random id such as ``batch_6f1c...`` or ``file-6f1c...``.

    :param prefix: the object's prefix including its separator (``"batch_"``, ``"file-"``).
    """
    return prefix + secrets.token_hex(12)
