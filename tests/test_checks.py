"""System checks for what breaks streaming (GZipMiddleware, WSGI, several workers without Redis), and
Django's own deploy checks seeing the project's middleware."""

import sys
import types

import pytest
from django.core.checks import run_checks

from chat.checks import worker_count

# Django 6's model checks ask the database what it supports (JSONField), as `manage.py check` does.
pytestmark = pytest.mark.django_db


def ids(deploy: bool = False) -> set[str]:
    return {m.id for m in run_checks(include_deployment_checks=deploy) if m.id.startswith("chat.")}


def test_the_projects_own_settings_raise_no_chat_warning(settings):
    settings.REDIS_URL = "redis://127.0.0.1:6379/0"
    assert ids(deploy=True) == set()


def test_gzip_middleware_is_named(settings):
    settings.MIDDLEWARE = ["django.middleware.gzip.GZipMiddleware", *settings.MIDDLEWARE]
    assert "chat.W001" in ids()


def test_a_site_without_asgi_application_gets_no_warning(settings):
    """startproject sets WSGI_APPLICATION alone, and Django never reads ASGI_APPLICATION: the
    warning comes from what serves, not from a setting a new site does not have."""
    settings.ASGI_APPLICATION = None
    settings.WSGI_APPLICATION = "project.wsgi.application"
    assert "chat.W002" not in ids()


@pytest.mark.parametrize("server", ["waitress", "gunicorn.app"])
def test_a_process_under_a_wsgi_server_is_named(monkeypatch, server):
    monkeypatch.setitem(sys.modules, server, types.ModuleType(server))
    [warning] = [m for m in run_checks() if m.id == "chat.W002"]
    assert server.split(".")[0] in warning.msg
    assert "chat.asgi.with_chat" in warning.hint and "project.asgi" not in warning.hint


def test_gunicorn_with_uvicorns_worker_serves_asgi(monkeypatch):
    monkeypatch.setitem(sys.modules, "gunicorn.app", types.ModuleType("gunicorn.app"))
    monkeypatch.setitem(sys.modules, "uvicorn_worker", types.ModuleType("uvicorn_worker"))
    assert "chat.W002" not in ids()


@pytest.mark.parametrize("before", ["django.contrib.staticfiles", "servestatic"])
def test_an_app_whose_runserver_wins_over_the_chats_is_named(settings, before):
    """Django's command lookup gives runserver to the first app listed that has one: with
    staticfiles (or ServeStatic) first, `manage.py runserver` is Django's WSGI server."""
    apps = [app for app in settings.INSTALLED_APPS if app != "chat"]
    settings.INSTALLED_APPS = [before, *[app for app in apps if app != before], "chat"]
    [warning] = [m for m in run_checks() if m.id == "chat.W002"]
    assert f"{before} comes before chat" in warning.msg
    assert f'List "chat" before "{before}"' in warning.hint


def test_no_redis_is_named_under_deploy_only(settings, monkeypatch):
    settings.REDIS_URL = None
    assert "chat.W003" not in ids()
    assert "chat.W003" in ids(deploy=True)
    monkeypatch.setenv("WEB_CONCURRENCY", "4")
    [warning] = [m for m in run_checks(include_deployment_checks=True) if m.id == "chat.W003"]
    assert warning.msg.startswith("4 server processes without REDIS_URL")


def test_workers_are_counted_from_uvicorns_command_line(monkeypatch):
    monkeypatch.delenv("WEB_CONCURRENCY", raising=False)
    monkeypatch.setattr(sys, "argv", ["uvicorn", "project.asgi:application", "--workers", "3"])
    assert worker_count() == 3
    monkeypatch.setattr(sys, "argv", ["uvicorn", "project.asgi:application", "--workers=2"])
    assert worker_count() == 2


def test_django_s_deploy_checks_find_its_own_middleware():
    """The project lists Django's security, CSRF and clickjacking middleware by their names, so
    Django's deploy checks see them and say what plain HTTP lacks (HTTPS=1 is off here)."""
    found = {m.id for m in run_checks(include_deployment_checks=True)}
    assert {"security.W004", "security.W008", "security.W016"} <= found
    assert not found & {"security.W001", "security.W002", "security.W003"}


def test_the_server_leaves_the_garbage_collector_alone_unless_the_project_tunes_it(server):
    """The app's lifespan (the test server has started it) never freezes or retunes the host's
    collector; a project that wants it calls chat.asgi.tune_garbage_collector itself."""
    import gc

    from chat.asgi import tune_garbage_collector

    before = gc.get_threshold()
    assert gc.get_freeze_count() == 0
    try:
        tune_garbage_collector(thresholds=(5000, 20, 100))
        assert gc.get_threshold() == (5000, 20, 100) and gc.get_freeze_count() > 0
        with pytest.raises(ValueError, match="one to three"):
            tune_garbage_collector(thresholds=(1, 2, 3, 4))
    finally:
        gc.unfreeze()
        gc.set_threshold(*before)


@pytest.mark.parametrize(
    ("setting", "value", "module", "extra"),
    [
        ("CHAT_MODELS", ["demo", "openai:gpt-4o-mini"], "openai", "openai"),
        ("CHAT_MODEL", "anthropic:claude-haiku-4-5", "anthropic", "anthropic"),
        ("REDIS_URL", "redis://127.0.0.1:6379/0", "redis", "redis"),
    ],
)
def test_a_part_asked_for_without_its_extra_is_named_with_the_extra(
    settings, monkeypatch, setting, value, module, extra
):
    """The vendor SDKs and Redis are extras: a site that asks for one without installing it
    is told at `manage.py check` which extra to install. (None in sys.modules is how Python
    itself marks a module as not importable.)"""
    assert "chat.E003" not in ids()
    setattr(settings, setting, value)
    assert "chat.E003" not in ids()  # installed here
    monkeypatch.setitem(sys.modules, module, None)
    [error] = [m for m in run_checks() if m.id == "chat.E003"]
    assert module in error.msg and error.hint == f"pip install 'chat-sse[{extra}]'"


def test_the_demo_model_on_sqlite_needs_no_extra(settings, monkeypatch):
    settings.CHAT_MODELS, settings.CHAT_MODEL = ["demo"], "demo"
    for module in ("openai", "anthropic", "httpx2", "redis", "psycopg"):
        monkeypatch.setitem(sys.modules, module, None)
    assert "chat.E003" not in ids()
