"""An adversarial pass over every area: hostile ids, paths, headers and bodies; cut, dribbled and
lost answers; killed emulators; generated input lines; and the Airflow-level cases.

Prints one markdown row per area (cases tried, of which kinds, failures left) and every failure,
and exits 1 when any case failed. Seeded: the same cases every run.

    .venv/bin/python benchmarks/adversarial.py [--seed 9] [--lines 2000] [--kills 8] [--no-airflow]

The durable part of it lives in the test suite (tests/client, tests/emulator, tests/core,
tests/dags); this pass runs more cases of each kind than the suite does.
"""

from __future__ import annotations

import argparse
import asyncio
import io
import json
import logging
import random
import re
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from airflow_batch_provider import jsonl  # noqa: E402
from airflow_batch_provider.client import (  # noqa: E402
    AsyncBatchClient,
    BatchClient,
    ClientSettings,
    OpenAIBatchAPIError,
)
from airflow_batch_provider.emulator.server import EmulatorProcess, EmulatorServer  # noqa: E402
from airflow_batch_provider.exceptions import BatchInputError  # noqa: E402
from tests.support.requests import chat_requests, jsonl_bytes  # noqa: E402
from tests.support.scripted_server import Reply, ScriptedServer, api_error, batch_json  # noqa: E402

KEY = "sk-adversarial-0123456789abcdef"
FAST = {"validation_delay": 0.02, "request_delay": 0.0, "finalizing_delay": 0.02, "cancel_delay": 0.02}


@dataclass
class Area:
    """The cases tried in one area, and the ones that failed."""

    name: str
    kinds: list[str] = field(default_factory=list)
    tried: int = 0
    failures: list[str] = field(default_factory=list)

    def case(self, kind: str, ok: bool, detail: str = "") -> None:
        if kind not in self.kinds:
            self.kinds.append(kind)
        self.tried += 1
        if not ok:
            self.failures.append(f"{kind}: {detail}"[:300])


# -- the emulator's API, over raw sockets --


def raw(
    port: int, data: bytes, half_close: bool = False, timeout: float = 10
) -> tuple[int | None, dict[str, str], bytes]:
    """Send ``data`` as it is (then end the sending side, if ``half_close``: for bytes that may not end
    a request); the answer's status (None: the server only closed), headers and body (de-chunked)."""
    answer = b""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        with suppress(OSError):
            sock.sendall(data)
            if half_close:
                sock.shutdown(socket.SHUT_WR)
        with suppress(OSError):
            while chunk := sock.recv(65536):
                answer += chunk
    head, _, body = answer.partition(b"\r\n\r\n")
    if not head.startswith(b"HTTP/"):
        return None, {}, b""
    status_line, *lines = head.decode("latin-1").split("\r\n")
    headers = {name.lower(): value.strip() for name, _, value in (line.partition(":") for line in lines)}
    if headers.get("transfer-encoding") == "chunked":
        body = dechunk(body)
    return int(status_line.split()[1]), headers, body


def dechunk(body: bytes) -> bytes:
    out = b""
    while body:
        size_line, _, body = body.partition(b"\r\n")
        size = int(size_line.split(b";")[0] or b"0", 16)
        if size == 0:
            break
        out, body = out + body[:size], body[size + 2 :]
    return out


def request_bytes(
    method: str, target: str, body: bytes = b"", headers: str = "", auth: str | None = KEY
) -> bytes:
    authorization = f"Authorization: Bearer {auth}\r\n" if auth is not None else ""
    return (
        f"{method} {target} HTTP/1.1\r\nHost: emulator\r\n{authorization}Content-Length: {len(body)}\r\n"
        f"Connection: close\r\n{headers}\r\n"
    ).encode("latin-1", "replace") + body


def is_api_error(
    answer: tuple[int | None, dict[str, str], bytes], data_dir: Path, may_close: bool
) -> tuple[bool, str]:
    status, headers, body = answer
    if status is None:
        # Closing on bytes that are no request (or an oversized head) is an answer; on a request, not.
        return may_close, "closed without an answer"
    if status >= 500:
        return False, f"HTTP {status}: {body[:120]!r}"
    if status < 400:
        return True, "ok"
    try:
        error = json.loads(body)["error"]
    except (ValueError, KeyError, TypeError):
        return False, f"HTTP {status} not in the API's shape: {headers.get('content-type')} {body[:120]!r}"
    if set(error) != {"message", "type", "param", "code"}:
        return False, f"HTTP {status} error fields {sorted(error)}"
    if str(data_dir) in body.decode("utf-8", "replace"):
        return False, f"HTTP {status} shows the data directory"
    return True, "ok"


