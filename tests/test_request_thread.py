"""A request's sync work on a pooled thread (chat/request_thread.py), given back when its stream starts."""

import asyncio
import threading

from asgiref.sync import sync_to_async

from chat.request_thread import ThreadPool, release_request_thread, request_context


def run(coro):
    return asyncio.run(asyncio.wait_for(coro, 10))


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


def test_a_released_thread_has_closed_its_database_connection_before_its_next_request(django_db_blocker):
    from django.db import connection

    threads = ThreadPool()

    def connect() -> bool:
        connection.ensure_connection()
        return connection.connection is not None

    def connected() -> bool:
        return connection.connection is not None

    async def go():
        async with request_context(threads):
            opened = await sync_to_async(connect)()
            await release_request_thread()
        async with request_context(threads):  # the same worker, from the pool
            return opened, await sync_to_async(connected)()

    with django_db_blocker.unblock():
        opened, still = run(go())
    assert opened and not still
    assert threads.made == 1
