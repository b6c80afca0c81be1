"""The emulator's state: SQLite for objects and progress, plain files for file bytes.

Every object is stored as the JSON document the API returns, so reads answer without
re-serializing. One connection in WAL mode, guarded by a lock, serves the whole process:
statements are short, and a single writer keeps read-modify-write updates atomic.

File bytes live under ``<data_dir>/files/<file id>`` and upload parts under
``<data_dir>/parts/<part id>``: names the emulator generated, never a client's filename.

What is past its retention (see :mod:`~airflow_batch_provider.emulator.retention`) reads as
absent: an expired file (removed, bytes and all, when it is next looked up) and a batch past
``batch_retention_seconds``.
"""

from __future__ import annotations

import json
import os
import re
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from airflow_batch_provider.emulator.documents import Document, new_file
from airflow_batch_provider.emulator.retention import (
    ENDED_AT_SQL,
    FILE_KEPT_SQL,
    batch_forgotten,
    file_expired,
)
from airflow_batch_provider.rules import DEFAULT_OUTPUT_RETENTION_SECONDS, IN_PROGRESS_STATUSES

_UNFINISHED = tuple(sorted(status.value for status in IN_PROGRESS_STATUSES))

_SCHEMA = """
CREATE TABLE IF NOT EXISTS files (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    id TEXT NOT NULL UNIQUE,
    purpose TEXT NOT NULL,
    doc TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS uploads (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    id TEXT NOT NULL UNIQUE,
    doc TEXT NOT NULL,
    file_expires_after TEXT
);
CREATE TABLE IF NOT EXISTS upload_parts (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    id TEXT NOT NULL UNIQUE,
    upload_id TEXT NOT NULL,
    size INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS forced_failures (
    custom_id TEXT PRIMARY KEY,
    count INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS batches (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    id TEXT NOT NULL UNIQUE,
    status TEXT NOT NULL,
    doc TEXT NOT NULL,
    progress TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS batches_status ON batches (status);
"""


@dataclass
class Progress:
    """Where a batch's processing stands; saved with the batch in the same transaction.

    :param deadline: when the completion window ends (epoch seconds, not rounded).
    :param output_file_id: id the output file gets once the batch is finalized.
    :param error_file_id: id the error file gets once the batch is finalized.
    :param done: input lines handled so far, in file order; processing resumes after them.
    :param output_bytes: bytes of the output file that belong to the ``done`` lines.
    :param error_bytes: the same for the error file.
    :param enqueued_tokens: the tokens the batch counts for against the enqueued-token limit
        while it is in progress (an estimate from its input's size).
    """

    deadline: float
    output_file_id: str
    error_file_id: str
    done: int = 0
    output_bytes: int = 0
    error_bytes: int = 0
    enqueued_tokens: int = 0


def _own_id(object_id: str) -> str:
    """``object_id`` if it can name a file of the emulator's own (letters, digits, ``-`` and ``_``)."""
    if not _ID.fullmatch(object_id):
        raise ValueError(f"{object_id!r} is not an id of the emulator's")
    return object_id


_ID = re.compile(r"[A-Za-z0-9_-]{1,128}")


def _dumps(doc: Document) -> str:
    return json.dumps(doc, separators=(",", ":"))


