"""OpenAIBatchOperator at 10,000 and 1,000,000 chat requests, and the merge of a million results.

Two measurements, each printed as a table:

1. The whole task, in real Airflow (``dag.test()`` in a child process with a throwaway
   ``AIRFLOW_HOME``), against the emulator in another process at zero processing delay: the
   input is a JSONL file on disk (``input_path``), split into parts of 50,000, submitted, waited
   for in one trigger, and merged. Measured: wall time, batches, and the peak RSS of the process
   that ran the task (and its trigger). Target: memory flat in the number of requests, under
   100 MB more at the large size than at the small one.
2. Merging and joining a million results (20 parts of 50,000 requests, their output files) into
   one output file in input order with ``outputs.merge_parts``, beside a bare loop of
   ``json.loads`` over the same files. Target: at most 2x the bare loop.

    .venv/bin/python benchmarks/one_task_bench.py [--small 10000] [--large 1000000] [--skip-task]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

MEMORY_TARGET_MB = 100.0
MERGE_TARGET_RATIO = 2.0
PART = 50_000
ENDPOINT = "/v1/chat/completions"


def request_line(n: int) -> str:
    body = {
        "model": "gpt-4o-mini",
        "messages": [{"role": "user", "content": f"Summarise support ticket #{n}: the user cannot log in."}],
        "max_tokens": 50,
    }
    return json.dumps({"custom_id": f"t{n:07d}", "method": "POST", "url": ENDPOINT, "body": body})


def write_requests(path: Path, count: int) -> None:
    with path.open("w") as out:
        for n in range(count):
            out.write(request_line(n) + "\n")


DAG_SCRIPT = """
import json, resource, sys, time
from datetime import datetime
from airflow.sdk import DAG
from airflow.dag_processing.bundles.manager import DagBundlesManager
from airflow.dag_processing.dagbag import DagBag, sync_bag_to_db
from airflow_batch_provider.operators.batch import OpenAIBatchOperator

source, destination = sys.argv[1], sys.argv[2]
with DAG("one_task_bench", schedule=None, start_date=datetime(2025, 1, 1)) as dag:
    OpenAIBatchOperator(task_id="run", input_path=source, destination=destination, poll_interval=2)