HOSTILE_IDS = [
    "..",
    ".",
    "%2e%2e",
    "%2E%2e",
    "x%00",
    "%00",
    "a" * 300,
    "a" * 5000,
    "%2e%2e%2f%2e%2e%2fetc",
    "~",
    "%ff",
    "%c0%ae%c0%ae",
    "file-" + "0" * 24,
    "batch_" + "0" * 24,
    "%20",
    "%0a",
    "%0d%0a",
    "..;",
    "*",
    "'",
    "%22",
    "%3Cscript%3E",
    "%",
    "%zz",
    "x?y=1",
    "x#frag",
    "..%5c..%5cwin",
    "emulator.sqlite3",
    "files",
    "parts",
    "%2e",
    ".%00.",
    "\\..",
    "x" * 129,
]
ROUTES = [
    ("GET", "/v1/files/{}"),
    ("DELETE", "/v1/files/{}"),
    ("GET", "/v1/files/{}/content"),
    ("GET", "/v1/batches/{}"),
    ("POST", "/v1/batches/{}/cancel"),
    ("POST", "/v1/uploads/{}/cancel"),
    ("POST", "/v1/uploads/{}/complete"),
    ("POST", "/v1/uploads/{}/parts"),
]


def emulator_api(area: Area, rng: random.Random) -> None:
    with EmulatorServer(api_key=KEY, **FAST) as server:
        port = int(server.base_url.rsplit(":", 1)[1].split("/")[0])
        data_dir = server.data_dir

        def expect(kind: str, data: bytes, may_close: bool = False) -> None:
            ok, detail = is_api_error(raw(port, data, half_close=may_close), data_dir, may_close)
            area.case(kind, ok, detail)

        for method, route in ROUTES:
            for hostile in HOSTILE_IDS:
                expect("hostile ids in paths", request_bytes(method, route.format(hostile), b"{}"))
        for length in (8_000, 16_000, 16_385, 65_536, 100_000, 900_000, 1_100_000):
            data = request_bytes("GET", "/v1/batches?after=" + "a" * length)
            expect("long URLs", data, may_close=length > 1_000_000)
        for _ in range(40):
            noise = bytes(rng.randrange(256) for _ in range(rng.randrange(1, 400)))
            expect("random bytes for a request", noise, may_close=True)
        for head in (
            b"GET / HTTP/9.9\r\n\r\n",
            b"GET\r\n\r\n",
            b"GET /v1/batches HTTP/1.1\r\nNo colon here\r\n\r\n",
            b"GET /v1/batches HTTP/1.1\r\nHost: x\r\nX: a\x00b\r\n\r\n",
            b"POST /v1/batches HTTP/1.1\r\nHost: x\r\nContent-Length: -5\r\n\r\n",
            b"POST /v1/batches HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n\r\n",
            b"GET /v1/batches HTTP/1.1\r\nHost: x\r\n"
            + b"".join(b"X-%d: y\r\n" % n for n in range(300))
            + b"\r\n",
        ):
            expect("malformed heads", head, may_close=True)
        for auth in (
            "",
            "Bearer",
            "Basic !!!",
            "Token " + KEY,
            "Bearer " + "k" * 10_000,
            KEY,
            "bearer " + KEY[:-1],
        ):
            headers = f"Authorization: {auth}\r\n"
            expect(
                "hostile Authorization headers",
                request_bytes("GET", "/v1/batches", headers=headers, auth=None),
            )
        valid = {"input_file_id": "file-x", "endpoint": "/v1/chat/completions", "completion_window": "24h"}
        for body in hostile_create_bodies(rng, valid):
            data = request_bytes("POST", "/v1/batches", body, headers="Content-Type: application/json\r\n")
            expect("hostile create bodies", data)
        for _ in range(15):
            boundary = "b" + str(rng.randrange(10**6))
            body = bytes(rng.randrange(256) for _ in range(rng.randrange(0, 600)))
            headers = f"Content-Type: multipart/form-data; boundary={boundary}\r\n"
            expect("garbage uploads", request_bytes("POST", "/v1/files", body, headers=headers))
        alive = httpx.get(
            f"{server.base_url}/batches", headers={"Authorization": f"Bearer {KEY}"}, timeout=10
        )
        area.case(
            "still serving, state intact",
            alive.status_code == 200 and (data_dir / "emulator.sqlite3").exists(),
        )


