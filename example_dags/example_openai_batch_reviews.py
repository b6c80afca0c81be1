"""Label product reviews in one task: ``@task.openai_batch``, typed answers, a retry round, joined results.

The function returns one chat request per review, asking for a JSON answer that matches
``ReviewLabel`` (``response_format`` of type ``json_schema``); the task submits them, waits
without holding a worker slot, submits again the requests that failed for a reason that may
pass (here: a few that the emulator fails once with a 500), and validates every answer into
``ReviewLabel``. The next task reads the joined results, one line per review, in input order.

Zero configuration against the local emulator (``make demo`` runs the chat example; this one
runs the same way); against OpenAI only the connection ``openai_batch_default`` changes. The
simulated failures are added only when the connection points at a local emulator.
"""

from __future__ import annotations

from collections import Counter
from datetime import datetime
from typing import Any, Literal

from airflow.sdk import dag, task
from pydantic import BaseModel, ConfigDict, Field

REVIEWS = [
    "Arrived quickly and works exactly as described. Five stars.",
    "The handle broke after two days; I want a refund.",
    "It is fine. Nothing special, nothing wrong.",
    "Best purchase this year, my kids love it.",
    "Battery lasts half of what the box promises.",
    "Decent value for the price, though the manual is confusing.",
]
#: Reviews the emulator fails once with a 500, so that the retry round has work to do.
FLAKY = {1, 4}


class ReviewLabel(BaseModel):
    """What the model must answer for each review."""

    model_config = ConfigDict(extra="forbid")

    sentiment: Literal["positive", "negative", "neutral"]
    stars: int = Field(ge=1, le=5)
    summary: str


def _against_emulator() -> bool:
    from urllib.parse import urlsplit

    from airflow_batch_provider.client.settings import is_loopback
    from airflow_batch_provider.hooks.batch import OpenAIBatchHook

    return is_loopback(urlsplit(OpenAIBatchHook().settings.base_url).hostname or "")


@dag(
    dag_id="example_openai_batch_reviews",
    schedule=None,
    start_date=datetime(2025, 1, 1),
    catchup=False,
    tags=["example", "openai", "batch"],
    doc_md=__doc__,
)
def example_openai_batch_reviews() -> None:
    @task.openai_batch(
        model="gpt-4o-mini",
        output_type=ReviewLabel,
        max_retry_rounds=2,
        retry_round_delay=1,
        poll_interval=2,
        failure_threshold=0.0,
    )
    def classify(reviews: list[str]) -> list[dict[str, Any]]:
        schema = {"name": "review_label", "strict": True, "schema": ReviewLabel.model_json_schema()}
        simulate = _against_emulator()
        requests = []
        for number, review in enumerate(reviews):
            body: dict[str, Any] = {
                "model": "gpt-4o-mini",
                "messages": [
                    {"role": "system", "content": "Label the product review."},
                    {"role": "user", "content": review},
                ],
                "response_format": {"type": "json_schema", "json_schema": schema},
            }
            if simulate and number in FLAKY:
                body["emulator_fail"] = {"status": 500, "times": 1}
            requests.append({"custom_id": f"review-{number}", "body": body})
        return requests

    @task
    def report(summary: dict[str, Any]) -> dict[str, int]:
        """Count the labels: each line of the output file holds a review's validated ``output``."""
        from airflow_batch_provider.jsonl import read_results

        sentiments: Counter[str] = Counter()
        for result in read_results(summary["output_path"]):
            label = ReviewLabel.model_validate(result.model_extra["output"])
            sentiments[label.sentiment] += 1
            print(f"{result.custom_id}: {label.sentiment}, {label.stars} stars: {label.summary}")
        print(f"{summary['succeeded']} labelled, {summary['failed']} failed.")
        print(f"Batches by round: {summary['batches']}")
        return dict(sentiments)

    report(classify(REVIEWS))


example_openai_batch_reviews()
