"""`chat` in a new Django project, exactly as README's "Add to your project" says.

The wheel is built from this repository and installed in a fresh virtual environment that
already has the Django this suite runs on (CI: 3.13 with Django 6.1, 3.11 with Django 5.2),
which the wheel must keep. A new site with a custom user model is made by `django-admin
startproject`, the README's snippets are added to its files as they are written there, its
`manage.py check` must be clean, and the result is driven through real servers: the API
(stream, resume, stop) under `manage.py runserver` and under `uvicorn mysite.asgi:application`,
the page in Chromium and the admin under runserver.
"""

import os
import re
import subprocess
import sys
from pathlib import Path

import django
import httpx
import pytest

from tests.conftest import free_port
from tests.page.conftest import need_chromium
from tests.processes import ROOT, ServerProcess
from tests.sse_client import events, last_id, text_of

PREFIX = "/assistant/"
ADMIN_PASSWORD = "a long admin password"
CUSTOM_USER = """
from django.contrib.auth.models import AbstractUser
from django.db import models


class User(AbstractUser):
    nickname = models.CharField(max_length=50, blank=True)
"""


def readme_steps() -> list[tuple[str, str]]:
    """The code blocks of README's "Add to your project", as (language, text), in order."""
    readme = (ROOT / "README.md").read_text()
    section = readme.split("## Add to your project", 1)[1].split("\n## ", 1)[0]
    return re.findall(r"```(\w+)\n(.*?)```", section, re.S)