def hostile_create_bodies(rng: random.Random, valid: dict[str, Any]) -> Iterator[bytes]:
    oddities: list[Any] = [None, 0, -1, 1.5, True, "", "x" * 10_000, [], {}, [1], {"a": 1}, "\u0000", "48h"]
    for name in (*valid, "metadata", "output_expires_after"):
        for odd in oddities:
            yield json.dumps({**valid, name: odd}).encode()
    yield json.dumps({**valid, "foo": 1}).encode()
    yield json.dumps({**valid, "metadata": {f"k{n}": "v" for n in range(17)}}).encode()
    yield json.dumps({**valid, "metadata": {"k" * 65: "v"}}).encode()
    yield json.dumps({**valid, "metadata": {"k": "v" * 513}}).encode()
    yield json.dumps({**valid, "metadata": {"k": 1}}).encode()
    yield json.dumps({**valid, "output_expires_after": {"anchor": "created_at", "seconds": 10**20}}).encode()
    yield json.dumps({**valid, "metadata": "[" * 50_000}).encode()
    yield b"[" * 50_000 + b"]" * 50_000
    yield b"not json"
    yield b""
    yield b"[]"
    yield b'{"input_file_id": "\\ud800", "endpoint": "/v1/chat/completions", "completion_window": "24h"}'
    for _ in range(20):
        data = bytearray(json.dumps(valid).encode())
        for _ in range(rng.randrange(1, 4)):
            data[rng.randrange(len(data))] = rng.randrange(256)
        yield bytes(data)


# -- durability: killed emulators, lost answers, cut downloads --


def durability(area: Area, kills: int, rng: random.Random) -> None:
    total = 120
    process = EmulatorProcess("--api-key", KEY, "--request-delay", "0.01", "--concurrency", "2")
    process.start()
    try:
        client = BatchClient(ClientSettings(base_url=process.base_url, api_key=KEY, max_retries=8))
        for round_number in range(kills):
            file_id = client.upload_file(io.BytesIO(jsonl_bytes(chat_requests(total, f"k{round_number}-"))))
            batch = client.create_batch(file_id.id, "/v1/chat/completions")
            time.sleep(rng.uniform(0.1, 0.8))  # killed at a random point of the run
            process.restart(kill=True)
            done = wait(client, batch.id)
            ok = done.status == "completed" and done.request_counts is not None
            ok = ok and (done.request_counts.completed, done.request_counts.failed) == (total, 0)
            lines = read_output(client, done.output_file_id) if ok else []
            ids = [line["custom_id"] for line in lines]
            expected = [f"k{round_number}-{n}" for n in range(total)]
            area.case(
                "SIGKILL mid-batch, then restart", ok and ids == expected, f"{done.status} {len(ids)} lines"
            )
    finally:
        process.stop()

    with EmulatorServer(api_key=KEY, enable_admin=True, **FAST) as server:
        client = BatchClient(ClientSettings(base_url=server.base_url, api_key=KEY, max_retries=8, timeout=5))
        file_id = client.upload_file(io.BytesIO(jsonl_bytes(chat_requests(3)))).id
        for lost in range(1, 6):
            for fault in ({"drop": True}, {"status": 502}):
                set_faults(server, [{"method": "POST", "path": "/v1/batches", "count": lost, **fault}])
                before = batch_count(server)
                batch = client.create_batch(file_id, "/v1/chat/completions")
                after = batch_count(server)
                area.case(
                    "lost create answers: one batch per call",
                    after - before == 1,
                    f"{after - before} batches",
                )
                wait(client, batch.id)
        batch = wait(client, client.create_batch(file_id, "/v1/chat/completions").id)
        assert batch.output_file_id
        whole = client.download_file(
            batch.output_file_id, Path(server.data_dir).parent / "whole.jsonl"
        ).read_bytes()
        for cut in range(1, 4):
            set_faults(server, [{"method": "GET", "path": "/v1/files/*/content", "drop": True, "count": cut}])
            target = Path(server.data_dir).parent / f"cut{cut}.jsonl"
            got = client.download_file(batch.output_file_id, target).read_bytes()
            area.case("downloads cut mid-file", got == whole)
        set_faults(server, [])


