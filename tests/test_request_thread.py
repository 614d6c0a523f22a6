"""The asgiref workaround (chat/request_thread.py): fails loudly if asgiref changes what it uses."""

import asyncio
import threading
import weakref
from contextvars import ContextVar

from asgiref.sync import SyncToAsync, ThreadSensitiveContext, sync_to_async

from chat.request_thread import _request_executor, release_request_thread


def test_asgiref_still_keeps_a_thread_per_request_where_we_look():
    assert isinstance(SyncToAsync.thread_sensitive_context, ContextVar)
    assert isinstance(SyncToAsync.context_to_thread_executor, weakref.WeakKeyDictionary)


def test_the_request_thread_is_released_and_a_later_sync_call_gets_a_new_one():
    async def go():
        async with ThreadSensitiveContext():
            first = await sync_to_async(threading.get_ident)()
            context, executor = _request_executor()
            assert executor is not None  # asgiref made this request an executor of its own
            assert await sync_to_async(threading.get_ident)() == first  # and keeps it
            await release_request_thread()
            assert context not in SyncToAsync.context_to_thread_executor
            assert executor._shutdown
            later = await sync_to_async(threading.get_ident)()
            return first, later

    first, later = asyncio.run(asyncio.wait_for(go(), 5))
    assert first != later


def test_outside_a_request_there_is_nothing_to_release():
    async def go():
        await release_request_thread()
        return _request_executor()

    assert asyncio.run(asyncio.wait_for(go(), 5)) == (None, None)
