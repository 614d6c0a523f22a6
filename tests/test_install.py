"""A clean install into a new site (issue 32): `django-admin startproject`, README's "Add to
your project" steps as written there, and then no warning from `manage.py check` (nor a chat.*
one from `check --deploy` with production settings), and the chat page's CSS and JavaScript
loading, with DEBUG off, under `uvicorn mysite.asgi:application` and under `manage.py
runserver`, with no static files setup of the site's own.

The site runs on this suite's virtual environment, where the app is installed (tests/
test_host_project.py installs the wheel into a fresh one, slower; this file is about the
site's settings and servers).
"""

import json
import re
import signal
import socket
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from tests.conftest import free_port
from tests.processes import ServerProcess
from tests.sse_client import events
from tests.test_host_project import host_env, readme_steps

PREFIX = "/assistant/"
SITE_SETTINGS = """
# Production-like settings of the site itself (not of the chat app).
import os

DEBUG = os.environ.get("SITE_DEBUG") == "1"
ALLOWED_HOSTS = ["127.0.0.1", "localhost"]
SECRET_KEY = "a-site-key-for-tests-only-0123456789-abcdefghijklmnopqrstuvwxyz-ABCDEFG"
"""
DEPLOY_SETTINGS = """from mysite.settings import *  # noqa: F403

SECURE_SSL_REDIRECT = True
SECURE_HSTS_SECONDS = 31536000
SECURE_HSTS_INCLUDE_SUBDOMAINS = True
SECURE_HSTS_PRELOAD = True
SESSION_COOKIE_SECURE = True
CSRF_COOKIE_SECURE = True
REDIS_URL = "redis://127.0.0.1:6379/0"  # several server processes share replies through Redis
# Django 6.1's startproject sends mail to the console (MAILERS, mail.E001 under --deploy).
if "MAILERS" in globals():
    MAILERS = {"default": {"BACKEND": "django.core.mail.backends.smtp.EmailBackend"}}
"""
# The site without the README's optional ASGI_APPLICATION line (startproject sets none).
NO_ASGI_SETTING = "from mysite.settings import *  # noqa: F403\n\ndel ASGI_APPLICATION  # noqa: F821\n"
# A host's app that hooks in as the docs say: receivers connected in its ready(), one sync and
# one async, writing what they got to the file SIGNAL_LOG names.
BILLING_APP = """import json
import os

from django.apps import AppConfig


def write(**line):
    with open(os.environ["SIGNAL_LOG"], "a") as f:
        f.write(json.dumps(line) + "\\n")


def receiver_of(name):
    def on_reply(sender, message, owner, **kwargs):
        status, usage = kwargs.get("status"), kwargs.get("usage")
        write(kind="sync", signal=name, id=str(message.pk), status=status, usage=usage)

    return on_reply


async def on_finished(sender, message, status, **kwargs):
    write(kind="async", signal="finished", id=str(message.pk), status=status)


class BillingConfig(AppConfig):
    name = "billing"

    def ready(self):
        from chat.models import Message
        from chat.signals import reply_failed, reply_finished, reply_started

        signals = {"started": reply_started, "finished": reply_finished, "failed": reply_failed}
        for name, signal in signals.items():
            signal.connect(receiver_of(name), sender=Message, weak=False, dispatch_uid="billing-" + name)
        reply_finished.connect(on_finished, sender=Message, dispatch_uid="billing-async")
"""
TYPES = {".css": "text/css", ".js": "text/javascript", ".mjs": "text/javascript"}


def run(*args, cwd: Path, **env: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, *args], cwd=cwd, env=host_env(**env), capture_output=True, text=True, timeout=120
    )


