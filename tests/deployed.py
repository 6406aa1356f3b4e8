"""PromptLooper as it is deployed: ``promptlooper serve`` in its own process (uvicorn on uvloop,
exactly what users run), spoken to over real HTTP, with fake providers on 127.0.0.1 serving in
threads of their own.

An in-process app under ``httpx.ASGITransport`` shares the test's event loop and skips the
server's start-up, its loop and its socket; a failure that lives there (a transport that only
works on the default loop, say) shows only here.
"""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import ssl
import subprocess
import sys
import threading
import time
from collections.abc import Awaitable, Callable, Iterator, Mapping
from concurrent.futures import Future
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Self

import httpx
from aiohttp import web

BOOTSTRAP_KEY = "deployed-bootstrap-admin-key"
JWT_SECRET = "deployed-jwt-secret-not-for-production"

_INHERITED_OUT = (
    "API_KEY",
    "JWT_SECRET",
    "DATABASE_URL",
    "DATA_DIR",
    "REDIS_URL",
    "OPENAI_API_KEY",
    "OPENAI_BASE_URL",
    "ANTHROPIC_API_KEY",
    "ANTHROPIC_BASE_URL",
    "HTTP_PROXY",
    "HTTPS_PROXY",
    "NO_PROXY",
    "http_proxy",
    "https_proxy",
    "no_proxy",
    "ALL_PROXY",
    "all_proxy",
)
"""Variables of the test process a server must not inherit: each test says what its server
gets, so a developer's own keys or proxy never decide an outcome."""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclass
class Deployed:
    """A running ``promptlooper serve``; ``admin`` authenticates with the bootstrap key."""

    url: str
    process: subprocess.Popen[bytes]
    log_path: Path
    env: dict[str, str]
    admin: dict[str, str] = field(default_factory=lambda: {"X-Api-Key": BOOTSTRAP_KEY})

    def client(self, **kwargs: Any) -> httpx.Client:
        return httpx.Client(base_url=self.url, timeout=kwargs.pop("timeout", 30), **kwargs)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def loaded_libraries(self) -> str:
        """The shared objects mapped into the server (Linux): proof of which event loop runs."""
        return Path(f"/proc/{self.process.pid}/maps").read_text()

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 15) -> None:
        if self.process.poll() is None:
            self.process.send_signal(sig)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(5)


def server_env(
    database_url: str, data_dir: Path, extra: Mapping[str, str] | None = None
) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in _INHERITED_OUT}
    env.update(
        DATABASE_URL=database_url,
        DATA_DIR=str(data_dir),
        API_KEY=BOOTSTRAP_KEY,
        JWT_SECRET=JWT_SECRET,
        LOG_LEVEL="warning",
        PYTHONUNBUFFERED="1",
    )
    env.update(extra or {})
    return env


def start_server(
    database_url: str,
    workdir: Path,
    extra_env: Mapping[str, str] | None = None,
    *,
    args: tuple[str, ...] = (),
    startup_timeout: float = 60,
) -> Deployed:
    """``promptlooper serve`` on a free port, in ``workdir`` (so no ``.env`` of the repository
    is read); returns once ``/api/health`` answers."""
    workdir.mkdir(parents=True, exist_ok=True)
    port = free_port()
    env = server_env(database_url, workdir / "data", extra_env)
    log_path = workdir / f"server-{port}.log"
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "promptlooper",
                "serve",
                "--host",
                "127.0.0.1",
                "--port",
                str(port),
                *args,
            ],
            cwd=workdir,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    deployed = Deployed(f"http://127.0.0.1:{port}", process, log_path, env)
    deadline = time.monotonic() + startup_timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            exited = f"promptlooper serve exited ({process.returncode})"
            raise RuntimeError(f"{exited}:\n{deployed.log()}")
        try:
            if httpx.get(f"{deployed.url}/api/health", timeout=2).status_code == 200:
                return deployed
        except httpx.TransportError:
            pass
        time.sleep(0.1)
    deployed.stop()
    raise RuntimeError(f"promptlooper serve did not become healthy:\n{deployed.log()}")


