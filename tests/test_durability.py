"""Nothing is lost: many replies at once on SQLite, bounded writes, no leaks, dead replies recovered."""

import asyncio
import gc
import os
import threading
import time
from datetime import timedelta

import httpx
from django.conf import settings as django_settings
from django.db import connection
from django.utils import timezone

from chat import db
from chat.models import Conversation, Message
from chat.providers.demo import demo_tokens
from chat.replies import generation
from chat.replies.stale import replies_recover_stale
from chat.threads import IDLE_KEPT
from tests.sse_client import events, stream_new_replies, text_of


def test_200_replies_streaming_at_once_on_sqlite_all_finish_and_are_saved(tab, settings, caplog):
    settings.CHAT_DEMO_RATE = 40
    settings.CHAT_DEMO_TOKENS = 40
    results = asyncio.run(
        stream_new_replies(tab.http.base_url, 200, tab.http.cookies, tab.csrf["X-CSRFToken"], timeout=90)
    )
    assert len(results) == 200
    for i, received in enumerate(results):
        assert received[-1].event == "done", received[-3:]
        assert received[-1].json["status"] == "complete"
        stored = Message.objects.get(pk=received[1].json["message_id"])
        assert stored.status == "complete"
        assert text_of(received) == stored.content == "".join(demo_tokens(f"question {i}", 40))
    assert Message.objects.filter(role="assistant", status="complete").count() == 200
    assert "database is locked" not in caplog.text


def install_write_counter() -> None:
    with connection.cursor() as cursor:
        cursor.execute("CREATE TABLE IF NOT EXISTS test_writes (message_id TEXT, op TEXT)")
        for op in ("INSERT", "UPDATE"):
            cursor.execute(
                f"CREATE TRIGGER IF NOT EXISTS test_count_{op.lower()} AFTER {op} ON chat_message "
                f"BEGIN INSERT INTO test_writes VALUES (NEW.id, '{op}'); END"
            )


def remove_write_counter() -> None:
    with connection.cursor() as cursor:
        cursor.execute("DROP TRIGGER IF EXISTS test_count_insert")
        cursor.execute("DROP TRIGGER IF EXISTS test_count_update")
        cursor.execute("DROP TABLE IF EXISTS test_writes")


def writes_of(message_id: str) -> int:
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT COUNT(*) FROM test_writes WHERE message_id = %s", [message_id.replace("-", "")]
        )
        return cursor.fetchone()[0]


def test_a_reply_writes_the_database_a_bounded_number_of_times_never_per_token(tab, settings):
    """Counted by the database itself (triggers), whatever connection or thread writes."""
    install_write_counter()
    try:
        interval = settings.CHAT_CHECKPOINT_INTERVAL
        for rate, tokens in [(0, 2000), (500, 400)]:  # flat out, and ~0.8 s at 500 tokens/s
            settings.CHAT_DEMO_RATE, settings.CHAT_DEMO_TOKENS = rate, tokens
            sent = tab.send("count my writes")
            mid, cid = sent["assistant_message"]["id"], sent["assistant_message"]["conversation_id"]
            done = tab.wait_finished(mid, cid)
            assert done["status"] == "complete" and done["usage"]["output_tokens"] == tokens
            duration = Message.objects.get(pk=mid).duration_ms / 1000
            # create (1) + a checkpoint per interval elapsed + the final save (1)
            bound = 1 + int(duration / interval) + 1 + 1
            writes = writes_of(mid)
            assert 2 <= writes <= bound, (writes, bound, duration)
            assert writes < tokens / 20
    finally:
        remove_write_counter()


def open_connections() -> int:
    """Django database connections open in this process, in any thread (alive or not)."""
    from django.db.backends.base.base import BaseDatabaseWrapper

    return sum(1 for o in gc.get_objects() if isinstance(o, BaseDatabaseWrapper) and o.connection is not None)


def open_db_files() -> int:
    name = str(django_settings.DATABASES["default"]["NAME"])
    count = 0
    for fd in os.listdir("/proc/self/fd"):
        try:
            if os.readlink(f"/proc/self/fd/{fd}").startswith(name):
                count += 1
        except OSError:
            pass
    return count


