"""Deployment defaults, through real processes: DEBUG per entry point, SECRET_KEY, HTTPS, static
files with DEBUG off, `check --deploy`, and 500s (API.md: Deployment settings)."""

import logging
import re
import secrets
import subprocess
from pathlib import Path

import httpx
import pytest
from django.core.handlers.asgi import ASGIHandler

from tests.conftest import free_port
from tests.processes import PYTHON, ROOT, ServerProcess, migrate, server_env

UVICORN = [PYTHON, "-m", "uvicorn", "project.asgi:application"]


@pytest.fixture
def database(tmp_path: Path) -> str:
    url = f"sqlite:///{tmp_path / 'db.sqlite3'}"
    migrate(server_env(url))
    return url


@pytest.fixture
def start():
    started: list[ServerProcess] = []

    def run(args: list[str], env: dict[str, str]) -> ServerProcess:
        port = free_port()
        command = [*args, f"127.0.0.1:{port}"] if "runserver" in args else [*args, "--port", str(port)]
        started.append(ServerProcess(command, env, port).start())
        return started[-1]

    yield run
    for process in started:
        process.stop()


def without(env: dict[str, str], *names: str) -> dict[str, str]:
    return {k: v for k, v in env.items() if k not in names}


# --- DEBUG and SECRET_KEY ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("debug", "workers"),
    [("0", "1"), (None, "1"), (None, "2")],  # DEBUG unset is off under uvicorn
)
def test_uvicorn_without_secret_key_refuses_to_start_and_says_what_to_set(database, debug, workers):
    env = without(server_env(database), "SECRET_KEY")
    if debug is not None:
        env["DEBUG"] = debug
    args = [*UVICORN, "--port", str(free_port()), "--workers", workers]
    # --workers 2: the parent stops at the first worker that cannot start (no restart loop).
    done = subprocess.run(args, cwd=ROOT, env=env, capture_output=True, text=True, timeout=60)
    output = done.stdout + done.stderr
    assert "Cannot start the server: SECRET_KEY is not set; with DEBUG off, set SECRET_KEY" in output
    assert "Traceback" not in output
    if workers == "1":
        assert done.returncode == 3  # uvicorn's "startup failure"
    else:
        assert "failed to start, stopping the parent process" in output