@pytest.fixture(scope="module")
def site(tmp_path_factory) -> Path:
    """A new site with the app added by README's steps, and the site's own production settings."""
    directory = tmp_path_factory.mktemp("install") / "site"
    directory.mkdir()
    made = run("-m", "django", "startproject", "mysite", directory, cwd=directory)
    assert made.returncode == 0, made.stderr
    steps = readme_steps()
    assert [lang for lang, _ in steps] == ["sh", "python", "python", "python", "sh"], steps
    for _, code in steps[1:4]:  # settings.py, urls.py, asgi.py: appended as README writes them
        target, body = code.split("\n", 1)
        with open(directory / "mysite" / target.removeprefix("# ").strip(), "a") as f:
            f.write("\n" + body)
    with open(directory / "mysite/settings.py", "a") as f:
        f.write(SITE_SETTINGS)
    with open(directory / "mysite/settings.py", "a") as f:
        f.write('\nINSTALLED_APPS += ["billing.apps.BillingConfig"]\n')
    (directory / "billing").mkdir()
    (directory / "billing/__init__.py").write_text("")
    (directory / "billing/apps.py").write_text(BILLING_APP)
    (directory / "mysite/deploy.py").write_text(DEPLOY_SETTINGS)
    (directory / "mysite/no_asgi_setting.py").write_text(NO_ASGI_SETTING)
    migrated = run("manage.py", "migrate", "--noinput", "-v0", cwd=directory)
    assert migrated.returncode == 0, migrated.stderr
    return directory


@pytest.mark.parametrize(
    ("settings", "debug"),
    [("mysite.settings", "0"), ("mysite.settings", "1"), ("mysite.no_asgi_setting", "1")],
    ids=["debug-off", "debug-on", "without-ASGI_APPLICATION"],
)
def test_check_finds_nothing(site, settings, debug):
    checked = run("manage.py", "check", "--settings", settings, cwd=site, SITE_DEBUG=debug)
    assert checked.returncode == 0, checked.stderr
    assert checked.stdout.strip() == "System check identified no issues (0 silenced).", checked.stdout
    assert "chat." not in checked.stderr


def test_check_deploy_finds_nothing_with_production_settings(site):
    checked = run("manage.py", "check", "--deploy", "--settings", "mysite.deploy", cwd=site)
    assert checked.returncode == 0, checked.stderr
    assert "chat." not in checked.stdout + checked.stderr
    assert checked.stdout.strip() == "System check identified no issues (0 silenced).", checked.stdout


def test_a_site_serving_django_s_wsgi_runserver_is_warned(site):
    """The check still warns where streaming really breaks: chat listed after staticfiles."""
    settings = site / "mysite/chat_last.py"
    settings.write_text(
        "from mysite.settings import *  # noqa: F403\n\n"
        'INSTALLED_APPS = [app for app in INSTALLED_APPS if app != "chat"] + ["chat"]  # noqa: F405\n'
    )
    checked = run("manage.py", "check", "--settings", "mysite.chat_last", cwd=site)
    assert "chat.W002" in checked.stderr and "django.contrib.staticfiles comes before chat" in checked.stderr


@pytest.fixture(
    scope="module",
    params=[
        ("-m", "uvicorn", "mysite.asgi:application", "--host", "127.0.0.1", "--port={port}"),
        ("manage.py", "runserver", "127.0.0.1:{port}", "--noreload"),
        # runserver serves mysite/asgi.py, found beside WSGI_APPLICATION.
        ("manage.py", "runserver", "127.0.0.1:{port}", "--noreload", "--settings=mysite.no_asgi_setting"),
    ],
    ids=["uvicorn", "runserver", "runserver-without-ASGI_APPLICATION"],
)
def served(site, request):
    """The site with DEBUG off, under each server, stopped after."""
    port = free_port()
    command = [sys.executable, *(arg.format(port=port) for arg in request.param)]
    server = ServerProcess(command, host_env(SITE_DEBUG="0"), port, cwd=site).start(timeout=60)
    yield server
    server.stop()


def page_assets(html: str) -> list[str]:
    """The stylesheets, module preloads and scripts the page links to."""
    return re.findall(r'<(?:link|script)[^>]*?(?:href|src)="([^"]+\.(?:css|js|mjs))"', html)


def test_the_page_and_its_css_and_javascript_load_with_debug_off(served):
    with httpx.Client(base_url=served.url, timeout=20) as http:
        page = http.get(PREFIX)
        assert page.status_code == 200
        assets = page_assets(page.text)
        assert "/static/chat/chat.css" in assets and "/static/chat/chat.js" in assets, assets
        # What chat.js imports, too: every module the page needs.
        imports = re.findall(r'from "\./([\w.-]+\.js)"', http.get("/static/chat/chat.js").text)
        assert "api.js" in imports, imports
        for url in [*assets, *(f"/static/chat/{name}" for name in imports)]:
            response = http.get(url)
            assert response.status_code == 200, url
            assert response.headers["content-type"].startswith(TYPES[Path(url).suffix]), url
            assert response.headers["x-content-type-options"] == "nosniff"
            assert int(response.headers["content-length"]) == len(response.content) > 0