def test_hundreds_of_replies_leave_threads_and_connections_flat(tab, settings):
    settings.CHAT_DEMO_RATE, settings.CHAT_DEMO_TOKENS = 0, 30

    def batch(n: int) -> None:
        results = asyncio.run(
            stream_new_replies(tab.http.base_url, n, tab.http.cookies, tab.csrf["X-CSRFToken"])
        )
        assert all(r[-1].event == "done" for r in results)

    def settle() -> tuple[int, int, int]:
        time.sleep(0.3)  # let the last requests' threads end
        return threading.active_count(), open_connections(), open_db_files()

    # Warm up at the same concurrency: the writer threads connect, and SQLite keeps the file
    # handles of connections closed while others hold locks, for reuse (a high-water mark).
    batch(50)
    threads_before, connections_before, files_before = settle()
    for _ in range(6):
        batch(50)
    threads_after, connections_after, files_after = settle()
    assert Message.objects.filter(role="assistant", status="complete").count() == 350
    assert connections_before > 0
    assert threads_after <= threads_before + 1, (threads_before, threads_after)
    assert connections_after <= connections_before + 1, (connections_before, connections_after)
    # File handles may rise to the peak concurrency seen, never with the number of replies.
    assert files_after <= files_before + 50, (files_before, files_after)


def make_reply(*, content: str = "", age: float = 0.0) -> Message:
    conversation = Conversation.objects.create(model="demo", visitor="x")
    return Message.objects.create(
        conversation=conversation,
        role="assistant",
        status="streaming",
        model="demo",
        content=content,
        updated_at=timezone.now() - timedelta(seconds=age),
    )


def test_a_reply_left_streaming_by_a_dead_process_is_marked_interrupted(transactional_db, settings):
    settings.CHAT_CHECKPOINT_INTERVAL, settings.CHAT_STALE_INTERVALS = 0.1, 5
    dead = make_reply(content="half an ans", age=60)
    live = make_reply(content="still going", age=0.05)  # another process checkpointed just now
    assert replies_recover_stale() == 1
    dead.refresh_from_db()
    live.refresh_from_db()
    assert (dead.status, dead.content) == ("interrupted", "half an ans")
    assert live.status == "streaming"


def test_the_running_server_sweeps_dead_replies_by_itself(server, settings):
    settings.CHAT_CHECKPOINT_INTERVAL, settings.CHAT_STALE_INTERVALS = 0.05, 4
    dead = make_reply(content="lost", age=60)
    server.call(asyncio.sleep(0))  # the sweeper runs on the server's loop every 0.1 s
    deadline = time.monotonic() + 10
    while Message.objects.get(pk=dead.pk).status == "streaming" and time.monotonic() < deadline:
        time.sleep(0.02)
    assert Message.objects.get(pk=dead.pk).status == "interrupted"


def test_a_reply_generated_elsewhere_is_followed_through_its_checkpoints(server, settings):
    """No event log here knows the reply: the stream follows the database, then ends."""
    settings.CHAT_CHECKPOINT_INTERVAL = 0.02
    # The reply is nobody's: the sweeper must not take it for a dead process's while the test
    # writes its checkpoints by hand (a loaded machine can take longer than 10 intervals).
    settings.CHAT_STALE_INTERVALS = 1000
    reply = make_reply()
    with httpx.Client(base_url=server.url) as client:
        # Own the conversation through a session of this client.
        client.get("/")
        created = client.post(
            "/api/conversations", json={}, headers={"X-CSRFToken": client.cookies["csrftoken"]}
        )
        Conversation.objects.filter(pk=reply.conversation_id).update(
            visitor=Conversation.objects.get(pk=created.json()["id"]).visitor
        )
        received = []
        with client.stream("GET", f"/api/messages/{reply.pk}/stream") as response:
            for event in events(response.iter_lines()):
                received.append(event)
                if event.event == "status" and event.json == {"state": "thinking"}:
                    Message.objects.filter(pk=reply.pk).update(content="Hello", updated_at=timezone.now())
                elif event.event == "message" and event.json["text"] == "Hello":
                    Message.objects.filter(pk=reply.pk).update(content="Hello world", status="complete")
                elif event.event in ("done", "error"):
                    break
    # issue 12: `writing` says the answer's text begins.
    assert [e.event for e in received] == ["retry", "start", "status", "status", "message", "message", "done"]
    assert received[3].json == {"state": "writing"}
    assert text_of(received) == "Hello world"
    assert [e.id for e in received if e.event == "message"] == ["5", "11"]


def test_generation_does_not_run_on_request_threads(tab):
    sent = tab.send("where do you write?")
    tab.wait_finished(sent["assistant_message"]["id"], sent["assistant_message"]["conversation_id"])
    names = {t.name for t in threading.enumerate()}
    assert any(n.startswith("chat-db") for n in names)
    assert db.executor()._max_workers == 1  # SQLite: one writer thread for every reply
    assert not generation.running_ids()


