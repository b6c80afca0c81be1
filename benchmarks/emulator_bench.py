"""Emulator throughput: status reads per second, and a 50,000-request batch end to end.

Starts the emulator's CLI as a subprocess and measures, from other processes:

- ``GET /v1/batches/{id}`` per second over a few keep-alive connections, target 1,000/s: from a
  load process sending bare HTTP/1.1 requests (cheap enough for the server to be what is
  measured), and from ``wrk`` when it is installed; for context, also from an
  ``httpx.AsyncClient`` (a Python client, like the provider's triggers, which is what limits it).
- the wall time of a 50,000-request ``/v1/chat/completions`` batch at zero processing delay:
  upload, create, poll until ``completed``. Target: under 30 s.

Prints a markdown table (target beside measured) and exits 1 when a target is missed.

    .venv/bin/python benchmarks/emulator_bench.py [--requests 50000] [--seconds 5] [--connections 8]
"""

from __future__ import annotations

import argparse
import asyncio
import io
import logging
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from multiprocessing import get_context
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import openai

from airflow_batch_provider import jsonl
from airflow_batch_provider.emulator.server import EmulatorProcess

API_KEY = "sk-emulator-bench"
STATUS_READS_TARGET = 1_000.0
BATCH_SECONDS_TARGET = 30.0
POLL_INTERVAL = 0.2


@dataclass
class Row:
    measure: str
    target: str
    measured: str
    met: bool | None = None  # None: no target, shown for context


def quiet_http_logs() -> None:
    """No log line per request from httpx (the provider's) or httpx2 (the openai SDK's)."""
    for name in ("httpx", "httpx2"):
        logging.getLogger(name).setLevel(logging.WARNING)


@dataclass
class LoadResult:
    answers: int  # status 200
    failures: int  # other statuses and errors
    p99_ms: float
    seconds: float

    @property
    def rate(self) -> float:
        return self.answers / self.seconds


async def _drive(request: Callable[[], Awaitable[bool]], seconds: float, connections: int) -> LoadResult:
    """Call ``request`` in a loop from ``connections`` tasks for ``seconds``; time every answer."""
    latencies: list[float] = []
    failures = 0
    deadline = time.perf_counter() + seconds

    async def worker() -> None:
        nonlocal failures
        while (started := time.perf_counter()) < deadline:
            if await request():
                latencies.append(time.perf_counter() - started)
            else:
                failures += 1

    await asyncio.gather(*(worker() for _ in range(connections)))
    latencies.sort()
    p99 = latencies[int(len(latencies) * 0.99)] * 1000 if latencies else float("nan")
    return LoadResult(len(latencies), failures, p99, seconds)


def raw_load(url: str, seconds: float, connections: int) -> LoadResult:
    """GET ``url`` as bare HTTP/1.1 keep-alive requests on asyncio streams (runs in its own process).

    A Python HTTP client spends about a millisecond of CPU per request, so a load process using
    one measures itself; these requests cost the client almost nothing, so the server is measured.
    """
    parts = urlsplit(url)
    request = (
        f"GET {parts.path} HTTP/1.1\r\nHost: {parts.netloc}\r\nAuthorization: Bearer {API_KEY}\r\n\r\n"
    ).encode()

    async def run() -> LoadResult:
        streams = [await asyncio.open_connection(parts.hostname, parts.port) for _ in range(connections)]
        idle = asyncio.Queue[tuple[asyncio.StreamReader, asyncio.StreamWriter]]()
        for stream in streams:
            idle.put_nowait(stream)

        async def get() -> bool:
            reader, writer = await idle.get()
            writer.write(request)
            head = await reader.readuntil(b"\r\n\r\n")
            length = re.search(rb"(?im)^content-length:\s*(\d+)", head)
            await reader.readexactly(int(length.group(1)) if length else 0)
            idle.put_nowait((reader, writer))
            return head.startswith(b"HTTP/1.1 200 ")

        try:
            return await _drive(get, seconds, connections)
        finally:
            for _, writer in streams:
                writer.close()

    return asyncio.run(run())


