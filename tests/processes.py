"""Servers in their own processes (`manage.py runserver`, the uvicorn CLI), as people run them."""

import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PYTHON = sys.executable
# Tests drive every server from one address: limits off, unless a test turns one on.
NO_LIMITS = {
    "CHAT_LIMIT_MESSAGES": "0",
    "CHAT_LIMIT_MESSAGES_IP": "0",
    "CHAT_LIMIT_REPLIES": "0",
    "CHAT_QUOTA_TOKENS": "0",
    "CHAT_LIMIT_STREAMS_IP": "0",
}


# Set by server_env, never passed on from the shell running the tests.
DEPLOYMENT = ("DEBUG", "SECRET_KEY", "ALLOWED_HOSTS", "HTTPS", "REDIS_URL")
TEST_SECRET_KEY = "tests-only-not-secret-" + "x" * 40


def server_env(database: str, **extra: str) -> dict[str, str]:
    """DEBUG as each entry point decides (on under manage.py, off under uvicorn); a key and
    the loopback host, so that a server with DEBUG off starts and answers."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("CHAT_", "DJANGO_", "SECURE_")) and k not in DEPLOYMENT
    }
    env.update(
        DJANGO_SETTINGS_MODULE="project.settings",
        DATABASE_URL=database,
        SECRET_KEY=TEST_SECRET_KEY,
        ALLOWED_HOSTS="127.0.0.1,localhost",
        PYTHONUNBUFFERED="1",
        DJANGO_RUNSERVER_HIDE_WARNING="true",
    )
    env.update(NO_LIMITS)
    # The demo's plain answer, as the in-process suite has it (tests/test_tools.py turns the
    # reasoning and tool step on where it tests them).
    env.update(CHAT_DEMO_STEPS="0")
    env.update(extra)
    return env


def migrate(env: dict[str, str]) -> None:
    subprocess.run(
        [PYTHON, "manage.py", "migrate", "--noinput", "-v0"], cwd=ROOT, env=env, check=True, timeout=120
    )


def port_open(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(0.2)
        return s.connect_ex(("127.0.0.1", port)) == 0


class ServerProcess:
    def __init__(self, args: list[str], env: dict[str, str], port: int, cwd: Path = ROOT) -> None:
        self.args, self.env, self.port, self.cwd = args, env, port, cwd
        self.url = f"http://127.0.0.1:{port}"
        self.lines: list[str] = []
        self.proc: subprocess.Popen | None = None

    def start(self, timeout: float = 30) -> "ServerProcess":
        self.proc = subprocess.Popen(
            self.args,
            cwd=self.cwd,
            env=self.env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            start_new_session=True,  # its own process group, as a terminal's foreground job
        )
        threading.Thread(target=self._read, daemon=True).start()
        self.wait_for(lambda: port_open(self.port), timeout, "the server to listen")
        return self

    def _read(self) -> None:
        for line in self.proc.stdout:
            self.lines.append(line.rstrip("\n"))

    @property
    def output(self) -> str:
        return "\n".join(self.lines)

    def wait_for(self, condition, timeout: float, what: str) -> None:
        deadline = time.monotonic() + timeout
        while not condition():
            if self.proc.poll() is not None and not condition():
                raise AssertionError(
                    f"server exited ({self.proc.returncode}) waiting for {what}:\n{self.output}"
                )
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out waiting for {what}:\n{self.output}")
            time.sleep(0.02)

    def signal(self, sig: int, *, group: bool = False) -> None:
        if group:  # like Ctrl-C in a terminal: every process of the job
            os.killpg(os.getpgid(self.proc.pid), sig)
        else:
            self.proc.send_signal(sig)

    def wait(self, timeout: float = 20) -> int:
        return self.proc.wait(timeout)

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            try:
                os.killpg(os.getpgid(self.proc.pid), signal.SIGTERM)
                self.proc.wait(10)
            except (ProcessLookupError, subprocess.TimeoutExpired):
                os.killpg(os.getpgid(self.proc.pid), signal.SIGKILL)
                self.proc.wait(5)