def test_open_streams_hold_no_thread_and_no_database_connection(tab, settings):
    """Sixty idle streams must not hold sixty database connections (a PostgreSQL pool of ten
    would be emptied by ten), nor sixty threads: each stream lets its request's connection and
    thread go once it is open (chat/threads.py), so the threads stay within the pool's bound."""
    settings.CHAT_DEMO_RATE = 0.01  # the first token in 100 s: the streams stay open and idle
    settings.CHAT_HEARTBEAT_INTERVAL = 0.2
    count = 60

    async def open_streams() -> tuple[int, int, int]:
        async with httpx.AsyncClient(
            base_url=tab.http.base_url,
            cookies=tab.http.cookies,
            timeout=30,
            limits=httpx.Limits(max_connections=count + 5),
        ) as client:
            responses, readers = [], []
            for i in range(count):
                # Half open with the send, half follow a reply sent before (its view reads the
                # reply on the request's thread, with that thread's connection).
                if i % 2:
                    request = client.build_request(
                        "POST",
                        "/api/conversations",
                        json={"content": f"idle {i}"},
                        headers={"Accept": "text/event-stream", "X-CSRFToken": tab.csrf["X-CSRFToken"]},
                    )
                else:
                    request = client.build_request("GET", f"/api/messages/{sent.pop()}/stream")
                responses.append(await client.send(request, stream=True))
            # Every stream has started: read up to its first heartbeat, and keep its reader
            # (one dropped would close its connection: the client hanging up).
            for response in responses:
                lines = response.aiter_lines()
                readers.append(lines)
                async for line in lines:
                    if line.startswith(": ping"):
                        break
            pinged = 0
            for lines in readers:  # still open: the next heartbeat comes
                async for line in lines:
                    if line.startswith(": ping"):
                        pinged += 1
                        break
            counts = threading.active_count(), open_db_files(), pinged
            for response in responses:
                await response.aclose()
            return counts

    sent = [tab.send(f"idle {i}")["assistant_message"]["id"] for i in range(count // 2)]
    threads_before, files_before = threading.active_count(), open_db_files()
    threads_open, files_open, pinged = asyncio.run(asyncio.wait_for(open_streams(), 60))
    assert pinged == count
    assert files_open <= files_before + 6, (files_before, files_open)
    assert threads_open <= threads_before + IDLE_KEPT + 3, (threads_before, threads_open)
    assert len(generation.running_ids()) == count


def test_an_idle_reply_is_kept_alive_and_its_text_checkpointed(tab, settings):
    settings.CHAT_CHECKPOINT_INTERVAL, settings.CHAT_STALE_INTERVALS = 0.05, 6
    from tests.fakes import gate, script

    sent = tab.send(script({"say": "partial"}, {"gate": "idle"}, {"say": "!"}), model="script:fake")
    mid = sent["assistant_message"]["id"]
    deadline = time.monotonic() + 10
    while Message.objects.get(pk=mid).content != "partial" and time.monotonic() < deadline:
        time.sleep(0.02)
    first = Message.objects.get(pk=mid)
    assert first.content == "partial" and first.status == "streaming"
    time.sleep(0.5)  # ten intervals: longer than the stale limit of six
    later = Message.objects.get(pk=mid)
    assert later.status == "streaming" and later.updated_at > first.updated_at  # touched, not swept
    gate("idle").set()
    assert tab.wait_finished(mid, sent["assistant_message"]["conversation_id"])["content"] == "partial!"


def test_a_checkpoint_round_writes_in_chunks_that_let_other_writes_in_between(transactional_db, monkeypatch):
    """checkpoint_once: one transaction per CHUNK replies, one after another, so a send's write
    on the same writer thread waits for one chunk at most; a reply that ended during the round
    is left to its own final save."""
    from chat.replies import checkpoints

    conversation = Conversation.objects.create(visitor="v", model="demo")
    replies = [
        Message.objects.create(conversation=conversation, role="assistant", status="streaming")
        for _ in range(5)
    ]
    engine = generation.Engine()
    for i, reply in enumerate(replies):
        live = engine.live[str(reply.pk)] = generation._Live()
        live.text.append(f"text {i}")
    monkeypatch.setattr(checkpoints, "CHUNK", 2)
    # One writer thread, as on SQLite, the suite's (PostgreSQL's four would run the send beside a chunk).
    assert db.executor()._max_workers == 1
    order: list[str] = []  # as the writer thread runs them
    real_run_to_end, real_save_batch = db.run_to_end, checkpoints._save_batch

    def save_batch(changed, idle, steps):
        order.append(f"chunk of {len(changed)}")
        return real_save_batch(changed, idle, steps)

    async def run_to_end(fn, *args, **kwargs):
        if fn is save_batch and not order:  # the first chunk queued; meanwhile, a send's write
            asyncio.get_running_loop().create_task(db.run(order.append, "a send"))
            engine.live.pop(str(replies[-1].pk))  # and the last reply ends
        return await real_run_to_end(fn, *args, **kwargs)

    monkeypatch.setattr(checkpoints, "_save_batch", save_batch)
    monkeypatch.setattr(checkpoints.db, "run_to_end", run_to_end)
    asyncio.run(checkpoints.checkpoint_once(engine))
    assert order == ["chunk of 2", "a send", "chunk of 2"]
    stored = {m.pk: m.content for m in Message.objects.filter(conversation=conversation)}
    assert [stored[r.pk] for r in replies] == ["text 0", "text 1", "text 2", "text 3", ""]


def test_on_sqlite_the_writer_threads_leave_the_log_to_the_checkpointer(transactional_db):
    """The writer threads' connections do not copy the write-ahead log into the database file
    at a commit (a stall for the next write); the checkpointer does, from another thread."""
    from chat.replies.checkpoints import wal_checkpoint  # the suite runs on SQLite (tests/settings.py)

    def autocheckpoint() -> int:
        with connection.cursor() as cursor:
            cursor.execute("PRAGMA wal_autocheckpoint")
            return cursor.fetchone()[0]

    conversation = Conversation.objects.create(visitor="v", model="demo")

    def write() -> int:
        Message.objects.create(conversation=conversation, role="user", content="x" * 10_000)
        return autocheckpoint()

    async def writes() -> list[int]:
        return [await db.run(write) for _ in range(20)]

    assert set(asyncio.run(writes())) == {0}  # on the writer thread(s): off
    assert autocheckpoint() == 1000  # elsewhere: SQLite's default
    # The suite's live server (if an earlier test started it) copies the log from a thread of
    # its own every 0.2 s: a copy that meets it is busy, and is tried again.
    for _ in range(20):
        busy, frames, copied = asyncio.run(asyncio.to_thread(wal_checkpoint))
        if not busy:
            break
        time.sleep(0.05)
    assert busy == 0 and frames > 0 and copied == frames


def test_a_checkpoint_writes_only_live_replies_and_names_those_stopped_or_deleted(transactional_db):
    """_save_checkpoints: a reply asked to stop (from another process) or deleted is not
    written and is returned, to be stopped; every other is written, texts, steps and touches,
    whether or not such a reply is among them."""
    from chat.replies.checkpoints import _save_checkpoints

    conversation = Conversation.objects.create(visitor="v", model="demo")

    def reply(**fields) -> str:
        return str(Message.objects.create(conversation=conversation, role="assistant", **fields).pk)

    live, idle, stopped, idle_stopped = (reply(status="streaming", content="old") for _ in range(4))
    Message.objects.filter(pk__in=[stopped, idle_stopped]).update(stop_requested=True)
    deleted = reply(status="streaming")
    Message.objects.filter(pk=deleted).delete()
    Message.objects.filter(pk=idle).update(status="interrupted")  # a sweeper took it for dead
    steps = {live: {"steps": [{"kind": "tool", "name": "t"}]}, stopped: {"steps": [{"kind": "x"}]}}

    # All alive: nothing to stop.
    assert _save_checkpoints({live: "new"}, [idle], steps) == set()
    rows = {str(m.pk): m for m in Message.objects.filter(conversation=conversation)}
    assert rows[live].content == "new" and rows[live].steps == steps[live]["steps"]
    assert rows[idle].status == "streaming" and rows[idle].content == "old"

    gone = _save_checkpoints(
        {live: "newer", stopped: "not kept", deleted: "lost"}, [idle, idle_stopped], steps
    )
    assert gone == {stopped, deleted, idle_stopped}
    rows = {str(m.pk): m for m in Message.objects.filter(conversation=conversation)}
    assert rows[live].content == "newer"
    assert rows[stopped].content == "old" and rows[stopped].steps != steps[stopped]["steps"]
    assert rows[idle_stopped].content == "old"
    assert deleted not in rows
