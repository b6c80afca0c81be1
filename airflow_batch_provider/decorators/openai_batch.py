"""``@task.openai_batch``: a TaskFlow function that returns requests, run as one OpenAIBatchOperator task."""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping, Sequence
from typing import TYPE_CHECKING, Any, ClassVar

from airflow.providers.common.compat.sdk import (
    DecoratedOperator,
    TaskDecorator,
    context_merge,
    determine_kwargs,
    task_decorator_factory,
)

from airflow_batch_provider.operators.batch import OpenAIBatchOperator

if TYPE_CHECKING:
    from airflow.sdk import Context


class _OpenAIBatchDecoratedOperator(DecoratedOperator, OpenAIBatchOperator):
    """Calls the decorated function for its requests, then runs them as :class:`OpenAIBatchOperator`.

    :param python_callable: the function; it returns the requests (dicts, ``BatchRequest``
        objects, or prompt strings with ``model=``).
    :param op_args: positional arguments of the function (templated).
    :param op_kwargs: keyword arguments of the function (templated).
    """

    template_fields: Sequence[str] = (
        *DecoratedOperator.template_fields,
        *OpenAIBatchOperator.template_fields,
    )
    template_fields_renderers: ClassVar[dict[str, str]] = {
        **DecoratedOperator.template_fields_renderers,
        **OpenAIBatchOperator.template_fields_renderers,
    }
    custom_operator_name: str = "@task.openai_batch"

    def __init__(
        self,
        *,
        python_callable: Callable[..., Any],
        op_args: Collection[Any] | None = None,
        op_kwargs: Mapping[str, Any] | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(python_callable=python_callable, op_args=op_args, op_kwargs=op_kwargs, **kwargs)

    def execute(self, context: Context) -> Any:
        context_merge(context, self.op_kwargs)
        kwargs = determine_kwargs(self.python_callable, self.op_args, context)
        requests = self.python_callable(*self.op_args, **kwargs)
        if requests is None or isinstance(requests, (str, bytes, Mapping)):
            raise TypeError(
                f"@task.openai_batch function {self.python_callable.__name__!r} must return a list of "
                f"requests (dicts, BatchRequest objects or prompt strings), not {type(requests).__name__}."
            )
        self.requests = list(requests)
        return OpenAIBatchOperator.execute(self, context)


def openai_batch_task(python_callable: Callable[..., Any] | None = None, **kwargs: Any) -> TaskDecorator:
    """Turn a function that returns requests into an :class:`OpenAIBatchOperator` task.

    Every keyword argument is one of :class:`OpenAIBatchOperator`'s (``conn_id``, ``endpoint``,
    ``model``, ``output_type``, ``max_retry_rounds``, ...)::

        @task.openai_batch(model="gpt-4o-mini", output_type=Review)
        def classify(reviews: list[str]) -> list[str]:
            return [f"Classify this review: {review}" for review in reviews]

    :param python_callable: the function (given when the decorator is used without arguments).
    """
    return task_decorator_factory(
        python_callable=python_callable,
        decorated_operator_class=_OpenAIBatchDecoratedOperator,
        **kwargs,
    )
