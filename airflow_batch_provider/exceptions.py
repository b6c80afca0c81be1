"""Exceptions raised by the provider.

They do not derive from ``AirflowException`` (Airflow 3 tasks may raise any exception), so that
the emulator and the JSONL tools import them without importing Airflow.
"""

from __future__ import annotations

from collections.abc import Sequence

from airflow_batch_provider.models import BatchError


class OpenAIBatchAPIError(Exception):
    """The API answered with an error, or could not be reached.

    :param message: what went wrong and what to do about it.
    :param status_code: the HTTP status, or None when no answer came.
    :param type: the error's ``type`` from the body (e.g. ``invalid_request_error``).
    :param code: the error's ``code`` from the body (e.g. ``invalid_value``).
    :param param: the parameter the error is about, if any.
    :param request_id: the ``x-request-id`` header, to quote to the API's support.
    """

    def __init__(
        self,
        message: str,
        *,
        status_code: int | None = None,
        type: str | None = None,
        code: str | None = None,
        param: str | None = None,
        request_id: str | None = None,
    ) -> None:
        self.message = message
        self.status_code = status_code
        self.type = type
        self.code = code
        self.param = param
        self.request_id = request_id
        super().__init__(str(self))

    def __str__(self) -> str:
        details = [
            f"{name}={value}"
            for name, value in (
                ("status", self.status_code),
                ("type", self.type),
                ("code", self.code),
                ("param", self.param),
                ("request_id", self.request_id),
            )
            if value is not None
        ]
        return f"{self.message} ({', '.join(details)})" if details else self.message

    def __reduce__(self):  # keep keyword arguments through pickling
        return (_rebuild_api_error, (self.message, self.__dict__.copy()))


def _rebuild_api_error(message: str, state: dict) -> OpenAIBatchAPIError:
    error = OpenAIBatchAPIError.__new__(OpenAIBatchAPIError)
    error.__dict__.update(state)
    Exception.__init__(error, str(error))
    return error


class BatchInputError(ValueError):
    """A batch input file breaks the Batch API's rules.

    :param errors: every problem found, each with a 1-based ``line``, ``param``, ``code``
        and ``message`` (the same shape the API reports in ``Batch.errors``).
    :param source: the file or request list that was checked, for the message.
    """

    def __init__(self, errors: Sequence[BatchError], source: str = "batch input") -> None:
        self.errors = list(errors)
        self.source = source
        shown = "\n".join(f"  - {error.describe()}" for error in self.errors[:50])
        more = f"\n  ... and {len(self.errors) - 50} more" if len(self.errors) > 50 else ""
        super().__init__(f"{source} has {len(self.errors)} problem(s):\n{shown}{more}")

    def __reduce__(self):
        return (type(self), (self.errors, self.source))


class GoneError(Exception):
    """Something a task needs from the API answers 404: a result file that expired, a batch past
    the API's retention. Waiting or retrying cannot bring it back; the message says what is gone,
    since when if known, and what to do.

    :param message: what is gone and what to do.
    :param cause: the API's 404, whose ``request_id`` the message keeps.
    """

    def __init__(self, message: str, cause: OpenAIBatchAPIError | None = None) -> None:
        if cause is not None and cause.request_id:
            message = f"{message} (request_id={cause.request_id})"
        super().__init__(message)
        self.cause = cause
