"""The servers under test, each in a process of its own pinned to CPU 0, and what the kernel
says about them (/proc: CPU time and resident memory)."""

import asyncio
import os
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from bench.load import run_on_new_loop

T = TypeVar("T")

ROOT = Path(__file__).resolve().parent.parent
TARGETS = {
    "app": "project.asgi:application",
    "baseline": "bench.baseline:app",
    # A peer: the obvious Django view (an async view, a StreamingHttpResponse, no persistence).
    "django": "bench.django_peer:application",
}
SERVER_CPU = "0"
_TICK = os.sysconf("SC_CLK_TCK")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def cpu_seconds(pid: int) -> float:
    """utime + stime of a process (all its threads), from /proc/<pid>/stat."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / _TICK


def rss_kib(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise RuntimeError(f"no VmRSS for {pid}")


def base_env(database: Path, **chat: str) -> dict[str, str]:
    """Production-like settings (DEBUG off) and the scenario's CHAT_* values: one process, its
    own event log and cache. REDIS_URL is left out, as the rest of the caller's settings: set
    to fill the Redis rows of `make bench`, it used to put every scenario's server on Redis
    (the event log and the cache), which only scenario 5 asks for (bench/followed.py)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CHAT_", "DJANGO_")) and k != "REDIS_URL"}
    env.update(
        DJANGO_SETTINGS_MODULE="project.settings",
        DATABASE_URL=f"sqlite:///{database}",
        DEBUG="0",
        SECRET_KEY="bench-only-not-secret",
        ALLOWED_HOSTS="127.0.0.1",
        PYTHONUNBUFFERED="1",
        # The load comes from one address: the limits (on by default) are measured apart
        # (bench/limits.py), not in the way of the throughput scenarios.
        CHAT_LIMIT_MESSAGES="0",
        CHAT_LIMIT_MESSAGES_IP="0",
        CHAT_LIMIT_REPLIES="0",
        CHAT_QUOTA_TOKENS="0",
        CHAT_LIMIT_STREAMS_IP="0",
        # The demo's plain answer, token for token as the baseline streams it (issue 12's
        # reasoning and tool round are measured by bench/tool_turn.py).
        CHAT_DEMO_STEPS="0",
        # The collector tuning a server of many streams opts in to (project/asgi.py).
        GC_THRESHOLDS="5000,20,100",
    )
    env.update(chat)
    return env


def prepare_database(path: Path) -> None:
    """Migrate once (the template every run's database is copied from)."""
    env = base_env(path)
    subprocess.run(
        [sys.executable, "manage.py", "migrate", "--noinput", "-v0"],
        cwd=ROOT,
        env=env,
        check=True,
        timeout=120,
    )


def count_writes(path: Path) -> None:
    """Count writes to chat_message with triggers (bench/run.py's writes per reply).

    Only in the databases whose writes are counted: each trigger is one more INSERT per
    checkpoint, which the app's CPU figures would otherwise carry and production does not.
    """
    with sqlite3.connect(path) as conn:
        conn.execute("CREATE TABLE bench_writes (message_id TEXT, role TEXT, op TEXT)")
        for op in ("INSERT", "UPDATE"):
            conn.execute(
                f"CREATE TRIGGER bench_count_{op.lower()} AFTER {op} ON chat_message "
                f"BEGIN INSERT INTO bench_writes VALUES (NEW.id, NEW.role, '{op}'); END"
            )


def copy_database(template: Path, path: Path) -> Path:
    for suffix in ("", "-wal", "-shm"):
        source = Path(f"{template}{suffix}")
        if source.exists():
            shutil.copy(source, f"{path}{suffix}")
    return path


@dataclass
class Server:
    target: str  # "app", "baseline" or the peer "django"
    env: dict[str, str]
    port: int = field(default_factory=free_port)
    lines: list[str] = field(default_factory=list)
    proc: subprocess.Popen | None = None

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def start(self, timeout: float = 60) -> "Server":
        args = [
            *("taskset", "-c", SERVER_CPU),  # taskset execs: the pid is the server's
            *(sys.executable, "-m", "uvicorn", TARGETS[self.target], "--port", str(self.port)),
            *("--no-access-log", "--log-level", "warning"),
            # As docs/deploying.md and `manage.py runserver` start it: the app decides whom to
            # believe about X-Forwarded-For (CHAT_TRUSTED_PROXIES), so uvicorn's own middleware,
            # which would stay in every open stream's call chain, is not used; the same for both.
            "--no-proxy-headers",
        ]
        self.proc = subprocess.Popen(
            args,
            cwd=ROOT,
            env=self.env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            start_new_session=True,
        )
        threading.Thread(target=self._read, daemon=True).start()
        deadline = time.monotonic() + timeout
        while not self._listening():
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"{self.target} did not start:\n{self.output}")
            time.sleep(0.05)
        return self

    def _listening(self) -> bool:
        with socket.socket() as s:
            return s.connect_ex(("127.0.0.1", self.port)) == 0

    def _read(self) -> None:
        assert self.proc is not None and self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.append(line.rstrip("\n"))

    @property
    def output(self) -> str:
        return "\n".join(self.lines)

    def cpu(self) -> float:
        return cpu_seconds(self.pid)

    def rss_kib(self) -> int:
        return rss_kib(self.pid)

    def stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        try:
            os.killpg(self.proc.pid, signal.SIGTERM)
            self.proc.wait(20)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(5)
        except ProcessLookupError:
            pass


@asynccontextmanager
async def in_process(**chat: str) -> AsyncIterator[int]:
    """The project under uvicorn on this process's running loop, on a fresh copy of the bench
    database, with `chat` settings; yields its port. For counting and tracing what Python
    does per reply (bench/hops.py, bench/stream_memory.py), never for timings."""
    work = Path(tempfile.mkdtemp(prefix="chat-in-process-"))
    template = work / "template.sqlite3"
    await asyncio.to_thread(prepare_database, template)
    os.environ.pop("REDIS_URL", None)  # one process, its own event log (base_env)
    os.environ.update(base_env(copy_database(template, work / "db.sqlite3"), **chat))
    import uvicorn

    port = free_port()
    config = uvicorn.Config(
        TARGETS["app"], port=port, log_level="warning", lifespan="on", proxy_headers=False
    )
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve())
    while not server.started:  # noqa: ASYNC110 - uvicorn's flag, no event to wait on
        await asyncio.sleep(0.05)
    try:
        yield port
    finally:
        server.should_exit = True
        await task
        shutil.rmtree(work, ignore_errors=True)


def measure_in_process(chat: dict[str, str], measure: Callable[..., Awaitable[T]], *args: Any) -> T:
    """`measure(port, *args)` against the project served in this process (`in_process`, with
    `chat` settings), on a new event loop: what bench/hops.py and bench/stream_memory.py run."""

    async def run() -> T:
        async with in_process(**chat) as port:
            return await measure(port, *args)

    return run_on_new_loop(run())
