"""System checks for what breaks streaming (GZipMiddleware, WSGI, several workers without Redis), and
Django's own deploy checks seeing the project's middleware."""

import sys

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


def test_django_s_deploy_checks_find_its_own_middleware():
    """The project lists Django's security, CSRF and clickjacking middleware by their names, so
    Django's deploy checks see them and say what plain HTTP lacks (HTTPS=1 is off here)."""
    found = {m.id for m in run_checks(include_deployment_checks=True)}
    assert {"security.W004", "security.W008", "security.W016"} <= found
    assert not found & {"security.W001", "security.W002", "security.W003"}


@pytest.mark.parametrize("value", ["5000,x", "-1", "1,2,3,4"])
def test_gc_thresholds_written_wrong_are_named_at_start(settings, value):
    settings.CHAT_GC_THRESHOLDS = value
    assert "chat.E002" in ids()


def test_the_server_freezes_what_start_up_loaded_and_collects_less_often(settings):
    import gc

    from chat.asgi import tune_garbage_collector

    before = gc.get_threshold()
    try:
        settings.CHAT_GC_THRESHOLDS = ""
        tune_garbage_collector()
        assert gc.get_threshold() == before and gc.get_freeze_count() == 0  # left alone
        settings.CHAT_GC_THRESHOLDS = "5000,20,100"
        tune_garbage_collector()
        assert gc.get_threshold() == (5000, 20, 100) and gc.get_freeze_count() > 0
    finally:
        gc.unfreeze()
        gc.set_threshold(*before)