def raw_status(port: int, path: str) -> int:
    """The status of a GET of `path` sent as it is (an HTTP client would resolve its `..`)."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n".encode())
        return int(sock.makefile("rb").readline().split()[1])


def test_the_app_s_static_files_revalidate_answer_head_and_stay_in_their_directory(served):
    url = "/static/chat/chat.css"
    with httpx.Client(base_url=served.url, timeout=20) as http:
        first = http.get(url)
        assert first.headers["cache-control"] == "no-cache" and first.headers["last-modified"]
        again = http.get(url, headers={"If-None-Match": first.headers["etag"]})
        assert again.status_code == 304 and again.content == b""
        head = http.head(url)
        assert head.status_code == 200 and head.content == b""
        assert head.headers["content-length"] == str(len(first.content))
        for outside in ("/static/chat/../chat/chat.css", "/static/chat/%2e%2e/admin/css/base.css"):
            assert raw_status(served.port, outside) == 404, outside
        assert http.get("/static/chat/nothing-here.js").status_code == 404
        # The app serves its own files only: the admin's stay the site's (collectstatic and a server).
        assert http.get("/static/admin/css/base.css").status_code == 404


def test_a_reply_streams_to_its_end(served):
    """The engine started with the server (the lifespan of `with_chat`, wherever it came from)."""
    with httpx.Client(base_url=served.url, timeout=30) as http:
        headers = {"Accept": "text/event-stream"}
        with http.stream("POST", f"{PREFIX}api/conversations", json={"content": "Hi"}, headers=headers) as r:
            assert r.status_code == 200
            received = list(events(r.iter_lines()))
    assert received[-1].event == "done" and received[-1].json["status"] == "complete"
    assert sum(e.event == "message" for e in received) > 10


def test_a_host_s_receivers_get_a_finished_and_an_interrupted_reply_under_uvicorn(site, tmp_path):
    """The site's own app connects receivers; a reply that completes and one in flight when the
    server gets SIGTERM each send started, then finished (complete, then interrupted)."""
    log = tmp_path / "signals.jsonl"
    port = free_port()
    command = [sys.executable, "-m", "uvicorn", "mysite.asgi:application", "--port", str(port)]
    env = host_env(SITE_DEBUG="0", SIGNAL_LOG=str(log))
    server = ServerProcess(command, env, port, cwd=site).start(timeout=60)
    try:
        with httpx.Client(base_url=server.url, timeout=30) as http:
            http.get(PREFIX)  # the session and the CSRF cookie, as the page gives them
            body = {"content": "Hi"}
            headers = {"Accept": "text/event-stream", "X-CSRFToken": http.cookies["csrftoken"]}
            with http.stream("POST", f"{PREFIX}api/conversations", json=body, headers=headers) as r:
                done = list(events(r.iter_lines()))[-1].json
            token = {"X-CSRFToken": headers["X-CSRFToken"]}
            sent = http.post(f"{PREFIX}api/conversations", json={"content": "Long"}, headers=token).json()
        in_flight = sent["assistant_message"]["id"]
        server.wait_for(lambda: log.exists() and in_flight in log.read_text(), 20, "reply_started")
        server.signal(signal.SIGTERM)
        server.wait(20)  # uvicorn's graceful shutdown, then the signal raised again
    finally:
        server.stop()
    lines = [json.loads(line) for line in log.read_text().splitlines()]
    sync = [(line["id"], line["signal"], line["status"]) for line in lines if line["kind"] == "sync"]
    assert sync == [
        (done["message_id"], "started", None),
        (done["message_id"], "finished", "complete"),
        (in_flight, "started", None),
        (in_flight, "finished", "interrupted"),
    ]
    assert [line["usage"] for line in lines if line["kind"] == "sync"][1] == done["usage"]
    asynchronous = [(line["id"], line["status"]) for line in lines if line["kind"] == "async"]
    assert asynchronous == [(done["message_id"], "complete"), (in_flight, "interrupted")]
