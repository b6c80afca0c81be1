"""What the operators that take requests share: their hook, and a check of what was rendered."""

from __future__ import annotations

from collections.abc import Iterable
from functools import cached_property
from typing import TYPE_CHECKING, Any

from airflow.sdk import BaseOperator

from airflow_batch_provider.hooks.batch import OpenAIBatchHook
from airflow_batch_provider.inputs import RequestItem, check_requests
from airflow_batch_provider.utils import fail_on_bad_input

if TYPE_CHECKING:
    import jinja2
    from airflow.sdk import Context


class RequestsOperator(BaseOperator):
    """Base of the operators with a ``requests`` field and a ``conn_id``, set by their ``__init__``."""

    requests: Iterable[RequestItem] | None
    conn_id: str

    @cached_property
    def hook(self) -> OpenAIBatchHook:
        return OpenAIBatchHook(conn_id=self.conn_id)

    def _do_render_template_fields(
        self,
        parent: Any,
        template_fields: Iterable[str],
        context: Context,
        jinja_env: jinja2.Environment,
        seen_oids: set[int],
    ) -> None:
        """Render, then fail at once (no retries) on requests that cannot be written as JSON.

        Airflow stores the rendered fields before ``execute``; a NaN there fails the try in
        Airflow itself, as an error worth retrying. (This is the method a mapped task renders
        through too, unlike ``render_template_fields``.)
        """
        super()._do_render_template_fields(parent, template_fields, context, jinja_env, seen_oids)
        if parent is self:
            with fail_on_bad_input(self.task_id):
                check_requests(self.requests)