DagBundlesManager().sync_bundles_to_db()
bag = DagBag(collect_dags=False)
bag.bag_dag(dag)
sync_bag_to_db(bag, "dags-folder", None)
started = time.monotonic()
run = dag.test()
took = time.monotonic() - started
peak_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print("RESULT " + json.dumps({"state": str(run.state), "seconds": took, "peak_kb": peak_kb}), flush=True)
"""


def run_task(count: int, workdir: Path, base_url: str) -> dict[str, Any]:
    """Run the operator over ``count`` requests in a child process; return state, time, memory."""
    home = workdir / f"airflow-{count}"
    home.mkdir()
    source = workdir / f"requests-{count}.jsonl"
    write_requests(source, count)
    env = {
        **os.environ,
        "AIRFLOW_HOME": str(home),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{home / 'airflow.db'}",
        "AIRFLOW__LOGGING__LOGGING_LEVEL": "WARNING",
        "AIRFLOW_CONN_OPENAI_BATCH_DEFAULT": json.dumps({"conn_type": "openai_batch", "host": base_url}),
    }
    subprocess.run(
        [sys.executable, "-m", "airflow", "db", "migrate"], env=env, check=True, capture_output=True
    )
    done = subprocess.run(
        [sys.executable, "-c", DAG_SCRIPT, str(source), str(workdir / f"out-{count}")],
        env=env,
        capture_output=True,
        text=True,
    )
    lines = [line for line in done.stdout.splitlines() if line.startswith("RESULT ")]
    if not lines:
        print(done.stdout[-3000:], done.stderr[-3000:], file=sys.stderr)
        raise SystemExit(f"the task at {count:,} requests did not report")
    result: dict[str, Any] = json.loads(lines[-1].removeprefix("RESULT "))
    result["batches"] = -(-count // PART)
    source.unlink()
    return result


def measure_task(small: int, large: int) -> bool:
    from airflow_batch_provider.emulator import EmulatorProcess

    with tempfile.TemporaryDirectory(prefix="one-task-bench-") as directory:
        workdir = Path(directory)
        flags = ["--validation-delay", "0", "--request-delay", "0", "--finalizing-delay", "0"]
        with EmulatorProcess(*flags, "--concurrency", "256", "--log-level", "warning") as emulator:
            rows = {count: run_task(count, workdir, emulator.base_url) for count in (small, large)}
    growth = (rows[large]["peak_kb"] - rows[small]["peak_kb"]) / 1024
    print(f"\nOpenAIBatchOperator in dag.test(), emulator at zero delay, parts of {PART:,}\n")
    print("| requests | batches | state | wall time | peak RSS of the task process |")
    print("| ---: | ---: | --- | ---: | ---: |")
    for count, row in rows.items():
        print(
            f"| {count:,} | {row['batches']} | {row['state']} | {row['seconds']:.1f} s "
            f"| {row['peak_kb'] / 1024:.0f} MB |"
        )
    ok = growth < MEMORY_TARGET_MB and all(row["state"] == "success" for row in rows.values())
    verdict = "meets" if ok else "MISSES"
    print(
        f"\nPeak RSS grows {growth:.0f} MB from {small:,} to {large:,} requests: "
        f"{verdict} the target (< {MEMORY_TARGET_MB:.0f} MB)."
    )
    return ok


def result_line(n: int) -> str:
    body = {
        "id": f"chatcmpl-{n}",
        "object": "chat.completion",
        "model": "gpt-4o-mini",
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": f"Reply to ticket {n}."},
                "finish_reason": "stop",
            }
        ],
        "usage": {"prompt_tokens": 20, "completion_tokens": 8, "total_tokens": 28},
    }
    response = {"status_code": 200, "body": body}
    return json.dumps({"id": f"batch_req_{n}", "custom_id": f"t{n:07d}", "response": response, "error": None})


def measure_merge(count: int) -> bool:
    from airflow_batch_provider.outputs import merge_parts

    with tempfile.TemporaryDirectory(prefix="merge-bench-") as directory:
        workdir = Path(directory)
        parts = []
        for index, start in enumerate(range(0, count, PART)):
            numbers = range(start, min(start + PART, count))
            requests, results = workdir / f"part-{index}.jsonl", workdir / f"out-{index}.jsonl"
            requests.write_text("".join(request_line(n) + "\n" for n in numbers))
            # The API promises no order: write each part's results reversed.
            results.write_text("".join(result_line(n) + "\n" for n in reversed(numbers)))
            parts.append((requests, [results]))
        files = [path for requests, results in parts for path in (requests, *results)]
        size = sum(path.stat().st_size for path in files)

        def bare() -> None:
            for path in files:
                with path.open("rb") as file:
                    for line in file:
                        json.loads(line)

        def merge() -> None:
            tally = merge_parts(parts, workdir / "output.jsonl", workdir / "errors.jsonl")
            assert tally.succeeded == count

        bare()  # warm the page cache
        timings = {}
        for name, function in (("bare", bare), ("merge", merge), ("bare2", bare), ("merge2", merge)):
            started = time.perf_counter()
            function()
            timings[name] = time.perf_counter() - started
    bare_best, merge_best = min(timings["bare"], timings["bare2"]), min(timings["merge"], timings["merge2"])
    ratio = merge_best / bare_best
    print(f"\nJoining {count:,} results ({len(parts)} parts, {size / 1e6:.0f} MB of requests and results)")
    print("best of 2\n")
    print("| | time | ratio |")
    print("| --- | ---: | ---: |")
    print(f"| bare `json.loads` over every request and result line | {bare_best:.2f} s | 1.00x |")
    print(f"| `merge_parts`: index, join in input order, count, write | {merge_best:.2f} s | {ratio:.2f}x |")
    ok = ratio <= MERGE_TARGET_RATIO
    print(
        f"\nRatio {ratio:.2f}x {'meets' if ok else 'MISSES'} the target of at most {MERGE_TARGET_RATIO:.1f}x."
    )
    return ok


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--small", type=int, default=10_000, help="requests of the small run (default 10,000)"
    )
    parser.add_argument(
        "--large", type=int, default=1_000_000, help="requests of the large run (default 1,000,000)"
    )
    parser.add_argument("--skip-task", action="store_true", help="only measure the merge")
    args = parser.parse_args()
    ok = measure_merge(args.large)
    if not args.skip_task:
        ok = measure_task(args.small, args.large) and ok
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
