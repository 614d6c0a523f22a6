"""The shipped nginx configuration (deploy/nginx.conf), run by Debian's nginx in front of the app.

nginx runs in the foreground with a prefix, pid file and temp paths of the test's own, on a
loopback port, proxying to the test server.
"""

import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from chat.providers.demo import demo_tokens
from tests.conftest import REQUIRE_SERVICES, Tab, free_port
from tests.fakes import gate, script
from tests.processes import ROOT, port_open
from tests.sse_client import events, text_of

NGINX = "/usr/sbin/nginx"

MAIN = """
daemon off;
worker_processes 1;
pid {dir}/nginx.pid;
error_log {dir}/error.log warn;
events {{ worker_connections 512; }}
http {{
    access_log off;
    client_body_temp_path {dir}/body;
    proxy_temp_path {dir}/proxy;
    fastcgi_temp_path {dir}/fastcgi;
    uwsgi_temp_path {dir}/uwsgi;
    scgi_temp_path {dir}/scgi;
    include {dir}/chat.conf;
}}
"""


class Nginx:
    def __init__(self, workdir: Path, upstream: str, **replace: str) -> None:
        if not Path(NGINX).exists() and shutil.which("nginx") is None:
            message = "nginx is not installed (.ci/run installs it)"
            pytest.fail(message) if REQUIRE_SERVICES else pytest.skip(message)
        self.dir, self.port = workdir, free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        site = (ROOT / "deploy" / "nginx.conf").read_text()
        replace = {
            "server 127.0.0.1:8000;": f"server {upstream};",
            "listen 80;": f"listen 127.0.0.1:{self.port};",
            **replace,
        }
        for old, new in replace.items():
            assert old in site, old
            site = site.replace(old, new)
        (workdir / "chat.conf").write_text(site)
        (workdir / "nginx.conf").write_text(MAIN.format(dir=workdir))
        self.proc: subprocess.Popen | None = None

    def start(self) -> "Nginx":
        binary = NGINX if Path(NGINX).exists() else shutil.which("nginx")
        command = [
            binary,
            "-p",
            str(self.dir),
            "-c",
            str(self.dir / "nginx.conf"),
            "-e",
            str(self.dir / "error.log"),
        ]
        self.proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        deadline = time.monotonic() + 10
        while not port_open(self.port):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise AssertionError(
                    f"nginx did not start: {self.proc.stdout.read() if self.proc.poll() else ''}"
                )
            time.sleep(0.02)
        return self

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(10)


@pytest.fixture
def nginx(server, tmp_path) -> Iterator[Nginx]:
    proxy = Nginx(
        tmp_path, server.url.removeprefix("http://"), **{"proxy_read_timeout 1h;": "proxy_read_timeout 1s;"}
    )
    proxy.start()
    yield proxy
    proxy.stop()


def test_through_nginx_the_first_text_arrives_long_before_the_reply_ends(nginx, settings):
    settings.CHAT_DEMO_RATE = 20
    settings.CHAT_DEMO_TOKENS = 40
    tab = Tab(nginx.url)
    try:
        sent = tab.send("through the proxy")
        started = time.monotonic()
        received = tab.stream(sent["assistant_message"]["id"])
    finally:
        tab.close()
    texts = [e for e in received if e.event == "message"]
    assert received[-1].event == "done"
    assert text_of(received) == "".join(demo_tokens("through the proxy", 40))
    # Two seconds of reply: unbuffered, the first text comes within the first tenth of it
    # or so and the events come one by one (a buffering proxy would deliver them at the end).
    assert texts[0].at - started < (received[-1].at - started) / 2
    assert len(texts) >= 20


def test_heartbeats_keep_a_silent_stream_open_past_the_proxy_read_timeout(nginx, settings):
    settings.CHAT_HEARTBEAT_INTERVAL = 0.25  # nginx here gives up after 1 s of silence
    tab = Tab(nginx.url)
    try:
        sent = tab.send(script({"say": "a"}, {"gate": "silence"}, {"say": "b"}), model="script:fake")
        received = []
        with tab.http.stream("GET", f"/api/messages/{sent['assistant_message']['id']}/stream") as response:
            assert response.status_code == 200
            assert "gzip" not in response.headers.get("content-encoding", "")
            for event in events(response.iter_lines()):
                received.append(event)
                pings = [e for e in received if e.event == "comment"]
                if len(pings) == 8:  # two seconds of silence: past nginx's 1 s read timeout
                    gate("silence").set()
                if event.event in ("done", "error"):
                    break
    finally:
        tab.close()
    assert received[-1].event == "done" and received[-1].json["status"] == "complete"
    assert text_of(received) == "ab"
    pings = [e for e in received if e.event == "comment"]
    assert pings[-1].at - pings[0].at > 1.0


def test_pages_and_json_are_compressed_by_nginx(nginx):
    tab = Tab(nginx.url)
    try:
        response = tab.get("/static/chat/chat.js", headers={"Accept-Encoding": "gzip"})
    finally:
        tab.close()
    assert response.status_code == 200
    assert response.headers.get("content-encoding") == "gzip"
