"""A ``multipart/form-data`` request body that streams its file part.

``requests`` builds a multipart body in memory (``files=``), so a 200 MB upload would
hold 200 MB, and more, at once. This body reads the file in chunks as the socket takes
them, and knows its length up front so it is sent with ``Content-Length`` rather than
chunked transfer encoding, which not every server accepts for uploads.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterator, Mapping
from typing import IO

CHUNK_SIZE = 1024 * 1024


def _quote(value: str) -> str:
    # RFC 7578 section 4.2: percent-encode the characters that would end the quoted string.
    return value.replace("\\", "\\\\").replace('"', "%22").replace("\r", "%0D").replace("\n", "%0A")


class MultipartFileBody:
    """Form fields followed by one file, read lazily in ``CHUNK_SIZE`` pieces.

    Iterate over it to get the body's bytes; ``len()`` is the exact body length. Iterating
    reads the file from its current position, so build a new body (after seeking the
    file back) for each try.

    :param fields: plain form fields sent before the file, e.g. ``{"purpose": "batch"}``.
    :param file: the open binary file, positioned at the first byte to send.
    :param size: the number of bytes to send from ``file``, or None to send it to its end
        (then the length is unknown: send ``iter(body)``, which goes out chunked).
    :param filename: the name the server records for the file.
    :param file_field: the form field of the file (default ``"file"``).
    :param content_type: the file part's content type (default ``application/octet-stream``).
    """

    def __init__(
        self,
        fields: Mapping[str, str],
        file: IO[bytes],
        size: int | None,
        filename: str,
        file_field: str = "file",
        content_type: str = "application/octet-stream",
    ) -> None:
        boundary = secrets.token_hex(16)
        self.content_type = f"multipart/form-data; boundary={boundary}"
        parts = [
            f'--{boundary}\r\nContent-Disposition: form-data; name="{_quote(name)}"\r\n\r\n{value}\r\n'
            for name, value in fields.items()
        ]
        disposition = f'form-data; name="{_quote(file_field)}"; filename="{_quote(filename)}"'
        parts.append(
            f"--{boundary}\r\nContent-Disposition: {disposition}\r\nContent-Type: {content_type}\r\n\r\n"
        )
        self._head = "".join(parts).encode()
        self._tail = f"\r\n--{boundary}--\r\n".encode()
        self._file = file
        self._size = size

    @property
    def length(self) -> int | None:
        """The exact body length in bytes, or None when the file's size is unknown."""
        return None if self._size is None else len(self._head) + self._size + len(self._tail)

    def __len__(self) -> int:
        length = self.length
        if length is None:
            raise TypeError("the body's length is unknown")
        return length

    def __iter__(self) -> Iterator[bytes]:
        yield self._head
        if self._size is None:
            yield from iter(lambda: self._file.read(CHUNK_SIZE), b"")
            yield self._tail
            return
        remaining = self._size
        while remaining > 0:
            chunk = self._file.read(min(CHUNK_SIZE, remaining))
            if not chunk:
                raise OSError(f"the file ended {remaining} bytes early: was it changed during the upload?")
            remaining -= len(chunk)
            yield chunk
        yield self._tail