def set_faults(server: EmulatorServer, rules: list[dict[str, Any]]) -> None:
    headers = {"Authorization": f"Bearer {KEY}"}
    httpx.put(
        f"{server.url}/_emulator/faults", json={"rules": rules}, headers=headers, timeout=10
    ).raise_for_status()


def batch_count(server: EmulatorServer) -> int:
    headers = {"Authorization": f"Bearer {KEY}"}
    return len(httpx.get(f"{server.base_url}/batches?limit=100", headers=headers, timeout=10).json()["data"])


def wait(client: BatchClient, batch_id: str, timeout: float = 60) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        batch = client.get_batch(batch_id)
        if batch.status.is_terminal or time.monotonic() > deadline:
            return batch
        time.sleep(0.1)


def read_output(client: BatchClient, file_id: str | None) -> list[dict[str, Any]]:
    if not file_id:
        return []
    directory = Path(__import__("tempfile").mkdtemp())
    return [json.loads(line) for line in client.download_file(file_id, directory).read_bytes().splitlines()]


# -- the client, against scripted servers --


def client_area(area: Area) -> None:
    with ScriptedServer() as origin, ScriptedServer() as elsewhere:
        for api_type in ("openai", "azure"):
            settings = ClientSettings(base_url=origin.base_url, api_key=KEY, api_type=api_type, max_retries=2)
            for status in (301, 302, 303, 307, 308):
                for method, path, call in redirect_calls(settings):
                    location = elsewhere.base_url.replace("127.0.0.1", "localhost") + path + f"?key={KEY}"
                    origin.script(method, path, Reply(status, headers={"Location": location}))
                    error = failure_of(call)
                    ok = isinstance(error, OpenAIBatchAPIError) and KEY not in str(error)
                    ok = ok and "redirected" in str(error) and not elsewhere.received()
                    area.case("redirects to another host (sync and async)", ok, repr(error))

    for path_kind in ("sync", "async"):
        for head in (False, True):
            for timeout in (0.5, 1.0):
                with ScriptedServer() as server:
                    server.script(
                        "GET", "/batches/b1", Reply(json=batch_json("b1"), trickle=0.2, trickle_head=head)
                    )
                    settings = ClientSettings(
                        base_url=server.base_url, api_key=KEY, timeout=timeout, max_retries=0
                    )
                    started = time.monotonic()
                    error = failure_of(read_call(settings, path_kind))
                    took = time.monotonic() - started
                    ok = isinstance(error, OpenAIBatchAPIError) and took < timeout + 0.75
                    area.case("dribbled answers cut at the deadline", ok, f"{took:.2f} s")

    cuts = [
        Reply(json=batch_json("b1"), cut_after=15),
        Reply(json=batch_json("b1"), framing="close", cut_after=15),
        Reply(no_answer=True),
        api_error(500, "boom"),
        Reply(body=b"<html>oops</html>", status=502),
    ]
    for path_kind in ("sync", "async"):
        for cut in cuts:
            with ScriptedServer() as server:
                server.script("GET", "/batches/b1", cut, Reply(json=batch_json("b1")))
                settings = ClientSettings(base_url=server.base_url, api_key=KEY, max_retries=1)
                error = failure_of(read_call(settings, path_kind))
                area.case("cut, closed and failed answers retried", error is None, repr(error))

    for reply in (
        api_error(401, f"Incorrect API key provided: {KEY}"),
        api_error(400, f"bad {KEY[:-3]}***"),
        Reply(status=500, body=f"<html>{KEY}</html>".encode()),
        Reply(status=404, body=f"no {KEY} here".encode()),
        Reply(status=302, headers={"Location": f"http://127.0.0.1:1/{KEY}"}),
        Reply(json={"id": KEY}),
    ):
        with ScriptedServer() as server:
            server.script("GET", "/batches/b1", reply)
            settings = ClientSettings(base_url=server.base_url, api_key=KEY, max_retries=0)
            for path_kind in ("sync", "async"):
                error = failure_of(read_call(settings, path_kind))
                area.case("the key echoed by the server never shows", KEY not in str(error), str(error))

    for path_kind in ("sync", "async"):
        with ScriptedServer() as server:
            server.script(
                "GET",
                "/batches/b1",
                Reply(json=batch_json("b1")),
                Reply(no_answer=True),
                Reply(json=batch_json("b1")),
            )
            settings = ClientSettings(base_url=server.base_url, api_key=KEY, max_retries=0)
            error = failure_of(read_call(settings, path_kind, twice=True))  # max_retries=0: no retry allowed
            area.case("stale kept-alive connections replaced quietly", error is None, repr(error))

    for loss in (
        Reply(json=batch_json("b"), cut_after=10),
        Reply(json=batch_json("b"), framing="close", cut_after=10),
        api_error(500, "x"),
        api_error(503, "x"),
        Reply(json=batch_json("b"), delay=1.5),
        Reply(no_answer=True),
    ):
        with ScriptedServer() as server:
            server.script("POST", "/batches", loss, Reply(json=batch_json("b_second")))

            def listing(request: Any, server: ScriptedServer = server) -> Reply:
                sent = json.loads(server.received("POST", "/batches")[0].body)
                made = batch_json("b_made", metadata=sent["metadata"], created_at=int(time.time()))
                return Reply(json={"data": [made], "has_more": False})

            server.script("GET", "/batches", listing)
            settings = ClientSettings(base_url=server.base_url, api_key=KEY, timeout=1, max_retries=3)
            made = BatchClient(settings).create_batch("file-1", "/v1/chat/completions")
            ok = made.id == "b_made" and len(server.received("POST", "/batches")) == 1
            area.case("lost create answers: the retry finds the batch", ok, made.id)


