"""An event log in this process's memory: one server process (one uvicorn worker)."""

import asyncio
from bisect import bisect_left, bisect_right

from chat import conf
from chat.eventlog.base import APPROVAL, End, Event, EventLog, ReasoningText, Status, Step, Subscription, Text
from chat.runtime import runtime


class _Deadlines:
    """One timer for all the waiting subscribers of a loop: wakes those whose wait is over.

    A timer per wait (asyncio.timeout) costs a heap entry for every token sent; the heartbeat
    needs no such precision: a quarter of the shortest timeout asked for is enough.
    """

    def __init__(self) -> None:
        self.waiting: dict[asyncio.Future, float] = {}
        self.period = 1.0
        self.task: asyncio.Task | None = None

    def watch(self, future: asyncio.Future, timeout: float) -> None:
        loop = future.get_loop()
        self.waiting[future] = loop.time() + timeout
        self.period = min(self.period, max(timeout / 4, 0.005))
        if self.task is None or self.task.done():
            # The runtime's: not in the context of the request that first waited (it outlives it).
            self.task = runtime.spawn(self._tick(), name="chat-eventlog-deadlines", loop=loop)

    async def _tick(self) -> None:
        loop = asyncio.get_running_loop()
        while self.waiting:
            await asyncio.sleep(self.period)
            now = loop.time()
            for future, deadline in list(self.waiting.items()):
                if future.done():
                    del self.waiting[future]
                elif deadline <= now:
                    del self.waiting[future]
                    future.set_result(False)


_deadlines_of = runtime.per_loop(lambda loop: _Deadlines())


class _Reply:
    __slots__ = ("chunks", "ends", "length", "status", "end", "waiters", "steps", "step_ends", "step_offsets")

    def __init__(self) -> None:
        self.chunks: list[str] = []
        self.ends: list[int] = []  # ends[i]: text length once chunks[i] is appended
        self.length = 0  # the text's length: ends[-1]
        # Reasoning and tool steps (issue 12), in order, with their places (eventlog/base.py).
        self.steps: list[Step] = []
        self.step_ends: list[int] = []  # step_ends[i] == steps[i].side
        self.step_offsets: list[int] = []  # step_offsets[i] == steps[i].offset
        self.status: Status | None = None
        self.end: End | None = None
        self.waiters: list[MemorySubscription] = []  # those waiting in next() for a change

    def text_from(self, offset: int) -> str:
        i = bisect_right(self.ends, offset)
        if i == len(self.chunks):
            return ""
        skip = offset - (self.ends[i] - len(self.chunks[i]))
        return self.chunks[i][skip:] + "".join(self.chunks[i + 1 :])

    def side_before(self, offset: int) -> int:
        """The steps' length once the text reached `offset`: the steps that came before it."""
        k = bisect_left(self.step_offsets, offset)
        return self.step_ends[k - 1] if k else 0

    def notify(self) -> None:
        waiters, self.waiters = self.waiters, []
        for subscription in waiters:
            subscription.changed()


