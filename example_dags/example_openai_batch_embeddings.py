"""Embeddings through the Batch API: embed documents in one batch, then find similar pairs.

Same connection as the chat example (``openai_batch_default``): zero configuration against
the emulator, OpenAI by changing only the connection.
"""

from __future__ import annotations

import math
from datetime import datetime
from typing import Any

from airflow.sdk import dag, task

from airflow_batch_provider.operators.batch import OpenAIBatchResultsOperator, OpenAIBatchSubmitOperator
from airflow_batch_provider.sensors.batch import OpenAIBatchSensor

DOCUMENTS = {
    "doc-dag": "A DAG is a collection of tasks with dependencies between them.",
    "doc-sensor": "A sensor waits for something to happen before downstream tasks run.",
    "doc-trigger": "A trigger runs in the triggerer and wakes a deferred task up.",
    "doc-batch": "The Batch API runs many requests asynchronously at a lower price.",
    "doc-xcom": "XComs let tasks exchange small pieces of data.",
}


@dag(
    dag_id="example_openai_batch_embeddings",
    schedule=None,
    start_date=datetime(2025, 1, 1),
    catchup=False,
    tags=["example", "openai", "batch"],
    doc_md=__doc__,
)
def example_openai_batch_embeddings() -> None:
    @task
    def build_requests() -> list[dict[str, Any]]:
        return [
            {
                "custom_id": doc_id,
                "method": "POST",
                "url": "/v1/embeddings",
                "body": {"model": "text-embedding-3-small", "input": text, "dimensions": 256},
            }
            for doc_id, text in DOCUMENTS.items()
        ]

    submit = OpenAIBatchSubmitOperator(task_id="submit", requests=build_requests(), endpoint="/v1/embeddings")
    wait = OpenAIBatchSensor(task_id="wait", batch_id=submit.output, poll_interval=5)
    results = OpenAIBatchResultsOperator(task_id="download")

    @task
    def most_similar(summary: dict[str, Any]) -> list[dict[str, Any]]:
        """Rank document pairs by the cosine similarity of their embeddings."""
        from airflow_batch_provider import jsonl

        vectors = {
            result.custom_id: result.response.body["data"][0]["embedding"]
            for result in jsonl.read_results(summary["output_path"])
            if result.succeeded and result.response is not None
        }

        def cosine(a: list[float], b: list[float]) -> float:
            dot = sum(x * y for x, y in zip(a, b, strict=True))
            return dot / (math.hypot(*a) * math.hypot(*b))

        ids = sorted(vectors)
        pairs = [
            {"a": a, "b": b, "similarity": round(cosine(vectors[a], vectors[b]), 4)}
            for i, a in enumerate(ids)
            for b in ids[i + 1 :]
        ]
        pairs.sort(key=lambda pair: pair["similarity"], reverse=True)
        for pair in pairs[:3]:
            print(f"{pair['a']} ~ {pair['b']}: {pair['similarity']}")
        return pairs[:3]

    wait >> results
    most_similar(results.output)


example_openai_batch_embeddings()
