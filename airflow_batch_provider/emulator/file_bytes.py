"""Writing the bytes of files and upload parts: each file appears whole or not at all.

Bytes go to ``<target>.partial`` first and are moved to ``target`` once complete.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import BinaryIO

COPY_CHUNK = 1024 * 1024
"""Bytes read and written at a time."""


def copy_at_most(source: BinaryIO, target: Path, limit: int) -> int:
    """Copy ``source`` into a new file at ``target``, unless it holds more than ``limit`` bytes.

    :param source: what to copy, read to its end.
    :param target: where the bytes go; left untouched when ``source`` is too large.
    :param limit: most bytes accepted.
    :returns: the bytes read (``limit + 1`` or more when ``source`` was too large).
    """
    partial = target.with_name(target.name + ".partial")
    size = 0
    with open(partial, "wb") as out:
        while chunk := source.read(COPY_CHUNK):
            size += len(chunk)
            if size > limit:
                break
            out.write(chunk)
    if size > limit:
        partial.unlink()
    else:
        os.replace(partial, target)
    return size


def concatenate(parts: list[Path], target: Path) -> str:
    """Join ``parts`` in order into ``target``; return the md5 hex digest of the result."""
    digest = hashlib.md5(usedforsecurity=False)
    partial = target.with_name(target.name + ".partial")
    with open(partial, "wb") as out:
        for part in parts:
            with open(part, "rb") as source:
                while chunk := source.read(COPY_CHUNK):
                    digest.update(chunk)
                    out.write(chunk)
    os.replace(partial, target)
    return digest.hexdigest()
