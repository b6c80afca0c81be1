"""An Airflow-free client of the OpenAI Files and Batches APIs (and of any server that speaks them).

:class:`BatchClient` blocks (``requests``); :class:`AsyncBatchClient` runs in an event loop
(``httpx``). Both take :class:`ClientSettings`, retry by one :class:`RetryPolicy` and raise
:class:`OpenAIBatchAPIError`. The Airflow hook builds the settings from a connection.
"""

from airflow_batch_provider.client.aio import AsyncBatchClient
from airflow_batch_provider.client.errors import OpenAIBatchAPIError, is_transient
from airflow_batch_provider.client.retry import RetryPolicy
from airflow_batch_provider.client.settings import ClientSettings
from airflow_batch_provider.client.sync import BatchClient

__all__ = [
    "AsyncBatchClient",
    "BatchClient",
    "ClientSettings",
    "OpenAIBatchAPIError",
    "RetryPolicy",
    "is_transient",
]
