"""A request's sync work on a pooled thread (chat/request_thread.py), given back when its stream starts."""

import asyncio
import contextlib
import threading

import pytest
from asgiref.sync import sync_to_async

from chat.request_thread import ThreadPool, release_request_thread, request_context


def run(coro):
    return asyncio.run(asyncio.wait_for(coro, 10))


async def connection_across_two_requests(threads: ThreadPool, *, release: bool):
    """A request opens its thread's database connection (and gives the thread back once its
    stream would have started, with `release`); the next request, on the same pooled worker,
    looks at that thread's connection. (the first's, what the second finds)"""
    from django.db import connection

    def opened():
        connection.ensure_connection()
        return connection.connection

    def found():
        return connection.connection

    async with request_context(threads):
        first = await sync_to_async(opened)()
        if release:
            await release_request_thread()
    async with request_context(threads):  # the same worker, from the pool
        return first, await sync_to_async(found)()


@contextlib.contextmanager
def conn_max_age(value, blocker):
    """The database's CONN_MAX_AGE for a while (one settings dict, shared by every thread's
    connection), with database access allowed."""
    from django.db import connection

    saved = connection.settings_dict["CONN_MAX_AGE"]
    connection.settings_dict["CONN_MAX_AGE"] = value
    try:
        with blocker.unblock():
            yield
    finally:
        connection.settings_dict["CONN_MAX_AGE"] = saved


def test_a_request_runs_its_sync_work_on_one_thread_and_the_next_request_reuses_it():
    threads = ThreadPool()

    async def one_request() -> set[int]:
        async with request_context(threads):
            return {await sync_to_async(threading.get_ident)() for _ in range(5)}

    async def go():
        first = await one_request()
        second = await one_request()
        return first, second

    first, second = run(go())
    assert len(first) == 1  # thread-sensitive: one thread for the whole request
    assert first == second  # the worker went back to the pool and served the next request
    assert threads.made == 1


def test_concurrent_requests_each_have_a_thread_of_their_own():
    threads = ThreadPool()
    gate = threading.Barrier(3, timeout=5)

    def meet() -> int:
        gate.wait()  # all three at once: would deadlock if they shared a thread
        return threading.get_ident()

    async def one_request() -> int:
        async with request_context(threads):
            return await sync_to_async(meet)()

    async def go():
        return await asyncio.gather(*(one_request() for _ in range(3)))

    assert len(set(run(go()))) == 3
    assert threads.made == 3 and len(threads.idle) == 3


def test_a_released_request_gives_its_thread_back_and_borrows_one_for_later_work():
    threads = ThreadPool()

    async def go():
        async with request_context(threads) as request:
            before = await sync_to_async(threading.get_ident)()
            await release_request_thread()  # a stream's body starts
            assert request.executor.worker is None
            assert len(threads.idle) == 1  # back in the pool while the stream is open
            async with request_context(threads):  # another request meanwhile gets that thread
                other = await sync_to_async(threading.get_ident)()
            later = await sync_to_async(threading.get_ident)()  # e.g. the response's close()
        return before, other, later

    before, other, later = run(go())
    assert other == before
    assert later == before  # borrowed again from the pool
    assert threads.made == 1 and len(threads.idle) == 1


def test_the_pool_keeps_a_bounded_number_of_idle_threads():
    threads = ThreadPool(keep=2)

    async def one_request(gate: asyncio.Event) -> None:
        async with request_context(threads):
            await sync_to_async(threading.get_ident)()
            await gate.wait()

    async def go():
        gate = asyncio.Event()
        tasks = [asyncio.create_task(one_request(gate)) for _ in range(5)]
        await asyncio.sleep(0.2)
        gate.set()
        await asyncio.gather(*tasks)

    run(go())
    assert threads.made == 5
    assert len(threads.idle) == 2  # the other three were shut down


def test_outside_a_request_context_there_is_nothing_to_release():
    async def go():
        await release_request_thread()
        return await sync_to_async(threading.get_ident)()

    assert run(go())


@pytest.mark.parametrize("max_age", [0, None])
def test_a_released_thread_sees_to_its_database_connection_as_a_request_end_would(django_db_blocker, max_age):
    """Closed before the thread's next request with CONN_MAX_AGE 0 (PostgreSQL's pool takes it
    back); kept, the same connection, when persistent (SQLite's setting)."""
    threads = ThreadPool()
    with conn_max_age(max_age, django_db_blocker):
        opened, after = run(connection_across_two_requests(threads, release=True))
    assert opened is not None
    assert after is (None if max_age == 0 else opened)
    assert threads.made == 1


@pytest.mark.parametrize("max_age", [0, None])
def test_a_released_thread_is_woken_to_close_only_where_connections_do_not_persist(
    django_db_blocker, monkeypatch, max_age
):
    """With persistent connections (SQLite's setting) the close would find nothing to do: the
    worker is not woken for it (issue 14: one thread wake-up less per stream)."""
    import chat.request_thread

    closes = []
    monkeypatch.setattr(chat.request_thread, "close_old_connections", lambda: closes.append(1))
    threads = ThreadPool()
    with conn_max_age(max_age, django_db_blocker):
        opened, after = run(connection_across_two_requests(threads, release=True))
    assert closes == ([1] if max_age == 0 else [])
    if max_age is None:
        assert opened is not None and after is opened  # kept for the thread's next request


def test_a_worker_the_pool_lets_go_closes_its_connection_first(django_db_blocker):
    from django.db import connection, connections

    threads = ThreadPool(keep=0)  # every worker given back is let go

    def open_one():
        connection.ensure_connection()
        return connections["default"]  # this thread's wrapper, not the per-thread proxy

    async def go():
        async with request_context(threads):
            return await sync_to_async(open_one)()

    with conn_max_age(None, django_db_blocker):
        worker_connection = run(go())
    for _ in range(100):  # the close runs on the worker as it shuts down
        if worker_connection.connection is None:
            break
        threading.Event().wait(0.02)
    assert worker_connection.connection is None


def test_djangos_request_started_receivers_run_on_the_requests_thread_ahead_of_its_first_call(
    django_db_blocker,
):
    """Taken over (the chat app's lifespan does it), the signal has no receiver left to hop to
    a thread for, and they still see to the thread's connections: one left open by an earlier
    request on that worker is closed (CONN_MAX_AGE 0) before the new request's first call."""
    from django.core.signals import request_started
    from django.db import close_old_connections, reset_queries

    from chat.request_thread import give_back_request_started, take_over_request_started

    threads = ThreadPool()
    take_over_request_started()
    try:
        sync_receivers = request_started._live_receivers(None)[0]
        assert close_old_connections not in sync_receivers and reset_queries not in sync_receivers
        with conn_max_age(0, django_db_blocker):
            # The first request's connection left open: no release, no request_finished.
            first, second = run(connection_across_two_requests(threads, release=False))
    finally:
        give_back_request_started()
    assert first is not None and second is None
    assert close_old_connections in request_started._live_receivers(None)[0]  # given back
