"""How long one try of a request may take, on both paths.

An ordinary call (read a batch, create one, list, cancel) gets ``timeout`` seconds end to end:
connecting, sending, waiting for the answer and reading all of it. A server that answers one
byte at a time, or holds the connection open without answering, is cut off at that deadline.

Uploads and downloads carry up to 200 MB, so a bound meant for small calls would cut them:
for them ``timeout`` bounds every wait without progress (no byte sent or received for
``timeout`` seconds fails the try), and the whole try may take ``timeout`` plus the time the
bytes need at :data:`MIN_TRANSFER_RATE`. A stalled transfer fails after ``timeout``; a
trickling one once it falls behind that rate.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from airflow_batch_provider.rules import MAX_FILE_BYTES

MIN_TRANSFER_RATE = 64 * 1024
"""Bytes per second below which an upload or download is given up (64 KiB/s: a 200 MB file
may take 53 minutes)."""


def transfer_seconds(size: int | None) -> float:
    """Seconds ``size`` bytes may take at :data:`MIN_TRANSFER_RATE`; unknown: the largest input file's."""
    return (MAX_FILE_BYTES if size is None else max(size, 0)) / MIN_TRANSFER_RATE


@dataclass(frozen=True)
class Deadline:
    """The end of one try, on the monotonic clock.

    :param seconds: how long the try may take in all.
    :param at: when it ends (``time.monotonic()`` seconds).
    """

    seconds: float
    at: float

    @classmethod
    def after(cls, seconds: float) -> Deadline:
        """The deadline ``seconds`` from now."""
        return cls(seconds, time.monotonic() + seconds)

    def left(self) -> float:
        """Seconds until the deadline (0 once it has passed)."""
        return max(0.0, self.at - time.monotonic())

    def passed(self) -> bool:
        return time.monotonic() >= self.at
