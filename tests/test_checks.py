"""System checks for what breaks streaming: GZipMiddleware, WSGI, several workers without Redis."""

import sys

from django.core.checks import run_checks

from chat.checks import worker_count


def ids(deploy: bool = False) -> set[str]:
    return {m.id for m in run_checks(include_deployment_checks=deploy) if m.id.startswith("chat.")}


def test_the_projects_own_settings_raise_no_chat_warning(settings):
    settings.REDIS_URL = "redis://127.0.0.1:6379/0"
    assert ids(deploy=True) == set()


def test_gzip_middleware_is_named(settings):
    settings.MIDDLEWARE = ["django.middleware.gzip.GZipMiddleware", *settings.MIDDLEWARE]
    assert "chat.W001" in ids()


def test_a_wsgi_only_project_is_named(settings):
    settings.ASGI_APPLICATION = None
    assert "chat.W002" in ids()


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