class ThreadedServer:
    """A server on 127.0.0.1 served from a thread with its own event loop, so tests may block
    (sync HTTP, ``time.sleep``) without stalling it. Subclasses say what is served."""

    scheme = "http"

    def __init__(self) -> None:
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self.port = 0

    def __enter__(self) -> Self:
        self._thread.start()
        self.port = self._call(self._start())
        return self

    def __exit__(self, *_exc: object) -> None:
        self._call(self._stop())
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(5)
        self._loop.close()

    @property
    def origin(self) -> str:
        return f"{self.scheme}://127.0.0.1:{self.port}"

    def _call(self, coroutine: Any) -> Any:
        future: Future[Any] = asyncio.run_coroutine_threadsafe(coroutine, self._loop)
        return future.result(15)

    async def _start(self) -> int:
        """Start serving; returns the port."""
        raise NotImplementedError

    async def _stop(self) -> None:
        raise NotImplementedError


class ThreadedApp(ThreadedServer):
    """An aiohttp application, over TLS when given the server's ``tls`` context."""

    def __init__(self, app: web.Application, tls: ssl.SSLContext | None = None) -> None:
        super().__init__()
        self._app = app
        self._tls = tls
        self.scheme = "https" if tls else "http"
        self._runner: web.AppRunner | None = None

    async def _start(self) -> int:
        self._runner = web.AppRunner(self._app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0, ssl_context=self._tls)
        await site.start()
        return site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]

    async def _stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()


class ThreadedStreams(ThreadedServer):
    """A plain asyncio server: ``handler(reader, writer)`` serves each connection; connections
    still open when it stops are cancelled."""

    def __init__(self, handler: Callable[..., Awaitable[None]]) -> None:
        super().__init__()
        self._handler = handler
        self._server: asyncio.Server | None = None
        self._connections: set[asyncio.Task[None]] = set()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._connections.add(task)
        try:
            await self._handler(reader, writer)
        finally:
            self._connections.discard(task)
            writer.close()

    async def _start(self) -> int:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        return self._server.sockets[0].getsockname()[1]

    async def _stop(self) -> None:
        if self._server is not None:
            self._server.close()
        for task in list(self._connections):
            task.cancel()
        await asyncio.gather(*self._connections, return_exceptions=True)


def wait_for(
    predicate: Any, timeout: float = 60, interval: float = 0.2, what: str = "condition"
) -> Any:
    """Poll ``predicate()`` until it returns something truthy; fail with ``what`` after
    ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:g} s waiting for {what}")
        time.sleep(interval)


def agent_with_variant(
    http: httpx.Client, headers: Mapping[str, str], project: str, variant: str
) -> tuple[dict[str, Any], dict[str, Any]]:
    """A new project's mock-model agent and one variant of it, made over HTTP as a user
    would: the arms of an experiment over agent variants."""
    found = http.post("/api/projects", json={"name": project}, headers=headers).json()
    agent = http.post(
        f"/api/projects/{found['id']}/agents",
        json={"name": "Answerer", "model_provider": "mock", "model_name": "m"},
        headers=headers,
    ).json()
    made = http.post(
        f"/api/agents/{agent['id']}/variants", json={"name": variant}, headers=headers
    ).json()
    return agent, made


def finished_experiment(
    client: httpx.Client, experiment_id: str, headers: Mapping[str, str], timeout: float = 60
) -> dict[str, Any]:
    """The experiment once it is no longer running."""

    def done() -> dict[str, Any] | None:
        body = client.get(f"/api/experiments/{experiment_id}", headers=headers).json()
        return body if body["status"] not in ("draft", "running", "pending") else None

    return wait_for(done, timeout, what=f"experiment {experiment_id} to finish")


def iter_lines(path: Path) -> Iterator[str]:
    yield from path.read_text(errors="replace").splitlines()
