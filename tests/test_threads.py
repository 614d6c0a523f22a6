"""Requests' sync work on threads borrowed from a pool (chat/threads.py), through asgiref's
public `ThreadSensitiveContext(executor=...)`."""

import asyncio
import threading

from asgiref.sync import sync_to_async

from chat.threads import RequestThreads, release_request_thread, request_context


def test_a_requests_sync_calls_run_on_one_thread_and_the_next_request_reuses_it():
    threads = RequestThreads(keep=4)

    async def one_request() -> set[int]:
        async with request_context(threads):
            seen = set()
            for _ in range(3):
                seen.add(await sync_to_async(threading.get_ident)())
            return seen

    async def main() -> tuple[set[int], set[int]]:
        return await one_request(), await one_request()

    first, second = asyncio.run(asyncio.wait_for(main(), 10))
    assert len(first) == 1 and first == second  # one thread per request, reused by the next
    assert threads.made == 1
    asyncio.run(threads.close())


def test_a_stream_gives_its_thread_back_and_a_later_call_borrows_one_again():
    threads = RequestThreads(keep=4)

    async def main() -> tuple[int, int]:
        async with request_context(threads) as context:
            before = await sync_to_async(threading.get_ident)()
            await release_request_thread()  # the stream is open: connections seen to, thread back
            assert context.executor.worker is None and len(threads.idle) == 1
            after = await sync_to_async(threading.get_ident)()  # the response's close, say
            return before, after

    before, after = asyncio.run(asyncio.wait_for(main(), 10))
    assert before == after and threads.made == 1
    asyncio.run(threads.close())


def test_closing_the_pool_ends_its_threads():
    threads = RequestThreads(keep=4)

    async def many() -> list[threading.Thread]:
        async def one() -> threading.Thread:
            async with request_context(threads):
                return await sync_to_async(threading.current_thread)()

        return list(await asyncio.gather(*(one() for _ in range(3))))

    workers = asyncio.run(asyncio.wait_for(many(), 10))
    assert all(worker.is_alive() for worker in workers)
    asyncio.run(threads.close())
    for worker in workers:
        worker.join(5)
    assert not any(worker.is_alive() for worker in workers)
