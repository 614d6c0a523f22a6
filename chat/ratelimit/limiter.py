"""The checks: is this request allowed to start work, and what it holds while it runs."""

import asyncio
import contextvars
import logging
import math
import time
import uuid
import weakref
from collections.abc import AsyncIterator, Awaitable
from dataclasses import astuple, dataclass, field
from typing import TypeVar

from limits import RateLimitItem

from chat import conf
from chat.errors import RateLimited
from chat.ratelimit.backends import Backend, Checks, Outcome
from chat.ratelimit.rules import Rules, attachment_rules, describe, rules

log = logging.getLogger("chat.ratelimit")
T = TypeVar("T")
F = TypeVar("F")

# Nobody knows when a reply or a stream will end; a client that waits this long and asks
# again has a fair chance, and the sentence says what to wait for.
BUSY_RETRY = 3.0
_WARN_EVERY = 30.0


@dataclass(eq=False)
class Lease:
    """One thing held at once (a reply generating, a stream open) under `key`."""

    key: str
    id: str = field(default_factory=lambda: uuid.uuid4().hex)
    released: bool = False


def in_words(seconds: float) -> str:
    seconds = max(1, math.ceil(seconds))
    for unit, size in (("day", 86400), ("hour", 3600), ("minute", 60)):
        if seconds >= 2 * size or (unit == "minute" and seconds >= 90):
            count = round(seconds / size)
            return f"{count} {unit}s"
    return "1 second" if seconds == 1 else f"{seconds} seconds"


def sliding_wait(
    item: RateLimitItem, previous: int, previous_ttl: float, current: int, current_ttl: float
) -> float:
    """Seconds until a sliding window counter allows one more hit.

    The counter (chat/ratelimit/backends.py) weighs the previous window by the part of it still
    inside the sliding window (`previous * previous_ttl / expiry`) and allows a hit while the
    weighted count is under the limit. The end of the current window is too early an answer
    when the current window alone is full; this solves for the moment instead.
    """
    expiry, limit = item.get_expiry(), item.amount
    window_left = max(current_ttl - expiry, 0.0)
    if current < limit:
        if not previous:
            return 0.0
        wait = previous_ttl - (limit - current) * expiry / previous
        if wait <= window_left:
            return max(wait, 0.0)
    # In the next window the current count becomes the previous one, weighing less and less.
    return window_left + max(expiry - limit * expiry / current, 0.0) if current else window_left


Wanted = tuple[str, Lease, int, str]  # a limit's name, the lease, how many at once, whose
Quoted = tuple[str, RateLimitItem, str, int]  # a limit's name, the quota, whose, the use to be under
Hit = tuple[str, RateLimitItem, str]  # a limit's name, the window, whose


def planned(
    current: Rules, *, owner: str, ip: str, newcomer: bool, reply: bool, stream: bool
) -> tuple[list[Wanted], list[Quoted], list[Hit]]:
    """What a request is checked against, each kind in the order its refusals are reported: an
    owner's slot or quota before its address's (the owner's own sentence is the one to act on)."""
    wanted: list[Wanted] = []
    if reply and current.replies:
        wanted.append(("replies", Lease(f"replies/{owner}"), current.replies, owner))
    if reply and current.replies_ip:
        limit = current.replies_ip_for(newcomer=newcomer)
        wanted.append(("replies_ip", Lease(f"replies_ip/{ip}"), limit, ip))
    if stream and current.streams_ip:
        wanted.append(("streams_ip", Lease(f"streams/{ip}"), current.streams_ip, ip))
    quotas: list[Quoted] = []
    if current.tokens is not None:
        quotas.append(("tokens", current.tokens, owner, current.tokens.amount))
    if current.tokens_ip is not None:
        quotas.append(("tokens_ip", current.tokens_ip, ip, current.tokens_ip_for(newcomer=newcomer)))
    hits: list[Hit] = [
        (name, item, who)
        for name, item, who in (
            ("messages_ip", current.messages_ip, ip),
            ("messages", current.messages, owner),
        )
        if item is not None
    ]
    return wanted, quotas, hits