class Store:
    """Files, uploads and batches of one emulator, under ``data_dir``.

    :param data_dir: directory for the database and file bytes; created if missing.
    :param result_retention_seconds: how long a batch's output and error files are kept when the
        batch did not set ``output_expires_after``; default the live API's 30 days.
    :param batch_retention_seconds: how long a finished batch is kept after it ended; default
        None: kept.
    """

    def __init__(
        self,
        data_dir: Path,
        *,
        result_retention_seconds: int = DEFAULT_OUTPUT_RETENTION_SECONDS,
        batch_retention_seconds: int | None = None,
    ) -> None:
        self.data_dir = data_dir
        self.result_retention_seconds = result_retention_seconds
        self.batch_retention_seconds = batch_retention_seconds
        self.files_dir = data_dir / "files"
        self.parts_dir = data_dir / "parts"
        for directory in (self.files_dir, self.parts_dir):
            directory.mkdir(parents=True, exist_ok=True)
        self._lock = threading.RLock()
        self._conn = sqlite3.connect(
            data_dir / "emulator.sqlite3", check_same_thread=False, isolation_level=None
        )
        self._conn.execute("PRAGMA journal_mode=WAL")
        self._conn.execute("PRAGMA synchronous=NORMAL")
        self._conn.executescript(_SCHEMA)

    def close(self) -> None:
        with self._lock:
            self._conn.close()

    @contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        with self._lock:
            self._conn.execute("BEGIN IMMEDIATE")
            try:
                yield self._conn
            except BaseException:
                self._conn.execute("ROLLBACK")
                raise
            self._conn.execute("COMMIT")

    def _one(self, sql: str, *params: Any) -> Any:
        with self._lock:
            row = self._conn.execute(sql, params).fetchone()
        return None if row is None else row[0]

    def _page(
        self,
        table: str,
        where: list[str],
        params: list[Any],
        after: str | None,
        limit: int,
        *,
        newest_first: bool = True,
    ) -> tuple[list[Document], bool]:
        if after is not None:
            where = [*where, f"seq {'<' if newest_first else '>'} (SELECT seq FROM {table} WHERE id = ?)"]
            params = [*params, after]
        clause = f"WHERE {' AND '.join(where)}" if where else ""
        sql = f"SELECT doc FROM {table} {clause} ORDER BY seq {'DESC' if newest_first else 'ASC'} LIMIT ?"
        with self._lock:
            rows = self._conn.execute(sql, [*params, limit + 1]).fetchall()
        return [json.loads(row[0]) for row in rows[:limit]], len(rows) > limit

    # Files

    def file_path(self, file_id: str) -> Path:
        """Where the bytes of ``file_id`` are (or will be) stored.

        :raises ValueError: ``file_id`` is not an id the emulator could have made (it would
            name another place on disk).
        """
        return self.files_dir / _own_id(file_id)

    def add_file(self, doc: Document) -> None:
        with self._transaction() as conn:
            conn.execute(
                "INSERT INTO files (id, purpose, doc) VALUES (?, ?, ?)",
                (doc["id"], doc["purpose"], _dumps(doc)),
            )

    def get_file(self, file_id: str) -> Document | None:
        """The file, or None when there is none or it has expired (then its bytes are removed)."""
        found = self._one("SELECT doc FROM files WHERE id = ?", file_id)
        if found is None:
            return None
        doc: Document = json.loads(found)
        if file_expired(doc, time.time()):
            self.delete_file(file_id)
            return None
        return doc

    def list_files(
        self, *, purpose: str | None, after: str | None, limit: int, newest_first: bool
    ) -> tuple[list[Document], bool]:
        """One page of the files not expired, and whether more follow."""
        where: list[str] = [FILE_KEPT_SQL]
        params: list[Any] = [time.time()]
        if purpose is not None:
            where, params = [*where, "purpose = ?"], [*params, purpose]
        return self._page("files", where, params, after, limit, newest_first=newest_first)

    def delete_file(self, file_id: str) -> bool:
        """Forget ``file_id`` and remove its bytes; False if it did not exist."""
        with self._transaction() as conn:
            deleted = conn.execute("DELETE FROM files WHERE id = ?", (file_id,)).rowcount > 0
        if deleted:
            self.file_path(file_id).unlink(missing_ok=True)
        return deleted

    # Uploads

    def part_path(self, part_id: str) -> Path:
        return self.parts_dir / _own_id(part_id)

    def add_upload(self, doc: Document, file_expires_after: Document | None = None) -> None:
        """Save a new upload, with the expiry policy of the file it will become."""
        with self._transaction() as conn:
            conn.execute(
                "INSERT INTO uploads (id, doc, file_expires_after) VALUES (?, ?, ?)",
                (doc["id"], _dumps(doc), None if file_expires_after is None else _dumps(file_expires_after)),
            )

    def upload_file_expiry(self, upload_id: str) -> Document | None:
        policy = self._one("SELECT file_expires_after FROM uploads WHERE id = ?", upload_id)
        return None if policy is None else json.loads(policy)

    def get_upload(self, upload_id: str) -> Document | None:
        doc = self._one("SELECT doc FROM uploads WHERE id = ?", upload_id)
        return None if doc is None else json.loads(doc)

    def save_upload(self, doc: Document) -> None:
        with self._transaction() as conn:
            conn.execute("UPDATE uploads SET doc = ? WHERE id = ?", (_dumps(doc), doc["id"]))

    def add_part(self, upload_id: str, part_id: str, size: int) -> None:
        with self._transaction() as conn:
            conn.execute(
                "INSERT INTO upload_parts (id, upload_id, size) VALUES (?, ?, ?)", (part_id, upload_id, size)
            )

    def part_sizes(self, upload_id: str) -> dict[str, int]:
        """The parts of an upload and their sizes, by part id."""
        with self._lock:
            rows = self._conn.execute(
                "SELECT id, size FROM upload_parts WHERE upload_id = ?", (upload_id,)
            ).fetchall()
        return dict(rows)

    def drop_parts(self, upload_id: str) -> None:
        """Remove every part of an upload, rows and bytes."""
        for part_id in self.part_sizes(upload_id):
            self.part_path(part_id).unlink(missing_ok=True)
        with self._transaction() as conn:
            conn.execute("DELETE FROM upload_parts WHERE upload_id = ?", (upload_id,))

    # Batches

    def add_batch(self, doc: Document, progress: Progress) -> None:
        with self._transaction() as conn:
            conn.execute(
                "INSERT INTO batches (id, status, doc, progress) VALUES (?, ?, ?, ?)",
                (doc["id"], doc["status"], _dumps(doc), json.dumps(asdict(progress))),
            )

    def batch_json(self, batch_id: str) -> str | None:
        """The batch as the API returns it, already serialized (the hot path of polling)."""
        result: str | None = self._one("SELECT doc FROM batches WHERE id = ?", batch_id)
        if result is not None and self.batch_retention_seconds is not None and self._forgotten(result):
            return None
        return result

    def _forgotten(self, doc: Document | str) -> bool:
        """Whether a batch is past ``batch_retention_seconds`` (then it reads as absent)."""
        parsed: Document = json.loads(doc) if isinstance(doc, str) else doc
        return batch_forgotten(parsed, self.batch_retention_seconds, time.time())

    def get_batch(self, batch_id: str) -> tuple[Document, Progress] | None:
        """The batch and its progress, or None when there is none (or it is past its retention)."""
        with self._lock:
            row = self._conn.execute("SELECT doc, progress FROM batches WHERE id = ?", (batch_id,)).fetchone()
        if row is None:
            return None
        doc = json.loads(row[0])
        return None if self._forgotten(doc) else (doc, Progress(**json.loads(row[1])))

    def update_batch(
        self,
        batch_id: str,
        change: Callable[[Document, Progress], bool | None],
        *,
        result_files: bool = False,
    ) -> bool:
        """Apply ``change`` to the batch and its progress in one transaction.

        :param change: mutates the document and progress in place; returning False
            leaves the batch as it was (e.g. a transition that no longer applies).
        :param result_files: the batch is ending: publish its output and error files (cut
            to the lengths in its progress) as ``batch_output`` files, in the same
            transaction, and set ``output_file_id`` / ``error_file_id``. An empty one is
            removed and its id stays null.
        :returns: whether the change was applied.
        """
        with self._transaction() as conn:
            row = conn.execute("SELECT doc, progress FROM batches WHERE id = ?", (batch_id,)).fetchone()
            if row is None:
                return False
            doc, progress = json.loads(row[0]), Progress(**json.loads(row[1]))
            if self._forgotten(doc):
                return False
            applied = change(doc, progress) is not False
            if applied:
                if result_files:
                    for file in self._result_files(doc, progress):
                        conn.execute(
                            "INSERT OR REPLACE INTO files (id, purpose, doc) VALUES (?, ?, ?)",
                            (file["id"], file["purpose"], _dumps(file)),
                        )
                conn.execute(
                    "UPDATE batches SET status = ?, doc = ?, progress = ? WHERE id = ?",
                    (doc["status"], _dumps(doc), json.dumps(asdict(progress)), batch_id),
                )
        return applied

    def _result_files(self, doc: Document, progress: Progress) -> list[Document]:
        created = int(time.time())
        expires_after = doc.get("output_expires_after") or {"seconds": self.result_retention_seconds}
        files = []
        for kind, file_id, size in (
            ("output", progress.output_file_id, progress.output_bytes),
            ("error", progress.error_file_id, progress.error_bytes),
        ):
            path = self.file_path(file_id)
            if size == 0:
                path.unlink(missing_ok=True)
                continue
            os.truncate(path, size)
            doc[f"{kind}_file_id"] = file_id
            files.append(
                new_file(
                    file_id,
                    size=size,
                    filename=f"{doc['id']}_{kind}.jsonl",
                    purpose="batch_output",
                    created_at=created,
                    expires_after_seconds=expires_after["seconds"],
                )
            )
        return files

    def list_batches(self, *, after: str | None, limit: int) -> tuple[list[Document], bool]:
        """One page of the batches not past their retention, newest first, and whether more follow."""
        if self.batch_retention_seconds is None:
            return self._page("batches", [], [], after, limit)
        kept = f"({ENDED_AT_SQL} IS NULL OR {ENDED_AT_SQL} + ? > ?)"
        return self._page("batches", [kept], [self.batch_retention_seconds, time.time()], after, limit)

    def enqueued_tokens(self) -> int:
        """The tokens of every batch in progress or finalizing.

        Called from an :meth:`update_batch` change, it reads inside that change's transaction.
        """
        with self._lock:
            rows = self._conn.execute(
                "SELECT progress FROM batches WHERE status IN ('in_progress', 'finalizing')"
            ).fetchall()
        return sum(json.loads(row[0]).get("enqueued_tokens", 0) for row in rows)

    def count_forced_failure(self, custom_id: str, times: int) -> bool:
        """Count one forced failure of ``custom_id``; False once it has failed ``times`` times.

        The counts outlive batches and restarts: a request that failed in one batch answers
        normally when retried in the next, as a transient failure does.
        """
        with self._transaction() as conn:
            row = conn.execute(
                "SELECT count FROM forced_failures WHERE custom_id = ?", (custom_id,)
            ).fetchone()
            count = row[0] if row else 0
            if count >= times:
                return False
            conn.execute(
                "INSERT INTO forced_failures (custom_id, count) VALUES (?, ?) "
                "ON CONFLICT (custom_id) DO UPDATE SET count = excluded.count",
                (custom_id, count + 1),
            )
        return True

    def unfinished_batches(self) -> list[str]:
        """Ids of batches not yet in a terminal status, oldest first."""
        placeholders = ", ".join("?" for _ in _UNFINISHED)
        with self._lock:
            rows = self._conn.execute(
                f"SELECT id FROM batches WHERE status IN ({placeholders}) ORDER BY seq", _UNFINISHED
            ).fetchall()
        return [row[0] for row in rows]