def httpx_load(url: str, seconds: float, connections: int) -> LoadResult:
    """GET ``url`` with an ``httpx.AsyncClient`` of ``connections`` connections (in its own process)."""
    quiet_http_logs()

    async def run() -> LoadResult:
        limits = httpx.Limits(max_connections=connections, max_keepalive_connections=connections)
        headers = {"Authorization": f"Bearer {API_KEY}"}
        async with httpx.AsyncClient(limits=limits, headers=headers, timeout=10) as client:

            async def get() -> bool:
                try:
                    return (await client.get(url)).status_code == 200
                except httpx.HTTPError:
                    return False

            return await _drive(get, seconds, connections)

    return asyncio.run(run())


def in_a_process(load: Callable[[str, float, int], LoadResult], *args: Any) -> LoadResult:
    with ProcessPoolExecutor(max_workers=1, mp_context=get_context("spawn")) as pool:
        return pool.submit(load, *args).result()


def wrk_load(url: str, seconds: float, connections: int) -> tuple[float, str] | None:
    """Requests per second and p99 latency measured by ``wrk``, or None when it is not installed."""
    wrk = shutil.which("wrk")
    if wrk is None:
        return None
    command = [
        wrk,
        "-t1",
        f"-c{connections}",
        f"-d{max(1, round(seconds))}s",
        "--latency",
        "-H",
        f"Authorization: Bearer {API_KEY}",
        url,
    ]
    output = subprocess.run(command, capture_output=True, text=True, check=True).stdout
    rate = re.search(r"Requests/sec:\s+([\d.]+)", output)
    p99 = re.search(r"^\s+99%\s+(\S+)", output, re.MULTILINE)
    non_2xx = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", output)
    if rate is None or non_2xx is not None:
        raise RuntimeError(f"wrk did not measure clean answers:\n{output}")
    return float(rate.group(1)), p99.group(1) if p99 else "?"


def wait_for(client: openai.OpenAI, batch_id: str, timeout: float) -> openai.types.Batch:
    deadline = time.perf_counter() + timeout
    while True:
        batch = client.batches.retrieve(batch_id)
        if batch.status in ("completed", "failed", "expired", "cancelled") or time.perf_counter() > deadline:
            return batch
        time.sleep(POLL_INTERVAL)


def chat_requests(count: int):
    for index in range(count):
        yield {
            "custom_id": f"request-{index}",
            "method": "POST",
            "url": "/v1/chat/completions",
            "body": {
                "model": "gpt-4o-mini",
                "messages": [
                    {"role": "system", "content": "You answer in one short sentence."},
                    {"role": "user", "content": f"Question {index}: what is {index} squared?"},
                ],
                "max_completion_tokens": 64,
            },
        }


def measure_status_reads(
    client: openai.OpenAI, process: EmulatorProcess, seconds: float, connections: int
) -> list[Row]:
    small = io.BytesIO()
    jsonl.write_requests(chat_requests(10), small)
    uploaded = client.files.create(file=("small.jsonl", small.getvalue()), purpose="batch")
    batch = client.batches.create(
        input_file_id=uploaded.id, endpoint="/v1/chat/completions", completion_window="24h"
    )
    wait_for(client, batch.id, 30)
    url = f"{process.base_url}/batches/{batch.id}"

    target = f">= {STATUS_READS_TARGET:,.0f}"
    rows = []
    raw = in_a_process(raw_load, url, seconds, connections)
    rows.append(
        Row(
            f"GET /v1/batches/{{id}} per second: keep-alive load process, {connections} connections "
            f"(p99 {raw.p99_ms:.1f} ms, {raw.failures} failed)",
            target,
            f"{raw.rate:,.0f}",
            raw.rate >= STATUS_READS_TARGET and raw.failures == 0,
        )
    )
    measured = wrk_load(url, seconds, connections)
    if measured is not None:
        rate, p99 = measured
        rows.append(
            Row(
                f"GET /v1/batches/{{id}} per second: wrk, {connections} connections (p99 {p99})",
                target,
                f"{rate:,.0f}",
                rate >= STATUS_READS_TARGET,
            )
        )
    client_bound = in_a_process(httpx_load, url, seconds, connections)
    rows.append(
        Row(
            f"GET /v1/batches/{{id}} per second: httpx.AsyncClient load process, {connections} connections "
            f"(p99 {client_bound.p99_ms:.1f} ms, {client_bound.failures} failed)",
            "(bound by the Python client)",
            f"{client_bound.rate:,.0f}",
        )
    )
    return rows


