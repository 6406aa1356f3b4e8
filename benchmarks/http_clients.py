"""Provider HTTP: the adapters' calls against aiohttp's ``ClientSession`` alone.

The sweep scenario's calls without the sweep: 600 OpenAI-style chat-completion POSTs to the
fake server (its own process, 50 ms per answer), at most ``concurrency`` in flight, the JSON
body encoded and the answer decoded. Three clients, each in a fresh process:

- ``adapter``: ``OpenAIAdapter.request_json``, what a sweep's calls go through (aiohttp with the
  adapters' resolver, proxy lookup, timeouts and error mapping);
- ``aiohttp``: a bare ``ClientSession``, the floor;
- ``aiohttp trust_env``: the same with ``trust_env=True``, which looks up proxies (in a thread)
  and ``~/.netrc`` for every request.

"import" is the time to import the client, "loop CPU" the process's CPU time while the calls
run (per call), "process CPU" all of it from ``wait4()``, start-up included (per call). Run
from the repository root:

    .venv/bin/python -m benchmarks.http_clients [--calls 600] [--repeats 5] [--port 18803]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys

from benchmarks.server import ROOT
from benchmarks.sweep_throughput import start_server

KINDS = ("adapter", "aiohttp", "aiohttp trust_env")
CLIENT = """
import asyncio, json, sys, time
started = time.perf_counter()
kind, concurrency, calls = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
if kind == "adapter":
    from promptlooper.sweeps.adapters.base import ProviderConfig
    from promptlooper.sweeps.adapters.openai import OpenAIAdapter
else:
    import aiohttp
imported = time.perf_counter()
BODY = {"model": "small", "temperature": 0.7,
        "messages": [{"role": "user", "content": "Classify this ticket: ticket 3 about billing"}]}

async def main():
    slots = asyncio.Semaphore(concurrency)
    if kind == "adapter":
        config = ProviderConfig(name="openai", type="openai", base_url=URL, concurrency=concurrency)
        adapter = OpenAIAdapter(config)
        async def call():
            async with slots:
                return await adapter.request_json("POST", "/chat/completions", BODY)
        close = adapter.aclose
    else:
        connector = aiohttp.TCPConnector(limit=concurrency)
        client = aiohttp.ClientSession(connector=connector, trust_env=kind.endswith("trust_env"))
        async def call():
            async with slots, client.post(URL + "/chat/completions", data=json.dumps(BODY),
                                          headers={"Content-Type": "application/json"}) as r:
                return json.loads(await r.read())
        close = client.close
    answers = await asyncio.gather(*(call() for _ in range(calls)))
    assert all(a["choices"] for a in answers)
    await close()

loop_started, loop_cpu = time.perf_counter(), time.process_time()
asyncio.run(main())
print(json.dumps({"import": imported - started, "loop": time.perf_counter() - loop_started,
                  "loop_cpu": time.process_time() - loop_cpu}))
"""


def measure(url: str, kind: str, concurrency: int, calls: int) -> dict[str, float]:
    process = subprocess.Popen(
        [sys.executable, "-c", f"URL = {url!r}\n{CLIENT}", kind, str(concurrency), str(calls)],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        text=True,
    )
    _, status, usage = os.wait4(process.pid, 0)
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"{kind} client failed")
    assert process.stdout is not None
    timings = json.loads(process.stdout.read())
    return {**timings, "cpu": usage.ru_utime + usage.ru_stime}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--calls", type=int, default=600)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--port", type=int, default=18803, help="for the fake server")
    args = parser.parse_args()
    url = f"http://127.0.0.1:{args.port}/v1"
    subprocess.run([sys.executable, "-m", "compileall", "-q", str(ROOT / "src")], check=True)
    server = start_server(args.port, 0.0)
    try:
        print(f"{args.calls} calls, 50 ms per call; medians of {args.repeats} runs, alternating\n")
        print(
            "| client | concurrency | import ms | loop s | loop CPU ms/call | process CPU ms/call |"
        )
        print("| --- | --- | --- | --- | --- | --- |")
        for concurrency in (16, 64):
            results: dict[str, list[dict[str, float]]] = {kind: [] for kind in KINDS}
            for _ in range(args.repeats):
                for kind in results:
                    results[kind].append(measure(url, kind, concurrency, args.calls))
            for kind, rows in results.items():
                print(
                    f"| {kind} | {concurrency} | "
                    f"{1000 * statistics.median(r['import'] for r in rows):.0f} | "
                    f"{statistics.median(r['loop'] for r in rows):.2f} | "
                    f"{1000 * statistics.median(r['loop_cpu'] for r in rows) / args.calls:.3f} | "
                    f"{1000 * statistics.median(r['cpu'] for r in rows) / args.calls:.3f} |"
                )
    finally:
        server.terminate()
        server.wait()


if __name__ == "__main__":
    main()
