"""The signals a host site connects to (chat/hooks.py, imported from chat.signals), sent by a
real server to real receivers, sync and async, connected as a host connects them."""

import logging
import threading
import time
import uuid
from dataclasses import dataclass, field

import pytest

from chat.models import Message
from chat.replies import generation
from chat.signals import feedback_given, reply_failed, reply_finished, reply_started
from tests.fakes import gate, script

FAKE = "script:fake"
SIGNALS = {
    "started": reply_started,
    "finished": reply_finished,
    "failed": reply_failed,
    "feedback": feedback_given,
}


@dataclass
class Received:
    """What the receivers got: (receiver kind, signal name, sender, kwargs, thread name)."""

    calls: list[tuple] = field(default_factory=list)
    changed: threading.Condition = field(default_factory=threading.Condition)
    connected: list[tuple] = field(default_factory=list)  # (signal, receiver)

    def disconnect(self) -> None:
        for signal, receiver in self.connected:
            signal.disconnect(receiver, sender=Message)

    def add(self, *call) -> None:
        with self.changed:
            self.calls.append(call)
            self.changed.notify_all()

    def of(self, reply_id: str, kind: str = "sync") -> list[tuple]:
        return [c for c in self.calls if c[0] == kind and str(c[3]["message"].pk) == reply_id]

    def wait(self, reply_id: str, count: int, kind: str = "sync") -> list[tuple]:
        """The calls for this reply once there are `count` of them (10 s at most)."""
        with self.changed:
            self.changed.wait_for(lambda: len(self.of(reply_id, kind)) >= count, timeout=10)
        return self.of(reply_id, kind)


@pytest.fixture
def received():
    """A sync and an async receiver on every signal, as a site connects them (sender=Message)."""
    got = Received()
    for name, signal in SIGNALS.items():

        def sync_receiver(sender, name=name, **kwargs):
            got.add("sync", name, sender, kwargs, threading.current_thread().name)

        async def async_receiver(sender, name=name, **kwargs):
            got.add("async", name, sender, kwargs, threading.current_thread().name)

        for receiver in (sync_receiver, async_receiver):
            signal.connect(receiver, sender=Message, weak=False)
            got.connected.append((signal, receiver))
    yield got
    got.disconnect()


def wait_for(condition, timeout: float = 10) -> bool:
    deadline = time.monotonic() + timeout
    while not condition() and time.monotonic() < deadline:
        time.sleep(0.01)
    return condition()


def send(tab, *steps: dict) -> dict:
    return tab.send(script(*steps), model=FAKE)["assistant_message"]


def test_a_finished_reply_sends_started_then_finished_with_its_usage(tab, received):
    reply = send(tab, {"say": "Twelve chars"}, {"finish": "stop", "usage": [3, 5]})
    for kind in ("sync", "async"):
        calls = received.wait(reply["id"], 2, kind)
        assert [c[1] for c in calls] == ["started", "finished"]
        (_, _, sender, started, _), (_, _, _, finished, _) = calls
        assert sender is Message
        assert started["model"] == FAKE and started["owner"].visitor and started["owner"].user_id is None
        assert str(started["conversation"].pk) == reply["conversation_id"]
        assert finished["status"] == "complete" and finished["finish_reason"] == "stop"
        assert finished["usage"] == {"input_tokens": 3, "output_tokens": 5}
        assert finished["text_length"] == len("Twelve chars") and finished["cached"] is False
        message = finished["message"]
        assert message.content == "Twelve chars" and message.status == "complete"
        assert message.output_tokens == 5
    # Sync receivers run on a thread lent by the request threads' pool, not on the event loop.
    assert {c[4].split("_")[0] for c in received.of(reply["id"])} == {"chat-request"}
    assert all(not c[4].startswith("chat-request") for c in received.of(reply["id"], "async"))
    # The response's own message was left alone: it still says what the request answered.
    assert reply["status"] == "streaming"


def test_a_failed_reply_sends_failed_and_not_finished(tab, received):
    reply = send(tab, {"say": "Half"}, {"fail": "The vendor is overloaded.", "code": "rate_limited"})
    calls = received.wait(reply["id"], 2)
    assert [c[1] for c in calls] == ["started", "failed"]
    failed = calls[1][3]
    assert failed["error"] == "The vendor is overloaded." and failed["code"] == "rate_limited"
    assert failed["text_length"] == 4 and failed["message"].status == "error"
    assert tab.wait_finished(reply["id"], reply["conversation_id"])["status"] == "error"
    assert len(received.of(reply["id"])) == 2