def run(*args, cwd: Path, env: dict | None = None, timeout: float = 300) -> str:
    done = subprocess.run(
        [str(a) for a in args], cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout
    )
    assert done.returncode == 0, f"{args} failed:\n{done.stdout}\n{done.stderr}"
    return done.stdout


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    """A new site with the app added by README's steps; yields (its directory, its python)."""
    tmp = tmp_path_factory.mktemp("host")
    run(sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", tmp / "dist", ROOT, cwd=tmp)
    wheel = next((tmp / "dist").glob("chat_sse-*.whl"))
    run(sys.executable, "-m", "venv", tmp / "venv", cwd=tmp)
    python = tmp / "venv" / "bin" / "python"
    # The site's Django first, then the wheel alone (the demo model on SQLite needs no extra):
    # installing the app must not replace the site's Django.
    run(python, "-m", "pip", "install", "-q", f"django=={django.get_version()}", cwd=tmp, timeout=600)
    run(python, "-m", "pip", "install", "-q", wheel, cwd=tmp, timeout=600)
    assert run(python, "-m", "django", "--version", cwd=tmp).strip() == django.get_version()
    # The wheel is the app alone: no `project` package; templates and static files inside.
    found = run(
        python,
        "-c",
        "import importlib.util as u, chat; print(u.find_spec('project'), chat.__file__)",
        cwd=tmp,
    )
    assert found.startswith("None "), found
    app_dir = Path(found.split()[1]).parent
    assert (app_dir / "templates/chat/index.html").exists() and (app_dir / "static/chat/chat.js").exists()
    # ...and its catalogues, compiled (issue 32): a site gets the languages without gettext.
    assert all(
        (app_dir / f"locale/{lang}/LC_MESSAGES/{d}.mo").exists()
        for lang in ("de", "es")
        for d in ("django", "djangojs")
    )

    env = host_env()
    site = tmp / "site"
    site.mkdir()
    run(tmp / "venv/bin/django-admin", "startproject", "mysite", site, cwd=tmp, env=env, timeout=60)
    run(python, "manage.py", "startapp", "accounts", cwd=site, env=env, timeout=60)
    (site / "accounts/models.py").write_text(CUSTOM_USER)
    (site / "accounts/admin.py").write_text(
        "from django.contrib import admin\nfrom django.contrib.auth.admin import UserAdmin\n\n"
        "from accounts.models import User\n\nadmin.site.register(User, UserAdmin)\n"
    )
    with open(site / "mysite/settings.py", "a") as f:
        f.write('\nINSTALLED_APPS += ["accounts"]\nAUTH_USER_MODEL = "accounts.User"\n')
    run(python, "manage.py", "makemigrations", "accounts", cwd=site, env=env, timeout=60)

    # README's steps, as written there.
    steps = readme_steps()
    assert [lang for lang, _ in steps] == ["sh", "python", "python", "python", "sh"], steps
    assert "pip install" in steps[0][1]  # done above, from the wheel
    for _, code in steps[1:4]:
        target, body = code.split("\n", 1)
        assert target.startswith("# "), code
        with open(site / "mysite" / target[2:].strip(), "a") as f:
            f.write("\n" + body)
    assert steps[4][1].strip() == "python manage.py migrate"
    run(python, "manage.py", "migrate", "--noinput", cwd=site, env=env, timeout=120)
    checked = run(python, "manage.py", "check", cwd=site, env=env, timeout=60)
    assert checked.strip() == "System check identified no issues (0 silenced).", checked
    superuser = {**env, "DJANGO_SUPERUSER_PASSWORD": ADMIN_PASSWORD}
    run(
        python,
        "manage.py",
        "createsuperuser",
        "--noinput",
        "--username",
        "admin",
        "--email",
        "a@b.example",
        cwd=site,
        env=superuser,
        timeout=60,
    )
    return site, python


def host_env(**extra: str) -> dict[str, str]:
    """A clean environment: nothing of this repository's settings, the demo model at a pace."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("CHAT_", "DJANGO_", "DATABASE_", "REDIS_", "PYTHONPATH"))
    }
    env.update(PYTHONUNBUFFERED="1", DJANGO_RUNSERVER_HIDE_WARNING="true", CHAT_DEMO_RATE="60", **extra)
    return env


def serve(site: tuple[Path, Path], *args: str):
    """The site served by `python <args>` on a free port (`{port}` in args), stopped after."""
    directory, python = site
    port = free_port()
    command = [str(python), *(arg.format(port=port) for arg in args)]
    server = ServerProcess(command, host_env(), port, cwd=directory).start(timeout=60)
    yield server
    server.stop()


@pytest.fixture(scope="module")
def host(site):
    """`manage.py runserver`, as the README says it streams."""
    yield from serve(site, "manage.py", "runserver", "127.0.0.1:{port}", "--noreload")


@pytest.fixture(scope="module")
def uvicorn_host(site):
    """The site's own asgi.py under uvicorn (a dependency of the wheel), as in production."""
    yield from serve(site, "-m", "uvicorn", "mysite.asgi:application", "--host", "127.0.0.1", "--port={port}")


@pytest.mark.parametrize("server", ["host", "uvicorn_host"], ids=["runserver", "uvicorn"])
def test_the_api_streams_resumes_and_stops_under_the_prefix(server, request):
    host = request.getfixturevalue(server)
    with httpx.Client(base_url=host.url, timeout=20) as http:
        page = http.get(PREFIX)
        assert page.status_code == 200 and f'data-app-root="{PREFIX}"' in page.text
        headers = {"X-CSRFToken": http.cookies["csrftoken"]}
        sent = http.post(f"{PREFIX}api/conversations", json={"content": "Hello from a host"}, headers=headers)
        assert sent.status_code == 201, sent.text
        body = sent.json()
        reply = body["assistant_message"]
        assert body["stream_url"] == f"{PREFIX}api/messages/{reply['id']}/stream"
        first = []
        with http.stream("GET", body["stream_url"]) as response:
            for event in events(response.iter_lines()):
                first.append(event)
                if sum(e.event == "message" for e in first) == 5:
                    break
        with http.stream(
            "GET", body["stream_url"], headers={"Last-Event-ID": str(last_id(first))}
        ) as response:
            rest = list(events(response.iter_lines()))
        assert rest[-1].event == "done" and rest[-1].json["status"] == "complete"
        stored = http.get(f"{PREFIX}api/conversations/{body['id']}").json()["messages"][-1]
        assert text_of(first) + text_of(rest) == stored["content"] and len(stored["content"]) > 100

        other = http.post(f"{PREFIX}api/conversations", json={"content": "Stop me"}, headers=headers).json()
        stopped = http.post(f"{PREFIX}api/messages/{other['assistant_message']['id']}/stop", headers=headers)
        assert stopped.status_code == 200 and stopped.json()["status"] == "stopped"


def test_the_page_under_the_prefix_loads_its_scripts_and_streams(host):
    need_chromium()
    from playwright.sync_api import expect, sync_playwright

    from tests.page.chromium import CHROMIUM, CHROMIUM_ARGS

    errors: list[str] = []
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        try:
            page = browser.new_page(base_url=host.url)
            page.on("pageerror", lambda error: errors.append(str(error)))
            page.goto(PREFIX)
            expect(page.locator(".app.ready")).to_be_visible(timeout=10_000)
            page.fill("#prompt", "A question from the page")
            page.press("#prompt", "Enter")
            reply = page.locator(".msg.assistant").last
            expect(reply).to_have_attribute("aria-busy", "false", timeout=20_000)
            expect(reply.locator(".markdown")).to_contain_text("A question from the page")
            assert page.url.startswith(f"{host.url}{PREFIX}c/"), page.url
            page.reload()
            expect(page.locator(".msg.assistant .markdown")).to_contain_text("A question from the page")
            expect(page.locator(f'#conversations a[href^="{PREFIX}c/"]').first).to_be_visible()
        finally:
            browser.close()
    assert not errors, errors


def test_the_admin_lists_the_conversations(host):
    with httpx.Client(base_url=host.url, timeout=20) as http:
        form = http.get("/admin/login/")
        token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', form.text).group(1)
        login = http.post(
            "/admin/login/?next=/admin/",
            data={"username": "admin", "password": ADMIN_PASSWORD, "csrfmiddlewaretoken": token},
            headers={"Referer": f"{host.url}/admin/login/"},
        )
        assert login.status_code == 302, login.text
        listing = http.get("/admin/chat/conversation/")
        assert listing.status_code == 200
        assert "Hello from a host" in listing.text