def test_manage_py_runs_in_development_without_any_setting(database):
    """`make run` on a fresh machine: DEBUG on and the development key, under manage.py only."""
    env = without(server_env(database), "SECRET_KEY", "ALLOWED_HOSTS")
    done = subprocess.run(
        [PYTHON, "manage.py", "check", "--deploy"], cwd=ROOT, env=env, capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr
    assert "(security.W018) You should not have DEBUG set to True" in done.stderr
    assert "(security.W009) Your SECRET_KEY" in done.stderr


def check_deploy(**settings: str) -> str:
    """`manage.py check --deploy` with DEBUG off, a real key and `settings`: what it printed."""
    env = without(server_env("postgres://chat@db.internal/chat"), "SILENCED_SYSTEM_CHECKS")
    env.update(DEBUG="0", SECRET_KEY=secrets.token_urlsafe(50), **settings)
    done = subprocess.run(
        [PYTHON, "manage.py", "check", "--deploy"], cwd=ROOT, env=env, capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr
    return done.stdout + done.stderr


def reported(output: str) -> set[str]:
    return set(re.findall(r"\(([a-z]+\.[EW]\d+)\)", output))


def test_check_deploy_without_https_reports_django_s_own_warnings_and_silences_nothing():
    """Django's own middleware by name: its HSTS, SSL-redirect and CSRF-cookie checks fire."""
    output = check_deploy(ALLOWED_HOSTS="chat.example.org", REDIS_URL="redis://10.0.0.3:6379/0")
    assert {"security.W004", "security.W008", "security.W012", "security.W016"} <= reported(output)
    assert "(0 silenced)" in output


PRODUCTION = {
    "ALLOWED_HOSTS": "chat.example.org",
    "HTTPS": "1",
    "CHAT_TRUSTED_PROXIES": "10.0.0.2",
    "REDIS_URL": "redis://10.0.0.3:6379/0",
}


def test_check_deploy_in_the_documented_production_environment_asks_only_about_preload():
    """HSTS preload is the operator's decision (months to undo): asked until it is made."""
    assert reported(check_deploy(**PRODUCTION)) == {"security.W021"}


@pytest.mark.parametrize(
    "decision", [{"SECURE_HSTS_PRELOAD": "1"}, {"SILENCED_SYSTEM_CHECKS": "security.W021"}], ids=["yes", "no"]
)
def test_check_deploy_reports_no_issue_once_the_operator_decides_about_preload(decision):
    output = check_deploy(**PRODUCTION, **decision)
    assert "System check identified no issues" in output, output
    assert "WARNINGS" not in output


# --- DEBUG off under uvicorn: the page and its static files -------------------------------

_STATIC = re.compile(r"""(?:href|src)="(/static/[^"]+)\"""")
_IMPORT = re.compile(r"""^import .* from "(\./[^"]+)";""", re.MULTILINE)


def page_files(http: httpx.Client) -> dict[str, httpx.Response]:
    """The page's static files, and the modules those import, each fetched once."""
    page = http.get("/")
    assert page.status_code == 200
    todo, fetched = _STATIC.findall(page.text), {}
    while todo:
        path = todo.pop()
        if path in fetched:
            continue
        fetched[path] = response = http.get(path)
        if path.endswith((".js", ".mjs")):
            base = path.rsplit("/", 1)[0]
            todo += [f"{base}/{name.removeprefix('./')}" for name in _IMPORT.findall(response.text)]
    return fetched


def test_uvicorn_runs_with_debug_off_by_default_and_serves_the_page_s_files(start, database):
    server = start(UVICORN, server_env(database))
    with httpx.Client(base_url=server.url, timeout=10) as http:
        missing = http.get("/no/such/page")
        assert missing.status_code == 404
        assert "DEBUG" not in missing.text and "URLconf" not in missing.text  # no debug page

        files = page_files(http)
        assert {"/static/chat/chat.js", "/static/chat/vendor/purify.es.mjs"} <= files.keys()
        for path, response in files.items():
            assert response.status_code == 200, path
            assert response.headers["content-type"].startswith(("text/javascript", "text/css")), path
            assert response.headers["cache-control"] == "max-age=60, public", path  # ServeStatic's
        chat_js = files["/static/chat/chat.js"]
        assert chat_js.content == (ROOT / "chat/static/chat/chat.js").read_bytes()

        etag = {"If-None-Match": chat_js.headers["etag"]}
        assert http.get("/static/chat/chat.js", headers=etag).status_code == 304
        part = http.get("/static/chat/chat.js", headers={"Range": "bytes=0-9"})
        assert part.status_code == 206 and part.content == chat_js.content[:10]
        assert http.head("/static/chat/chat.css").headers["content-length"].isdigit()

        assert "strict-transport-security" not in chat_js.headers  # HTTPS is off by default
        assert "secure" not in http.get("/").headers["set-cookie"].lower()


def test_the_middleware_chain_stays_async(settings, caplog):
    """One sync middleware would send every request, streams included, through a thread."""
    settings.DEBUG = True  # Django says which handlers it adapts only while DEBUG is on
    with caplog.at_level(logging.DEBUG, logger="django.request"):
        ASGIHandler()
    assert not [r for r in caplog.records if "adapted" in r.getMessage()]


# --- HTTPS=1 --------------------------------------------------------------------------------


def test_https_redirects_sets_hsts_and_secure_cookies(start, database):
    # The proxy in front of it is 127.0.0.1: its X-Forwarded-Proto is believed.
    env = server_env(database, HTTPS="1", CHAT_TRUSTED_PROXIES="127.0.0.1")
    server = start(UVICORN, env)
    https = {"X-Forwarded-Proto": "https"}
    with httpx.Client(base_url=server.url, timeout=10) as http:
        for path in ("/", "/api/models", "/static/chat/chat.css"):
            plain = http.get(path)
            assert plain.status_code == 301
            assert plain.headers["location"] == f"https://127.0.0.1:{server.port}{path}"

        page = http.get("/", headers=https)
        assert page.status_code == 200
        assert page.headers["strict-transport-security"] == "max-age=31536000; includeSubDomains"
        cookies = sorted(page.headers.get_list("set-cookie"))  # the visitor's identity comes at once
        assert [c.split("=", 1)[0] for c in cookies] == ["csrftoken", "sessionid"]
        assert all("; Secure" in cookie for cookie in cookies)

        created = httpx.post(f"{server.url}/api/conversations", json={}, headers=https)
        assert created.status_code == 201
        [session] = created.headers.get_list("set-cookie")
        assert session.startswith("sessionid=") and "; Secure" in session
        assert created.headers["strict-transport-security"].startswith("max-age=31536000")


# --- 500s ------------------------------------------------------------------------------------


@pytest.fixture
def unmigrated(tmp_path: Path) -> str:
    """A database nobody migrated: a real mistake, and a real exception on the first write."""
    return f"sqlite:///{tmp_path / 'empty.sqlite3'}"


def test_a_500_on_the_api_answers_json_and_the_traceback_goes_to_the_log(start, unmigrated):
    server = start(UVICORN, server_env(unmigrated))
    response = httpx.post(f"{server.url}/api/conversations", json={}, timeout=10)
    assert response.status_code == 500
    assert response.json() == {
        "error": "Something went wrong on the server; its log has the details.",
        "code": "internal_error",
    }
    assert "Traceback" not in response.text and "chat_conversation" not in response.text
    server.wait_for(lambda: "no such table: chat_conversation" in server.output, 10, "the log")
    assert "Internal Server Error: /api/conversations\nTraceback (most recent call last):" in server.output


def test_a_500_is_logged_with_debug_on_too(start, unmigrated):
    server = start([PYTHON, "manage.py", "runserver", "--noreload"], server_env(unmigrated))
    response = httpx.post(f"{server.url}/api/conversations", json={}, timeout=10)
    assert response.status_code == 500
    server.wait_for(lambda: "no such table: chat_conversation" in server.output, 10, "the log")
    assert "Internal Server Error: /api/conversations\nTraceback (most recent call last):" in server.output
