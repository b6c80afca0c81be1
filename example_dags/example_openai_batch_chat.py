"""Chat completions through the Batch API: build requests, submit, wait, download, summarize.

Runs as is against the local emulator and against OpenAI; only the connection
``openai_batch_default`` changes. For the emulator::

    openai-batch-emulator --port 8000
    export AIRFLOW_CONN_OPENAI_BATCH_DEFAULT='{"conn_type": "openai_batch", "host": "http://127.0.0.1:8000/v1"}'

For OpenAI, the same variable with ``"host": "https://api.openai.com/v1"`` and your key as
``"password"`` (or a connection made in the UI). ``make demo`` runs this DAG.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from airflow.sdk import dag, task

from airflow_batch_provider.operators.batch import OpenAIBatchResultsOperator, OpenAIBatchSubmitOperator
from airflow_batch_provider.sensors.batch import OpenAIBatchSensor

QUESTIONS = [
    "What is the capital of France?",
    "Explain a directed acyclic graph in one sentence.",
    "Name three uses of batch inference.",
    "What does an Airflow sensor do?",
    "Why would a task defer instead of polling?",
    "Give a haiku about scheduling.",
]


@dag(
    dag_id="example_openai_batch_chat",
    schedule=None,
    start_date=datetime(2025, 1, 1),
    catchup=False,
    tags=["example", "openai", "batch"],
    doc_md=__doc__,
)
def example_openai_batch_chat() -> None:
    @task
    def build_requests() -> list[dict[str, Any]]:
        """One chat completion request per question; custom_id finds the answer later."""
        return [
            {
                "custom_id": f"question-{number}",
                "method": "POST",
                "url": "/v1/chat/completions",
                "body": {
                    "model": "gpt-4o-mini",
                    "messages": [
                        {"role": "system", "content": "Answer in at most two sentences."},
                        {"role": "user", "content": question},
                    ],
                    "max_tokens": 100,
                },
            }
            for number, question in enumerate(QUESTIONS)
        ]

    submit = OpenAIBatchSubmitOperator(
        task_id="submit",
        requests=build_requests(),
        endpoint="/v1/chat/completions",
        metadata={"pipeline": "example_openai_batch_chat"},
    )
    # Deferred: the wait holds no worker slot. A few seconds suit the emulator; batches on
    # OpenAI take minutes to hours, where a poll_interval of 60 or more is kinder.
    wait = OpenAIBatchSensor(task_id="wait", batch_id=submit.output, poll_interval=5)
    results = OpenAIBatchResultsOperator(task_id="download")

    @task
    def summarize(summary: dict[str, Any]) -> dict[str, Any]:
        """Print each question's answer; return the counts (the answers stay in the file)."""
        from airflow_batch_provider import jsonl

        answers = {}
        for result in jsonl.read_results(summary["output_path"]):
            if result.succeeded and result.response is not None:
                answers[result.custom_id] = result.response.body["choices"][0]["message"]["content"]
        for number, question in enumerate(QUESTIONS):
            print(f"Q: {question}\nA: {answers.get(f'question-{number}', '(no answer)')}\n")
        return {
            "answered": len(answers),
            "failed": summary["failed"],
            "total_tokens": summary["total_tokens"],
            "output_path": summary["output_path"],
        }

    wait >> results
    summarize(results.output)


example_openai_batch_chat()