def measure_batch(client: openai.OpenAI, requests: int) -> list[Row]:
    workdir = Path(tempfile.mkdtemp(prefix="emulator-bench-"))
    try:
        path = workdir / "requests.jsonl"
        jsonl.write_requests(chat_requests(requests), path)
        size_mb = path.stat().st_size / 1e6

        started = time.perf_counter()
        with open(path, "rb") as file:
            uploaded = client.files.create(file=file, purpose="batch")
        uploaded_at = time.perf_counter()
        created = client.batches.create(
            input_file_id=uploaded.id, endpoint="/v1/chat/completions", completion_window="24h"
        )
        batch = wait_for(client, created.id, timeout=10 * BATCH_SECONDS_TARGET)
        finished_at = time.perf_counter()
        counts = batch.request_counts
        done = counts is not None and counts.completed == requests and counts.failed == 0
        if batch.status != "completed" or not done or batch.output_file_id is None:
            raise RuntimeError(f"the batch did not complete cleanly: {batch.model_dump_json()}")
        output = workdir / "output.jsonl"
        client.files.content(batch.output_file_id).write_to_file(output)
        downloaded_at = time.perf_counter()
        with open(output, "rb") as file:
            lines = sum(1 for _ in file)
        if lines != requests:
            raise RuntimeError(f"the output file has {lines} lines, not {requests}")
    finally:
        shutil.rmtree(workdir, ignore_errors=True)

    total = finished_at - started
    return [
        Row(
            f"{requests:,}-request chat batch: upload ({size_mb:.0f} MB)",
            "",
            f"{uploaded_at - started:.1f} s",
        ),
        Row(
            f"{requests:,}-request chat batch: create until completed",
            "",
            f"{finished_at - uploaded_at:.1f} s ({requests / (finished_at - uploaded_at):,.0f} requests/s)",
        ),
        Row(
            f"{requests:,}-request chat batch: upload, create, poll until completed",
            f"< {BATCH_SECONDS_TARGET:.0f} s",
            f"{total:.1f} s",
            total < BATCH_SECONDS_TARGET,
        ),
        Row(
            f"{requests:,}-request chat batch: download the output",
            "",
            f"{downloaded_at - finished_at:.1f} s",
        ),
    ]


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--requests", type=int, default=jsonl.MAX_REQUESTS, help="requests in the big batch")
    parser.add_argument("--seconds", type=float, default=5.0, help="duration of each status-read load")
    parser.add_argument("--connections", type=int, default=8, help="concurrent connections of the load")
    args = parser.parse_args()
    quiet_http_logs()

    emulator = EmulatorProcess(
        "--api-key",
        API_KEY,
        "--log-level",
        "warning",
        "--validation-delay",
        "0",
        "--request-delay",
        "0",
        "--finalizing-delay",
        "0",
        "--concurrency",
        "64",
    )
    with emulator, openai.OpenAI(base_url=emulator.base_url, api_key=API_KEY, max_retries=0) as client:
        rows = measure_status_reads(client, emulator, args.seconds, args.connections)
        rows += measure_batch(client, args.requests)

    print("| Measure | Target | Measured | Met |")
    print("|---|---|---|---|")
    for row in rows:
        met = "" if row.met is None else ("yes" if row.met else "**no**")
        print(f"| {row.measure} | {row.target} | {row.measured} | {met} |")
    return 0 if all(row.met is not False for row in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
