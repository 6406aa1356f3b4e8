"""Templates cannot take the server down, with ``promptlooper serve`` as deployed: the bombs
of issue 19 are refused at creation within moments while the server keeps answering, and
those only reachable at render time fail their runs, not the server."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx

from tests.deployed import Deployed, finished_experiment

BOMBS = [
    "{{ 'a' * 10**9 }}",
    '{{ ("a"*1000)*1000000 }}',
    "{{ 'a'.center(1000000000) }}",
    "{{ 'a' | center(1000000000) }}",
    "{% for i in range(100000) %}{% for j in range(100000) %}x{% endfor %}{% endfor %}",
    "{{ lipsum(1000000) }}",
    "{{ (10**10) ** (10**10) }}",  # Jinja reads (10**10)**10**10 left to right: 10**1000
    "{{ range(10**9) | list }}",
    "{{ '%999999999d' % 1 }}{{ '{:>999999999}'.format(1) }}",
    "{% macro f() %}{{ f() }}{% endmacro %}{{ f() }}",
]

ROW_BOMBS = [  # harmless for "3", past a limit for the larger numbers
    "{{ 'a' * (input | int) * 1000 }}",
    "{{ 'a'.center(input | int * 1000) }}",
    "{% for i in range(input | int) %}{% for j in range(input | int) %}x{% endfor %}{% endfor %}",
    "{{ lipsum(input | int) }}",
    "{{ (input | int) ** (input | int) }}",
]


def document(prompts: list[str], inputs: list[str]) -> dict[str, Any]:
    return {
        "name": "bombs",
        "parameter_space": {"model": ["mock:small"], "prompt": prompts},
        "dataset": {"rows": [{"input": value} for value in inputs]},
        "scorers": [{"name": "short", "type": "length", "max": 100}],
        "concurrency": 4,
    }


def peak_rss_mib(server: Deployed) -> float:
    """The server's peak resident memory (Linux)."""
    status = Path(f"/proc/{server.process.pid}/status").read_text()
    line = next(line for line in status.splitlines() if line.startswith("VmHWM:"))
    return int(line.split()[1]) / 1024


@contextmanager
def health_watch(server: Deployed) -> Iterator[list[float]]:
    """Time ``/api/health`` every 0.1 s meanwhile; a failed call counts as infinitely slow."""
    times: list[float] = []
    stop = threading.Event()

    def watch() -> None:
        with server.client(timeout=5) as http:
            while not stop.is_set():
                started = time.monotonic()
                try:
                    ok = http.get("/api/health").status_code == 200
                except httpx.HTTPError:
                    ok = False
                times.append(time.monotonic() - started if ok else float("inf"))
                stop.wait(0.1)

    watcher = threading.Thread(target=watch)
    watcher.start()
    try:
        yield times
    finally:
        stop.set()
        watcher.join(10)


def create(server: Deployed, http: httpx.Client, project_id: str, doc: dict) -> httpx.Response:
    return http.post(f"/api/projects/{project_id}/experiments", json=doc, headers=server.admin)


def test_template_bombs_are_refused_at_creation_while_the_server_answers(
    serve: Callable[..., Deployed],
):
    server = serve()
    answers: dict[str, tuple[int, str, float]] = {}
    with server.client() as http, health_watch(server) as health:
        project = http.post("/api/projects", json={"name": "bombs"}, headers=server.admin)
        project_id = project.json()["id"]
        for bomb in BOMBS:
            started = time.monotonic()
            refused = create(server, http, project_id, document([bomb], ["hello"]))
            took = time.monotonic() - started
            answers[bomb] = (refused.status_code, refused.json().get("detail", ""), took)
        listed = http.get(f"/api/projects/{project_id}/experiments", headers=server.admin)

    for bomb, (status, detail, took) in answers.items():
        assert status == 422, (bomb, detail)
        assert detail.startswith("parameter_space.prompt: template exceeded a limit"), bomb
        assert took < 3, bomb
    assert listed.json()["count"] == 0
    assert health
    assert max(health) < 1
    assert peak_rss_mib(server) < 1024


def test_bombs_reachable_only_at_render_time_fail_their_runs_not_the_server(
    serve: Callable[..., Deployed],
):
    server = serve()
    inputs = ["3", "100000", "1000000000"]
    with server.client() as http, health_watch(server) as health:
        project = http.post("/api/projects", json={"name": "bombs"}, headers=server.admin)
        created = create(server, http, project.json()["id"], document(ROW_BOMBS, inputs))
        eid = created.json()["id"]
        http.post(f"/api/experiments/{eid}/start", headers=server.admin)
        finished = finished_experiment(http, eid, server.admin, timeout=60)
        runs = http.get(f"/api/experiments/{eid}/runs?limit=100", headers=server.admin).json()

    assert created.status_code == 201, created.text
    assert finished["status"] == "completed"
    assert (finished["progress"]["completed"], finished["progress"]["failed"]) == (5, 10)
    failed = [run for run in runs["data"] if run["status"] == "failed"]
    assert len(failed) == 10
    assert all(run["error"].startswith("template exceeded a limit: it ") for run in failed)
    assert {run["row_index"] for run in failed} == {1, 2}
    assert max(health) < 1
    assert peak_rss_mib(server) < 1024
