"""Provider HTTP clients: the adapters' ``HttpPool`` against aiohttp's ``ClientSession``.

The sweep scenario's calls without the sweep: 600 OpenAI-style chat-completion POSTs to the
fake server (its own process, 50 ms per answer), at most ``concurrency`` in flight, the JSON
body encoded and the answer decoded. Each client runs in a fresh process: "import" is the time
to import it, "loop CPU" the process's CPU time while the calls run (per call), "process CPU"
all of it from ``wait4()``, start-up included (per call). Run from the
repository root:

    .venv/bin/python -m benchmarks.http_clients [--calls 600] [--repeats 5]
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

PORT = 18803
URL = f"http://127.0.0.1:{PORT}/v1"

CLIENT = """
import asyncio, json, sys, time
started = time.perf_counter()
kind, concurrency, calls = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
if kind == "aiohttp":
    import aiohttp
else:
    from promptlooper.sweeps.adapters.transport import HttpPool
imported = time.perf_counter()
BODY = {"model": "small", "temperature": 0.7,
        "messages": [{"role": "user", "content": "Classify this ticket: ticket 3 about billing"}]}

async def main():
    slots = asyncio.Semaphore(concurrency)
    if kind == "aiohttp":
        connector = aiohttp.TCPConnector(limit=concurrency, ssl=False)
        client = aiohttp.ClientSession(connector=connector)
        async def call():
            async with slots, client.post(URL + "/chat/completions", data=json.dumps(BODY),
                                          headers={"Content-Type": "application/json"}) as r:
                return json.loads(await r.read())
        close = client.close
    else:
        pool = HttpPool(URL, limit=concurrency)
        async def call():
            response = await pool.request("POST", "/chat/completions", json.dumps(BODY).encode())
            return json.loads(response.body)
        close = pool.aclose
    answers = await asyncio.gather(*(call() for _ in range(calls)))
    assert all(a["choices"] for a in answers)
    await close()

loop_started, loop_cpu = time.perf_counter(), time.process_time()
asyncio.run(main())
print(json.dumps({"import": imported - started, "loop": time.perf_counter() - loop_started,
                  "loop_cpu": time.process_time() - loop_cpu}))
"""


def measure(kind: str, concurrency: int, calls: int) -> dict[str, float]:
    process = subprocess.Popen(
        [sys.executable, "-c", f"URL = {URL!r}\n{CLIENT}", kind, str(concurrency), str(calls)],
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
    args = parser.parse_args()
    subprocess.run([sys.executable, "-m", "compileall", "-q", str(ROOT / "src")], check=True)
    server = start_server(PORT, 0.0)
    try:
        print(f"{args.calls} calls, 50 ms per call; medians of {args.repeats} runs, alternating\n")
        print(
            "| client | concurrency | import ms | loop s | loop CPU ms/call | process CPU ms/call |"
        )
        print("| --- | --- | --- | --- | --- | --- |")
        for concurrency in (16, 64):
            results: dict[str, list[dict[str, float]]] = {"aiohttp": [], "HttpPool": []}
            for _ in range(args.repeats):
                for kind in results:
                    results[kind].append(measure(kind, concurrency, args.calls))
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
