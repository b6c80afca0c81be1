"""Operator extra link to a batch's web page."""

from __future__ import annotations

from typing import TYPE_CHECKING

from airflow.sdk import BaseOperatorLink

if TYPE_CHECKING:
    from airflow.sdk import BaseOperator
    from airflow.sdk.types import TaskInstanceKey

#: XCom key under which the submit operator and the sensor push the batch's page URL.
BATCH_URL_XCOM_KEY = "batch_url"


class OpenAIBatchLink(BaseOperatorLink):
    """The "OpenAI Batch" button of a task: the page of the batch it submitted or waited for.

    The task pushes the URL (``OpenAIBatchHook.batch_page_url``: the OpenAI platform's page,
    the emulator's page, or the connection's ``batch_url_template``) under the XCom key
    ``batch_url`` once it knows the batch; the link reads it back. No URL (a server with no
    known page, or a task that failed before creating a batch) gives an empty link, which the
    UI hides.
    """

    name = "OpenAI Batch"

    def get_link(self, operator: BaseOperator, *, ti_key: TaskInstanceKey) -> str:
        from airflow.providers.common.compat.sdk import XCom

        if getattr(operator, "batch_id", None) is None:
            return ""  # the task failed before there was a batch: no URL was pushed
        return XCom.get_value(ti_key=ti_key, key=BATCH_URL_XCOM_KEY) or ""
