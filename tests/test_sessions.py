"""chat.sessions: Django's database sessions with the read written out, giving what Django's
own store gives in every case."""

import asyncio
from datetime import timedelta

import pytest
from django.contrib.sessions.backends.db import SessionStore as DjangoStore
from django.contrib.sessions.models import Session
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from chat.sessions import SessionStore


def saved(**data) -> str:
    store = DjangoStore()
    store.update(data)
    store.save()
    return store.session_key


def both(key: str | None) -> list[tuple[dict, str | None]]:
    """(data, key after loading) from Django's store and from chat's, sync and async."""
    out = []
    for make in (DjangoStore, SessionStore):
        store = make(key)
        out.append((store.load(), store.session_key))
        store = make(key)
        out.append((asyncio.run(store.aload()), store.session_key))
    return out


@pytest.mark.parametrize("case", ["live", "expired", "unknown", "corrupted", "not a key"])
def test_a_session_loads_as_djangos_own_store_loads_it(transactional_db, case):
    key = saved(chat_visitor="v1", _auth_user_id="7")
    if case == "expired":
        Session.objects.filter(pk=key).update(expire_date=timezone.now() - timedelta(seconds=1))
    elif case == "unknown":
        key = "x" * 32
    elif case == "corrupted":
        Session.objects.filter(pk=key).update(session_data="not what Django signed")
    elif case == "not a key":
        key = "short"  # SessionBase refuses it: no key at all
    results = both(key)
    assert all(result == results[0] for result in results), results
    expected = {"chat_visitor": "v1", "_auth_user_id": "7"} if case == "live" else {}
    assert results[0][0] == expected


def test_a_load_is_one_select(db):
    key = saved(chat_visitor="v1")
    with CaptureQueriesContext(connection) as captured:
        assert SessionStore(key).load() == {"chat_visitor": "v1"}
    assert len(captured) == 1 and captured[0]["sql"].startswith("SELECT")


def test_writes_are_djangos(db):
    store = SessionStore()
    store["chat_visitor"] = "v2"
    store.save()
    assert DjangoStore(store.session_key).load() == {"chat_visitor": "v2"}
    store.flush()
    assert not Session.objects.exists()


def _no_thread(*args, **kwargs):
    raise AssertionError("the session was read on a thread")


def test_on_sqlite_an_async_load_reads_on_the_event_loop_itself(transactional_db, monkeypatch):
    """No thread hop (issue 14): the read runs on the loop's own connection, and sees what
    another connection committed a moment before."""
    import chat.sessions

    key = saved(chat_visitor="v1")
    monkeypatch.setattr(chat.sessions, "sync_to_async", _no_thread)
    assert asyncio.run(SessionStore(key).aload()) == {"chat_visitor": "v1"}
    store = DjangoStore(key)
    store["chat_visitor"] = "v2"
    store.save()
    assert asyncio.run(SessionStore(key).aload()) == {"chat_visitor": "v2"}
    Session.objects.filter(pk=key).update(expire_date=timezone.now() - timedelta(seconds=1))
    expired = SessionStore(key)
    assert asyncio.run(expired.aload()) == {} and expired.session_key is None


def test_a_read_the_loop_cannot_make_goes_to_a_thread(transactional_db, monkeypatch):
    """SQLite busy or unreadable, or a database another connection would not see (in memory):
    the load goes the usual way, on a thread, and gives the same."""
    import sqlite3

    from django.db import connections

    import chat.sessions

    key = saved(chat_visitor="v1")
    hops, real = [], chat.sessions.sync_to_async

    def counted(fn):
        hops.append(fn)
        return real(fn)

    monkeypatch.setattr(chat.sessions, "sync_to_async", counted)
    broken = sqlite3.connect(":memory:")
    broken.close()  # any use raises sqlite3.ProgrammingError
    name = str(connection.settings_dict["NAME"])
    monkeypatch.setattr(chat.sessions._here, "sqlite", (name, broken), raising=False)
    assert asyncio.run(SessionStore(key).aload()) == {"chat_visitor": "v1"}
    assert len(hops) == 1
    monkeypatch.delattr(chat.sessions._here, "sqlite")
    monkeypatch.setattr(type(connections["default"]), "is_in_memory_db", lambda self: True)
    assert asyncio.run(SessionStore(key).aload()) == {"chat_visitor": "v1"}
    assert len(hops) == 2
    assert not hasattr(chat.sessions._here, "sqlite")  # it did not even open its connection