def redirect_calls(settings: ClientSettings) -> list[tuple[str, str, Callable[[], Any]]]:
    sync, aio = BatchClient(settings), AsyncBatchClient(settings)
    scratch = Path(__import__("tempfile").mkdtemp())
    return [
        ("GET", "/batches/b1", lambda: sync.get_batch("b1")),
        ("POST", "/batches", lambda: sync.create_batch("f", "/v1/chat/completions")),
        ("POST", "/batches/b1/cancel", lambda: sync.cancel_batch("b1")),
        ("POST", "/files", lambda: sync.upload_file(io.BytesIO(b"{}\n"), filename="x.jsonl")),
        ("GET", "/files/f1/content", lambda: sync.download_file("f1", scratch, expected_bytes=3)),
        ("DELETE", "/files/f1", lambda: sync.delete_file("f1")),
        ("GET", "/batches/b2", lambda: asyncio.run(aio.get_batch("b2"))),
        ("POST", "/batches/b2/cancel", lambda: asyncio.run(aio.cancel_batch("b2"))),
        ("GET", "/files/f2", lambda: asyncio.run(aio.get_file("f2"))),
    ]


def read_call(settings: ClientSettings, path_kind: str, twice: bool = False) -> Callable[[], Any]:
    times = 2 if twice else 1
    if path_kind == "sync":
        client = BatchClient(settings)
        return lambda: [client.get_batch("b1") for _ in range(times)]
    aio = AsyncBatchClient(settings)

    async def reads() -> None:
        for _ in range(times):
            await aio.get_batch("b1")

    return lambda: asyncio.run(reads())


def failure_of(call: Callable[[], Any]) -> BaseException | None:
    try:
        call()
    except Exception as error:
        return error
    return None


# -- the validator, against generated lines, and the emulator running them --

PIECES = [
    b"[",
    b"]",
    b"{",
    b"}",
    b'"',
    b"\\ud800",
    b"\\udc00",
    b"\\",
    b",",
    b":",
    b"1e999",
    b"\xff",
    b"\x00",
    b"NaN",
    b"-Infinity",
    b"\n",
    b" ",
    b"\\u00",
    b"1" * 400,
]


def generated_line(rng: random.Random) -> bytes:
    body: dict[str, Any] = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]}
    depth = rng.choice([0, 0, 0, 10, 150, 198, 199, 200, 201, 300, 5000, 100_000])
    line = bytearray(
        json.dumps({"custom_id": "c", "method": "POST", "url": "/v1/chat/completions", "body": body}).encode()
    )
    if depth:
        nested = b"[" * depth + b"0" + b"]" * depth
        line = line[:-2] + b', "x": ' + nested + b"}}"
    for _ in range(rng.choice([0, 0, 1, 2, 3])):
        at = rng.randrange(len(line) + 1)
        if rng.random() < 0.5:
            line[at:at] = rng.choice(PIECES)
        elif at < len(line):
            line[at] = rng.randrange(256)
    return bytes(line)


