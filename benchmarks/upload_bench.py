"""Upload a 200 MB JSONL file to a local server: the hook's streamed upload beside curl.

Run: ``.venv/bin/python benchmarks/upload_bench.py [--mb 200]``

A receiving server runs in its own process on 127.0.0.1 and discards what it reads. Each
upload runs in a fresh child process, so its memory is its own:

* ``OpenAIBatchHook.upload_file`` (streamed multipart body),
* ``requests.post(files=...)``, the naive way, for scale (it builds the body in memory),
* ``curl -F``.

For the Python uploads the peak RSS growth is measured inside the child: the kernel's
high-water mark is reset (``/proc/self/clear_refs``) after imports and a warm-up upload,
then read (``VmHWM``) after the upload. For curl, the whole process's peak RSS is shown.
Exits non-zero if the hook's growth exceeds 64 MB.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

RSS_GROWTH_LIMIT_MB = 64
CHUNK = 1024 * 1024


# -- the receiving server (its own process) --


class _Discard(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # also answers curl's "Expect: 100-continue"

    def log_message(self, format: str, *args: object) -> None:
        pass

    def do_POST(self) -> None:
        received = 0
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            while size := int(self.rfile.readline().split(b";")[0], 16):
                while size:
                    received += len(part := self.rfile.read(min(CHUNK, size)))
                    size -= len(part)
                self.rfile.readline()
            self.rfile.readline()
        else:
            remaining = int(self.headers.get("Content-Length") or 0)
            while remaining:
                part = self.rfile.read(min(CHUNK, remaining))
                if not part:
                    break
                received += len(part)
                remaining -= len(part)
        body = json.dumps(
            {
                "id": "file-bench",
                "object": "file",
                "bytes": received,
                "created_at": int(time.time()),
                "filename": "bench.jsonl",
                "purpose": "batch",
            }
        ).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


def serve() -> None:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Discard)
    print(f"http://127.0.0.1:{server.server_address[1]}/v1", flush=True)
    server.serve_forever()


# -- one upload, measured inside its own process --


def _status_kb(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(f"{field}:"):
            return int(line.split()[1])
    raise RuntimeError(f"{field} not in /proc/self/status")


def measure_upload(kind: str, base_url: str, path: str) -> None:
    warm_up = Path(path).with_suffix(".warmup.jsonl")
    warm_up.write_bytes(b'{"custom_id": "warm-up"}\n')
    if kind == "hook":
        from airflow_batch_provider.hooks.batch import OpenAIBatchHook

        os.environ["AIRFLOW_CONN_UPLOAD_BENCH"] = json.dumps(
            {"conn_type": "openai_batch", "host": base_url, "password": "sk-bench-0000000000"}
        )
        hook = OpenAIBatchHook("upload_bench")

        def upload(file: Path) -> int:
            return hook.upload_file(file).bytes or 0
    else:
        import requests

        session = requests.Session()

        def upload(file: Path) -> int:
            with file.open("rb") as stream:
                answer = session.post(f"{base_url}/files", data={"purpose": "batch"}, files={"file": stream})
            answer.raise_for_status()
            return int(answer.json()["bytes"])

    upload(warm_up)
    Path("/proc/self/clear_refs").write_text("5")  # reset the peak RSS to the current RSS
    baseline_kb = _status_kb("VmRSS")
    started = time.perf_counter()
    sent = upload(Path(path))
    seconds = time.perf_counter() - started
    growth_kb = _status_kb("VmHWM") - baseline_kb
    print(json.dumps({"seconds": seconds, "growth_mb": growth_kb / 1024, "bytes": sent}))


# -- the driver --


def write_jsonl(path: Path, megabytes: int) -> int:
    """A batch input file of chat requests, about ``megabytes`` MB."""
    target = megabytes * 1024 * 1024
    written = 0
    lines = 0
    with path.open("wb") as out:
        block = []
        while written < target:
            line = (
                json.dumps(
                    {
                        "custom_id": f"request-{lines}",
                        "method": "POST",
                        "url": "/v1/chat/completions",
                        "body": {
                            "model": "gpt-4o-mini",
                            "messages": [
                                {"role": "user", "content": f"Summarize document {lines}. " + "x" * 400}
                            ],
                        },
                    }
                ).encode()
                + b"\n"
            )
            block.append(line)
            written += len(line)
            lines += 1
            if len(block) == 10_000:
                out.write(b"".join(block))
                block.clear()
        out.write(b"".join(block))
    return written


def run_child(kind: str, base_url: str, path: Path, env: dict[str, str]) -> dict:
    output = subprocess.run(
        [sys.executable, __file__, "--measure", kind, base_url, str(path)],
        check=True,
        capture_output=True,
        text=True,
        env=env,
    ).stdout
    return json.loads(output.strip().splitlines()[-1])


def run_curl(base_url: str, path: Path) -> dict:
    started = time.perf_counter()
    process = subprocess.Popen(
        [
            "curl",
            "-sS",
            "-o",
            "/dev/null",
            "-H",
            "Expect:",
            "-F",
            "purpose=batch",
            "-F",
            f"file=@{path}",
            f"{base_url}/files",
        ],
    )
    _, status, usage = os.wait4(process.pid, 0)
    seconds = time.perf_counter() - started
    if status != 0:
        raise RuntimeError(f"curl exited with status {status}")
    return {"seconds": seconds, "peak_mb": usage.ru_maxrss / 1024}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--mb", type=int, default=200, help="size of the file to upload (default 200)")
    args = parser.parse_args()

    workdir = Path(tempfile.mkdtemp(prefix="upload-bench-"))
    env = {**os.environ, "AIRFLOW_HOME": str(workdir / "airflow-home")}
    server = subprocess.Popen([sys.executable, __file__, "--serve"], stdout=subprocess.PIPE, text=True)
    try:
        assert server.stdout is not None
        base_url = server.stdout.readline().strip()
        path = workdir / "requests.jsonl"
        size = write_jsonl(path, args.mb)
        size_mb = size / 1024 / 1024
        print(f"Uploading {size_mb:.0f} MB ({size:,} bytes) to {base_url}/files on 127.0.0.1\n")

        hook = run_child("hook", base_url, path, env)
        naive = run_child("requests", base_url, path, env)
        curl = run_curl(base_url, path)
        for result in (hook, naive):
            if result["bytes"] < size:
                raise RuntimeError(f"the server received {result['bytes']} bytes, expected {size}")

        print("| client | time (s) | MB/s | peak RSS growth during upload (MB) |")
        print("|---|---:|---:|---:|")
        print(
            f"| OpenAIBatchHook.upload_file (streamed) | {hook['seconds']:.2f} | "
            f"{size_mb / hook['seconds']:.0f} | {hook['growth_mb']:.1f} |"
        )
        print(
            f"| requests.post(files=...) (in memory) | {naive['seconds']:.2f} | "
            f"{size_mb / naive['seconds']:.0f} | {naive['growth_mb']:.1f} |"
        )
        print(
            f"| curl -F | {curl['seconds']:.2f} | {size_mb / curl['seconds']:.0f} | "
            f"{curl['peak_mb']:.1f} (whole process) |"
        )
        verdict = "PASS" if hook["growth_mb"] <= RSS_GROWTH_LIMIT_MB else "FAIL"
        print(
            f"\n{verdict}: the hook's RSS grew {hook['growth_mb']:.1f} MB for a {size_mb:.0f} MB file "
            f"(limit {RSS_GROWTH_LIMIT_MB} MB); it took {hook['seconds'] / curl['seconds']:.2f}x curl's time."
        )
        return 0 if verdict == "PASS" else 1
    finally:
        server.terminate()
        server.wait()
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    if sys.argv[1:2] == ["--serve"]:
        serve()
    elif sys.argv[1:2] == ["--measure"]:
        measure_upload(*sys.argv[2:5])
    else:
        sys.exit(main())