def test_a_stopped_and_an_interrupted_reply_each_finish_once(tab, received, server):
    name = f"hold-{uuid.uuid4().hex}"
    stopped = send(tab, {"say": "Some"}, {"gate": name})
    received.wait(stopped["id"], 1)
    assert tab.post(f"/api/messages/{stopped['id']}/stop").json()["status"] == "stopped"
    calls = received.wait(stopped["id"], 2)
    assert [c[1] for c in calls] == ["started", "finished"] and calls[1][3]["status"] == "stopped"
    assert calls[1][3]["text_length"] == 4

    interrupted = send(tab, {"say": "More"}, {"gate": name})
    received.wait(interrupted["id"], 1)
    server.call(generation.interrupt_all())
    calls = received.wait(interrupted["id"], 2)
    assert [c[1] for c in calls] == ["started", "finished"] and calls[1][3]["status"] == "interrupted"
    gate(name).set()
    assert len(received.of(stopped["id"])) == 2 and len(received.of(interrupted["id"])) == 2


def test_a_cached_answer_sends_its_signals_too(tab, received, settings):
    settings.CHAT_CACHE_TTL = 60
    settings.CHAT_CACHE_PIECE_INTERVAL = 0.001
    question = script({"say": f"unique {uuid.uuid4().hex}"}, {"finish": "stop", "usage": [2, 2]})
    first = tab.send(question, model=FAKE)["assistant_message"]
    received.wait(first["id"], 2)
    again = tab.send(question, model=FAKE)["assistant_message"]
    calls = received.wait(again["id"], 2)
    assert [c[1] for c in calls] == ["started", "finished"]
    assert calls[1][3]["cached"] is True and calls[1][3]["status"] == "complete"


def test_a_receiver_that_raises_or_hangs_does_not_break_or_hold_the_reply(tab, received, caplog):
    """A raising receiver is logged by Django and the others still run; a receiver of
    `reply_started` that blocks does not keep the reply from streaming to its end, and
    `reply_finished` still comes after it."""
    release = threading.Event()

    def raises(sender, **kwargs):
        raise RuntimeError("billing is down")

    async def raises_async(sender, **kwargs):
        raise RuntimeError("analytics is down")

    def blocks(sender, **kwargs):
        release.wait(timeout=10)

    connected = ((reply_finished, raises), (reply_finished, raises_async), (reply_started, blocks))
    for signal, receiver in connected:
        signal.connect(receiver, sender=Message, weak=False)
    try:
        with caplog.at_level(logging.ERROR, logger="django.dispatch"):
            reply = send(tab, {"say": "Still here"}, {"finish": "stop"})
            done = tab.stream(reply["id"])[-1]  # the whole reply, while `blocks` still holds
            assert done.event == "done" and done.json["status"] == "complete"
            assert "finished" not in [c[1] for c in received.of(reply["id"])]  # after `blocks`
            release.set()
            calls = received.wait(reply["id"], 2)
            # The raising receivers run beside (async) or after (sync) the recording ones.
            logged = wait_for(lambda: "billing is down" in caplog.text and "analytics is down" in caplog.text)
        assert [c[1] for c in calls] == ["started", "finished"]
        assert logged, caplog.text
        assert Message.objects.get(pk=reply["id"]).content == "Still here"
    finally:
        release.set()
        for signal, receiver in connected:
            signal.disconnect(receiver, sender=Message)


def test_feedback_given_is_sent_after_the_rating_is_committed(tab, received):
    reply = send(tab, {"say": "Rate me"}, {"finish": "stop"})
    tab.wait_finished(reply["id"], reply["conversation_id"])
    seen_in_database = []

    def reads_it_back(sender, message, **kwargs):
        seen_in_database.append(Message.objects.get(pk=message.pk).feedback_rating)

    feedback_given.connect(reads_it_back, sender=Message, weak=False)
    try:
        body = {"rating": -1, "comment": "Wrong year."}
        assert tab.post(f"/api/messages/{reply['id']}/feedback", json=body).status_code == 200
        assert tab.post(f"/api/messages/{reply['id']}/feedback", json={"rating": 0}).status_code == 200
    finally:
        feedback_given.disconnect(reads_it_back, sender=Message)
    given = [c for c in received.of(reply["id"]) if c[1] == "feedback"]
    assert [(c[3]["rating"], c[3]["comment"]) for c in given] == [(-1, "Wrong year."), (0, "")]
    assert [c[3]["rating"] for c in received.of(reply["id"], "async") if c[1] == "feedback"] == [-1, 0]
    assert seen_in_database == [-1, None]
    # A refused rating changes nothing and sends nothing.
    assert tab.post(f"/api/messages/{reply['id']}/feedback", json={"rating": 5}).status_code == 400
    assert len([c for c in received.of(reply["id"]) if c[1] == "feedback"]) == 2


def test_without_receivers_a_reply_keeps_nothing_for_them(tab, received):
    """A reply started while no site listens holds no copy of its message; one started while
    a receiver listens does."""
    name = f"hold-{uuid.uuid4().hex}"
    listened = send(tab, {"gate": name})
    received.disconnect()  # as a site with no receivers
    assert not any(signal.has_listeners(Message) for signal in SIGNALS.values())
    try:
        unheard = send(tab, {"gate": name})
        assert generation.engine.live[listened["id"]].hosts is not None
        assert generation.engine.live[unheard["id"]].hosts is None
    finally:
        gate(name).set()
    assert tab.wait_finished(unheard["id"], unheard["conversation_id"])["status"] == "complete"
