"""Local file names made from ids a server chose: they never leave the directory they are meant for."""

from __future__ import annotations

import os
import re
from pathlib import Path


def safe_name(text: str) -> str:
    """``text`` with every character that is not safe in a file name replaced by ``_``.

    ``/``, ``\\``, NUL and the like become ``_``, so the result names a file in one directory;
    dots are kept (``..`` alone is still a directory's parent: add a suffix, as
    :func:`download_target` does).
    """
    return re.sub(r"[^A-Za-z0-9._-]+", "_", text)


def download_target(dest: str | os.PathLike[str], file_id: str) -> Path:
    """Where a download of ``file_id`` goes: ``dest`` itself, or ``<safe_name(file_id)>.jsonl`` in it.

    :param dest: a file path, or an existing directory.
    :param file_id: the file's id, as the server gave it.
    :raises ValueError: the name made from ``file_id`` would leave ``dest`` (it cannot, but the
        check costs nothing).
    """
    target = Path(dest)
    if not target.is_dir():
        return target
    directory = target
    target = directory / f"{safe_name(file_id)}.jsonl"
    if target.resolve().parent != directory.resolve():
        raise ValueError(f"The file id {file_id!r} cannot be used as a file name in {directory}.")
    return target