def validator_area(area: Area, lines: int, rng: random.Random) -> None:
    scratch = Path(__import__("tempfile").mkdtemp())
    samples: list[tuple[bytes, bool]] = []
    for number in range(lines):
        line = generated_line(rng)
        path = scratch / "one.jsonl"
        path.write_bytes(line + b"\n")
        try:
            jsonl.validate_file(path, "/v1/chat/completions")
            accepted = True
        except BatchInputError:
            accepted = False
        except BaseException as error:
            area.case(
                "the validator raises only BatchInputError", False, f"{type(error).__name__}: {line[:80]!r}"
            )
            continue
        area.case("the validator raises only BatchInputError", True)
        try:
            for request in jsonl.iter_requests(path):
                json.dumps(request.model_dump(mode="json"), allow_nan=False).encode()
            readable = True
        except (ValueError, UnicodeEncodeError):
            readable = False
        area.case(
            "validator and reader agree", readable or not accepted, f"accepted, unreadable: {line[:80]!r}"
        )
        if number < 60:
            samples.append((line, accepted))

    with EmulatorServer(api_key=KEY, **FAST) as server:
        client = BatchClient(ClientSettings(base_url=server.base_url, api_key=KEY))
        for line, accepted in samples:
            uploaded = client.upload_file(io.BytesIO(line + b"\n"), filename="one.jsonl")
            batch = wait(client, client.create_batch(uploaded.id, "/v1/chat/completions").id)
            codes = [error.code for error in (batch.errors.data if batch.errors else []) or []]
            if accepted:
                ok = batch.status == "completed"
            else:
                ok = batch.status == "failed" and "server_error" not in codes and batch.in_progress_at is None
            area.case(
                "the emulator runs what the validator accepts", ok, f"{batch.status} {codes} {line[:60]!r}"
            )


# -- Airflow: the DAG-level cases of the suite --


def airflow_area(area: Area) -> None:
    tests = [
        "tests/dags/test_bad_input.py",
        "tests/dags/test_trigger_kill.py",
        "tests/operators/test_trigger_deadline.py",
        "tests/dags/test_connection_testing.py",
        "tests/dags/test_workflow.py::test_retry_reattaches_to_the_batch_of_the_failed_try",
        "tests/dags/test_one_task.py::test_a_retried_task_reattaches_to_every_part",
    ]
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-rf", *tests],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=1800,
    )
    passed = int(m.group(1)) if (m := re.search(r"(\d+) passed", done.stdout)) else 0
    failed = re.findall(r"^FAILED (\S+)", done.stdout, re.MULTILINE)
    area.kinds += [
        "bad input x operators (fails once)",
        "kill, clear, mark success, restart x triggers",
        "deadlines while reads hang",
        "connection testing",
        "retried tasks reattach",
    ]
    area.tried += passed + len(failed)
    area.failures += [f"pytest: {name}" for name in failed]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seed", type=int, default=9)
    parser.add_argument("--lines", type=int, default=2000, help="generated input lines for the validator")
    parser.add_argument("--kills", type=int, default=8, help="emulator SIGKILLs mid-batch")
    parser.add_argument("--no-airflow", action="store_true", help="skip the DAG-level cases")
    args = parser.parse_args()
    logging.disable(logging.CRITICAL)
    rng = random.Random(args.seed)
    areas = [
        Area("Emulator API"),
        Area("Durability"),
        Area("Client"),
        Area("Validator"),
        Area("Airflow level"),
    ]
    emulator_api(areas[0], rng)
    durability(areas[1], args.kills, rng)
    client_area(areas[2])
    validator_area(areas[3], args.lines, rng)
    if not args.no_airflow:
        airflow_area(areas[4])
    print("| Area | Cases tried | Kinds | Failures left |")
    print("|---|---:|---|---:|")
    for area in areas:
        print(f"| {area.name} | {area.tried:,} | {'; '.join(area.kinds)} | {len(area.failures)} |")
    for area in areas:
        for failure in area.failures[:20]:
            print(f"- {area.name}: {failure}")
    return 1 if any(area.failures for area in areas) else 0


if __name__ == "__main__":
    sys.exit(main())