class MemorySubscription(Subscription):
    def __init__(self, reply: _Reply, offset: int, side: int | None = None) -> None:
        self.reply = reply
        self.offset = offset
        self.side = reply.side_before(offset) if side is None else side
        self.status_seen: Status | None = None
        self.future: asyncio.Future | None = None  # set while next() waits

    def changed(self) -> None:
        """The reply changed while next() waited: wake it."""
        future = self.future
        if future is not None and not future.done():
            future.set_result(True)

    def _next_step(self) -> Step | None:
        """The step due before any more text, reasoning deltas merged while they lag."""
        reply = self.reply
        i = bisect_right(reply.step_ends, self.side)
        if i == len(reply.steps) or reply.step_offsets[i] > self.offset:
            return None
        step = reply.steps[i]
        if not isinstance(step, ReasoningText):
            self.side = step.side
            return step
        skip = max(self.side - (step.side - len(step.text)), 0)
        parts = [step.text[skip:]]
        j = i + 1
        while (
            j < len(reply.steps)
            and isinstance(reply.steps[j], ReasoningText)
            and reply.step_offsets[j] == step.offset
        ):
            parts.append(reply.steps[j].text)
            j += 1
        self.side = reply.step_ends[j - 1]
        return ReasoningText(step.offset, self.side, "".join(parts))

    def _status(self, caught_up: bool) -> Status | None:
        """The reply's status, if this subscriber is to hear it now: a client with nothing yet
        hears the state first; an approval (issue 31) goes to everyone once caught up with
        the steps and text before it, and the status that ends it to those who heard it."""
        status = self.reply.status
        if status is None or status == self.status_seen:
            self.status_seen = status  # the same again: nothing new to say
            return None
        if status.state == APPROVAL:
            if not caught_up:
                return None
            self.status_seen = status
            return status
        previous, self.status_seen = self.status_seen, status
        first = self.offset == 0 and self.side == 0
        return status if first or (previous is not None and previous.state == APPROVAL) else None

    def _pending(self) -> Event | None:
        reply = self.reply
        if reply.status is not self.status_seen and (status := self._status(False)) is not None:
            return status
        if reply.steps and (step := self._next_step()) is not None:
            return step
        stop = reply.length
        if reply.steps and (i := bisect_right(reply.step_ends, self.side)) < len(reply.steps):
            stop = min(stop, reply.step_offsets[i])  # the text up to the next step
        if stop > self.offset:
            last = reply.chunks[-1]
            # Per token, the usual case: only the newest chunk is new to this subscriber.
            text = last if reply.length - len(last) == self.offset else reply.text_from(self.offset)
            if len(text) > stop - self.offset:
                text = text[: stop - self.offset]
            self.offset = stop
            return Text(self.offset, text)
        if reply.status is not self.status_seen and reply.end is None and (status := self._status(True)):
            return status
        if reply.end is not None:
            return reply.end
        return None

    async def next(self, timeout: float) -> Event | None:
        event = self._pending()
        if event is not None or timeout <= 0:
            return event
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while event is None:
            left = deadline - loop.time()
            if left <= 0:
                return None
            future = self.future = loop.create_future()
            self.reply.waiters.append(self)
            deadlines = _deadlines_of(loop)
            deadlines.watch(future, left)
            try:
                woken = await future
            finally:
                self.future = None
            if not woken:  # the deadline, not a change: this waiter goes
                if self in self.reply.waiters:  # (a change may have come since, and taken it)
                    self.reply.waiters.remove(self)
                return self._pending()
            deadlines.waiting.pop(future, None)  # keeps the ticker's scan to the waiting ones
            event = self._pending()
        return event


class MemoryEventLog(EventLog):
    def __init__(self) -> None:
        self._replies: dict[str, _Reply] = {}

    def _reply(self, reply_id: str) -> _Reply:
        reply = self._replies.get(reply_id)
        if reply is None:
            reply = self._replies[reply_id] = _Reply()
        return reply

    async def open(self, reply_id: str) -> None:
        self._reply(reply_id)

    async def append(self, reply_id: str, text: str) -> int:
        return self.append_now(reply_id, text)

    def append_now(self, reply_id: str, text: str) -> int:
        reply = self._replies.get(reply_id) or self._reply(reply_id)  # per token: no call to make
        reply.chunks.append(text)
        reply.length += len(text)
        reply.ends.append(reply.length)
        reply.notify()
        return reply.length

    async def append_step(self, reply_id: str, step: Step) -> None:
        reply = self._reply(reply_id)
        reply.steps.append(step)
        reply.step_ends.append(step.side)
        reply.step_offsets.append(step.offset)
        reply.notify()

    async def set_status(self, reply_id: str, state: str, detail: dict | None = None) -> None:
        reply = self._reply(reply_id)
        reply.status = Status(state, detail)
        reply.notify()

    async def end(self, reply_id: str, end: End) -> None:
        reply = self._reply(reply_id)
        reply.end = end
        reply.notify()
        loop = asyncio.get_running_loop()
        loop.call_later(conf.get_float("CHAT_LOG_GRACE"), self._forget, reply_id, reply)

    def _forget(self, reply_id: str, reply: _Reply) -> None:
        if self._replies.get(reply_id) is reply:
            del self._replies[reply_id]

    async def subscribe(self, reply_id: str, offset: int, side: int | None = None) -> Subscription | None:
        reply = self._replies.get(reply_id)
        return MemorySubscription(reply, offset, side) if reply is not None else None
