"""chat/static_serving.py through its ASGI interface: when it serves the app's files and when
it leaves them to the site (a CDN, WhiteNoise or ServeStatic, CHAT_SERVE_STATIC off)."""

import asyncio

import pytest

from chat.static_serving import AppStaticFiles, static_name

CSS = "/static/chat/chat.css"


async def site_app(scope, receive, send) -> None:
    """The site's own application: answers 418, so that a pass-through is seen."""
    await send({"type": "http.response.start", "status": 418, "headers": []})
    await send({"type": "http.response.body", "body": b"the site's"})


def get(path: str, method: str = "GET", root_path: str = "") -> tuple[int, dict, bytes]:
    scope = {"type": "http", "method": method, "path": path, "root_path": root_path, "headers": []}
    sent: list[dict] = []

    async def receive() -> dict:
        return {"type": "http.request", "body": b""}

    async def send(message: dict) -> None:
        sent.append(message)

    asyncio.run(AppStaticFiles(site_app)(scope, receive, send))
    headers = {k.decode(): v.decode() for k, v in sent[0].get("headers", [])}
    return sent[0]["status"], headers, b"".join(m.get("body", b"") for m in sent[1:])


@pytest.fixture
def plain_site(settings):
    """A new site: STATIC_URL 'static/', no static files middleware."""
    settings.STATIC_URL = "static/"
    settings.MIDDLEWARE = [m for m in settings.MIDDLEWARE if "servestatic" not in m]
    return settings


def test_a_plain_site_gets_the_app_s_files(plain_site):
    status, headers, body = get(CSS)
    assert status == 200 and headers["content-type"] == "text/css; charset=utf-8"
    assert b".app" in body and int(headers["content-length"]) == len(body)
    assert get("/static/chat/chat.js")[1]["content-type"] == "text/javascript; charset=utf-8"
    assert get(CSS, method="POST")[0] == 418  # only GET and HEAD
    assert get("/api/models")[0] == 418


def test_under_a_script_name_the_files_are_found_too(plain_site):
    assert get("/mounted" + CSS, root_path="/mounted")[0] == 200


@pytest.mark.parametrize(
    "change",
    [
        {"STATIC_URL": "https://cdn.example/static/"},
        {"STATIC_URL": "//cdn.example/static/"},
        {"CHAT_SERVE_STATIC": False},
        {"MIDDLEWARE": ["servestatic.middleware.ServeStaticMiddleware"]},
        {"MIDDLEWARE": ["whitenoise.middleware.WhiteNoiseMiddleware"]},
    ],
    ids=["cdn", "cdn-no-scheme", "off", "servestatic", "whitenoise"],
)
def test_it_steps_aside(plain_site, change):
    for name, value in change.items():
        setattr(plain_site, name, value)
    assert get(CSS)[0] == 418


@pytest.mark.parametrize(
    "path",
    [
        "/static/chat/../admin/css/base.css",
        "/static/chat/./chat.css",
        "/static/chat//chat.css",
        "/static/chat/..\\chat.css",
        "/static/chat/chat.css\x00.js",
        "/static/admin/css/base.css",
        "/static/chatter.css",
    ],
)
def test_only_the_app_s_own_names_are_looked_up(path):
    assert static_name(path, "/static/") is None
    assert static_name(CSS, "/static/") == "chat/chat.css"
