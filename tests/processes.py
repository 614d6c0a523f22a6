"""Servers in their own processes (`manage.py runserver`, the uvicorn CLI), as people run them."""

import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx

from tests.sse_client import SSE, events

ROOT = Path(__file__).resolve().parent.parent
PYTHON = sys.executable
# Tests drive every server from one address: limits off, unless a test turns one on.
NO_LIMITS = {
    "CHAT_LIMIT_MESSAGES": "0",
    "CHAT_LIMIT_MESSAGES_IP": "0",
    "CHAT_LIMIT_REPLIES": "0",
    "CHAT_QUOTA_TOKENS": "0",
    "CHAT_LIMIT_STREAMS_IP": "0",
    "CHAT_LIMIT_ATTACHMENTS": "0",
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


class Visitor:
    """One visitor (one cookie jar) talking to every server: cookies are per host, not port."""

    def __init__(self, first_url: str, *, session_first: bool = False) -> None:
        self.http = httpx.Client(timeout=30)
        self.http.get(first_url + "/").raise_for_status()
        if session_first:  # an empty conversation, so that requests sent at once are one visitor's
            self.http.post(first_url + "/api/conversations", json={}, headers=self.headers).raise_for_status()

    @property
    def headers(self) -> dict[str, str]:
        return {"X-CSRFToken": self.http.cookies["csrftoken"]}

    def send(self, url: str, content: str) -> dict:
        response = self.http.post(url + "/api/conversations", json={"content": content}, headers=self.headers)
        assert response.status_code == 201, response.text
        return response.json()["assistant_message"]

    def follow(
        self, url: str, message_id: str, *, after: int | None = None, texts: int | None = None, on_text=None
    ) -> list[SSE]:
        """The stream's events to its end, or to `texts` text events (then it hangs up); `on_text`
        is called with the count of text events so far."""
        headers = {} if after is None else {"Last-Event-ID": str(after)}
        received: list[SSE] = []
        with self.http.stream("GET", f"{url}/api/messages/{message_id}/stream", headers=headers) as response:
            assert response.status_code == 200
            for event in events(response.iter_lines()):
                received.append(event)
                count = sum(e.event == "message" for e in received)
                if event.event == "message" and on_text is not None:
                    on_text(count)
                if event.event in ("done", "error") or (texts is not None and count >= texts):
                    break
        return received

    def stored(self, url: str, message: dict) -> dict:
        response = self.http.get(f"{url}/api/conversations/{message['conversation_id']}")
        assert response.status_code == 200, response.text
        return next(m for m in response.json()["messages"] if m["id"] == message["id"])
