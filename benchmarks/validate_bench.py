"""Validate a 50,000-line batch input file, timed against a bare ``json.loads`` loop.

Target (issue 2): ``validate_file`` takes at most 2x the time of parsing every line of the
same file with ``json.loads`` and nothing else. The script prints a markdown table and
exits with status 1 when the ratio is above the target.

    .venv/bin/python benchmarks/validate_bench.py [--lines 50000] [--runs 7]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
import tracemalloc
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from airflow_batch_provider.jsonl import validate_file, write_requests

ENDPOINT = "/v1/chat/completions"
TARGET_RATIO = 2.0


def chat_requests(count: int) -> Iterator[dict[str, Any]]:
    for n in range(count):
        yield {
            "custom_id": f"request-{n:06d}",
            "method": "POST",
            "url": ENDPOINT,
            "body": {
                "model": "gpt-4o-mini",
                "messages": [
                    {
                        "role": "system",
                        "content": "You are a helpful assistant; answer in one sentence.",
                    },
                    {
                        "role": "user",
                        "content": f"Summarise support ticket #{n}: the user cannot log in.",
                    },
                ],
                "max_tokens": 200,
                "temperature": 0.2,
            },
        }


def bare_json_loads(path: Path) -> None:
    with path.open("rb") as file:
        for line in file:
            json.loads(line)


def best_time(function: Callable[[], object], runs: int) -> float:
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        function()
        times.append(time.perf_counter() - start)
    return min(times)


def peak_traced_bytes(function: Callable[[], object]) -> int:
    tracemalloc.start()
    try:
        function()
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lines", type=int, default=50_000, help="requests in the file (default 50,000)")
    parser.add_argument("--runs", type=int, default=7, help="timed runs of each; the best counts (default 7)")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="validate-bench-") as directory:
        path = Path(directory) / "requests.jsonl"
        write_requests(chat_requests(args.lines), path)
        size = path.stat().st_size

        def validate() -> None:
            assert validate_file(path, ENDPOINT) == args.lines

        bare_json_loads(path)  # warm the page cache and the interpreter
        bare_best = best_time(lambda: bare_json_loads(path), args.runs)
        validate_best = best_time(validate, args.runs)
        bare_peak = peak_traced_bytes(lambda: bare_json_loads(path))
        validate_peak = peak_traced_bytes(validate)

    ratio = validate_best / bare_best
    per_line = 1e6 / args.lines
    title = f"Validating a {args.lines:,}-line chat-completions file ({size / 1e6:.1f} MB)"
    print(f"{title}, best of {args.runs} runs\n")
    print("| | time | per line | peak Python memory | ratio to bare loop |")
    print("|---|---:|---:|---:|---:|")
    print(
        f"| bare `json.loads` per line | {bare_best * 1e3:.0f} ms | {bare_best * per_line:.2f} µs "
        f"| {bare_peak / 1e6:.1f} MB | 1.00x |"
    )
    print(
        f"| `validate_file` (every rule) | {validate_best * 1e3:.0f} ms | {validate_best * per_line:.2f} µs "
        f"| {validate_peak / 1e6:.1f} MB | {ratio:.2f}x |"
    )
    verdict = "meets" if ratio <= TARGET_RATIO else "MISSES"
    print(f"\nRatio {ratio:.2f}x {verdict} the target of at most {TARGET_RATIO:.1f}x.")
    return 0 if ratio <= TARGET_RATIO else 1


if __name__ == "__main__":
    sys.exit(main())