class Limiter:
    """One per event loop and backend: the backend, and the leases this process holds
    (refreshed in the background while their holders live)."""

    def __init__(self, backend: Backend) -> None:
        self.backend = backend
        self.held: weakref.WeakSet[Lease] = weakref.WeakSet()
        self.refresher: asyncio.Task | None = None
        self._warned = 0.0

    # --- admission -------------------------------------------------------------------------

    async def admit(
        self, *, owner: str, ip: str, newcomer: bool = False, reply: bool = True, stream: bool = False
    ) -> list[Lease]:
        """Check every limit for a request that would start a reply (and open its stream).

        The checks run together, atomically (with Redis, one script): a request refused by one
        limit is still counted by the message windows that had room (an attempt is an attempt),
        and takes no slot. `newcomer`: a client without a session (no user, no visitor before
        this request), held to one visitor's share of its address (chat/ratelimit/rules.py).
        Raises RateLimited; returns the leases to release when the work ends.
        """
        current = rules()
        if not current.any:
            return []
        wanted, quotas, hits = planned(
            current, owner=owner, ip=ip, newcomer=newcomer, reply=reply, stream=stream
        )
        checks = Checks(
            quotas=tuple((item, (name, who), limit) for name, item, who, limit in quotas),
            leases=tuple((lease.key, lease.id, limit) for _, lease, limit, _ in wanted),
            hits=tuple((item, (name, who)) for name, item, who in hits),
            ttl=conf.stale_after(),
        )
        outcome: Outcome | None = await self._safely(self.backend.check(checks), None)
        if outcome is None:  # the storage is out of reach: let the request through
            return []
        if outcome.admitted:
            taken = [lease for _, lease, _, _ in wanted]
            self._hold(taken)
            return taken
        for (name, item, who, limit), ok in zip(quotas, outcome.quotas, strict=True):
            if not ok:
                await self._refuse_quota(name, item, who, limit)
        held_to_one = newcomer and current.replies_ip_for(newcomer=True) < current.replies_ip
        for (name, _, limit, who), ok in zip(wanted, outcome.leases, strict=True):
            if not ok:
                await self._refuse_busy(name, limit, who, newcomer=held_to_one)
        for (name, item, who), ok in zip(hits, outcome.hits, strict=True):
            if not ok:
                await self._refuse_window(item, name, who)
        raise RuntimeError(f"Refused by no limit: {outcome}")  # a backend answered wrong

    async def admit_upload(self, *, owner: str, ip: str) -> None:
        """Count an upload against its owner's and its address's windows (CHAT_LIMIT_ATTACHMENTS);
        raises RateLimited (`limit` "attachments" or "attachments_ip")."""
        item, item_ip = attachment_rules()
        if item is None or item_ip is None:
            return
        hits: list[Hit] = [("attachments_ip", item_ip, ip), ("attachments", item, owner)]
        checks = Checks(quotas=(), leases=(), hits=tuple((i, (name, who)) for name, i, who in hits), ttl=0)
        outcome: Outcome | None = await self._safely(self.backend.check(checks), None)
        if outcome is None or outcome.admitted:
            return
        for (name, hit_item, who), ok in zip(hits, outcome.hits, strict=True):
            if not ok:
                await self._refuse_window(hit_item, name, who)

    async def open_stream(self, *, ip: str) -> Lease | None:
        limit = rules().streams_ip
        if not limit:
            return None
        lease = Lease(f"streams/{ip}")
        if not await self._safely(self.backend.acquire(lease.key, lease.id, limit, conf.stale_after()), True):
            await self._refuse_busy("streams_ip", limit, ip)
        self._hold([lease])
        return lease

    def _hold(self, leases: list[Lease]) -> None:
        if leases:
            self.held.update(leases)
            self._ensure_refresher()

    async def _refuse_quota(self, name: str, item: RateLimitItem, who: str, limit: int) -> None:
        quota = await self._safely(self.backend.quota(item, (name, who)), None)
        wait = item.get_expiry() if quota is None else quota.renews_in
        renews = f"it renews in {in_words(wait)}"
        if name == "tokens":
            sentence = f"You have used your quota of {describe(item)} output tokens; {renews}."
        elif limit < item.amount:  # a client without a session, held to one visitor's quota
            share = describe(type(item)(limit, multiples=item.multiples))
            sentence = (
                f"Replies from your network address have used the quota of a client without a "
                f"session cookie, {share} output tokens; {renews}. A client that keeps its cookie "
                f"has a quota of its own."
            )
        else:
            sentence = (
                f"Replies from your network address have used its quota of {describe(item)} output "
                f"tokens; {renews}."
            )
        await self._refuse(name, who, wait, sentence)

    async def _refuse_window(self, item: RateLimitItem, limit: str, who: str) -> None:
        window = await self._safely(self.backend.window(item, (limit, who)), None)
        wait = item.get_expiry() if window is None else sliding_wait(item, *astuple(window))
        whose = "from your network address" if limit.endswith("_ip") else "from you"
        what = "files uploaded" if limit.startswith("attachments") else "messages"
        await self._refuse(
            limit,
            who,
            wait,
            f"Too many {what} {whose}: the limit is {describe(item)}. Try again in {in_words(wait)}.",
        )

    async def _refuse_busy(self, name: str, limit: int, who: str, *, newcomer: bool = False) -> None:
        """`newcomer`: held to one visitor's share of the address, which the sentence says."""
        if name == "replies":
            sentence = (
                f"You already have {limit} replies being written, the most at once: wait for one "
                f"to finish, or stop one, then try again."
            )
        elif name == "replies_ip":
            whose = " for clients without a session cookie" if newcomer else ""
            sentence = (
                f"{limit} replies are being written from your network address, the most at once"
                f"{whose}: wait for one to finish, then try again."
            )
        else:
            sentence = (
                f"Too many streams open from your network address (the limit is {limit}): close "
                f"some, then try again."
            )
        await self._refuse(name, who, BUSY_RETRY, sentence)

    async def _refuse(self, limit: str, who: str, wait: float, sentence: str) -> None:
        error = RateLimited(sentence, limit=limit, retry_after=wait)
        entry = {"limit": limit, "who": who, "at": time.time(), "retry_after": error.retry_after}
        await self._safely(self.backend.record_refusal(entry), None)
        raise error

    async def release(self, leases: list[Lease]) -> None:
        """Give back what is still held, in one call (with Redis, one round trip)."""
        given = [lease for lease in leases if not lease.released]
        for lease in given:
            lease.released = True
            self.held.discard(lease)
        if given:
            await self._safely(self.backend.release([(lease.key, lease.id) for lease in given]), None)

    async def charge(self, *, owner: str, ip: str | None, tokens: int) -> None:
        """Count a reply's output tokens against its owner's quota and its address's, even past them."""
        current = rules()
        quotas = [
            (item, (name, who))
            for name, item, who in (("tokens", current.tokens, owner), ("tokens_ip", current.tokens_ip, ip))
            if item is not None and who is not None
        ]
        if quotas and tokens > 0:
            await self._safely(self.backend.charge(quotas, tokens), None)

    async def holding(self, lease: Lease | None, stream: AsyncIterator[bytes]) -> AsyncIterator[bytes]:
        """The stream, with its lease released when it ends, however it ends."""
        try:
            async for chunk in stream:
                yield chunk
        finally:
            if lease is not None:
                await self.release([lease])

    # --- leases outlive nothing: refreshed while held, lapsing once their process is gone ------

    def _ensure_refresher(self) -> None:
        if self.refresher is None or self.refresher.done():
            self.refresher = asyncio.get_running_loop().create_task(
                self._refresh_forever(), name="chat-limit-leases", context=contextvars.Context()
            )

    async def _refresh_forever(self) -> None:
        while self.held:
            await asyncio.sleep(max(conf.stale_after() / 3, 0.05))
            leases = [(lease.key, lease.id) for lease in list(self.held) if not lease.released]
            try:
                await self._safely(self.backend.refresh(leases, conf.stale_after()), None)
            except Exception:
                # No request to fail here: said loudly, every time, and tried again.
                log.exception("Leases not refreshed: they lapse within the stale-reply window")

    # --- what the admin shows --------------------------------------------------------------

    async def usage(self, *, owner: str) -> dict:
        current: Rules = rules()
        result: dict = {"replies": None, "messages": None, "tokens": None}
        if current.replies:
            held = await self.backend.held(f"replies/{owner}")
            result["replies"] = {"used": held, "limit": current.replies}
        if current.messages is not None:
            item = current.messages
            window = await self.backend.window(item, ("messages", owner))
            result["messages"] = {"used": window.used(item.get_expiry()), "limit": describe(item)}
        if current.tokens is not None:
            item = current.tokens
            quota = await self.backend.quota(item, ("tokens", owner))
            result["tokens"] = {
                "used": quota.used,
                "limit": describe(item),
                "renews_in": in_words(quota.renews_in) if quota.used else None,
            }
        return result

    async def refusals(self) -> list[dict]:
        return await self.backend.refusals()

    # --- a storage out of reach lets requests through; any other error is an error ----------

    async def _safely(self, call: Awaitable[T], fallback: F) -> T | F:
        """`call`'s result; `fallback` if the backend says its storage is out of reach (Redis
        down: the app keeps serving, unlimited, and says so). Any other exception propagates:
        a limit that fails open on a bug turns itself off without a word."""
        try:
            return await call
        except Exception as exc:
            if not self.backend.outage(exc):
                raise
            now = time.monotonic()
            if now - self._warned > _WARN_EVERY:
                self._warned = now
                log.warning("Limits not checked (their storage failed: %r); requests are let through", exc)
            return fallback
