"""What an executor is: it answers one request of a batch with an :class:`Execution`."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

from airflow_batch_provider.emulator.errors import APIError

JSON = dict[str, Any]


@dataclass(frozen=True)
class Execution:
    """The answer to one request: what the endpoint would have sent back.

    :param status_code: the HTTP status of the answer.
    :param body: the JSON body of the answer (an error body ``{"error": {...}}`` when not 2xx).
    :param usage: the body's ``usage`` in the endpoint's own shape (``prompt_tokens`` /
        ``completion_tokens`` or ``input_tokens`` / ``output_tokens``), None when it has none.
    """

    status_code: int
    body: JSON
    usage: JSON | None = None

    @classmethod
    def of_error(cls, error: APIError) -> Execution:
        """The answer that carries ``error``: its status and its live error body."""
        return cls(error.status_code, error.body())

    @property
    def ok(self) -> bool:
        """True for a 2xx answer (its line goes to the output file, not the error file)."""
        return 200 <= self.status_code < 300

    @property
    def input_tokens(self) -> int:
        """Input tokens of :attr:`usage`, whichever shape the endpoint uses (0 without usage)."""
        return _token_count(self.usage, "input_tokens", "prompt_tokens")

    @property
    def output_tokens(self) -> int:
        """Output tokens of :attr:`usage`, whichever shape the endpoint uses (0 without usage)."""
        return _token_count(self.usage, "output_tokens", "completion_tokens")


def _token_count(usage: JSON | None, *names: str) -> int:
    for name in names:
        value = (usage or {}).get(name)
        if isinstance(value, int):
            return value
    return 0


class Executor(Protocol):
    """Executes one request of a batch; never raises for a bad request or a failed server."""

    async def execute(self, url: str, body: JSON) -> Execution:
        """Answer ``body`` sent with POST to ``url`` (an endpoint path such as ``/v1/embeddings``)."""
        ...

    async def aclose(self) -> None:
        """Release what the executor holds (connections); it may be used again afterwards."""
        ...
