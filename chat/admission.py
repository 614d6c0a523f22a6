"""A request that would start a reply: the limits it passes, and the cached answer it may reuse.

The view makes one (who asks, from where); the service admits it before its first write (a
refused request stores and changes nothing); the reply it starts takes over what it holds and
gives it back when it ends, however it ends (chat/replies/generation.py `_run`).
"""

import logging
import math
from collections.abc import AsyncIterator

from chat import answercache, db
from chat.eventlog import End
from chat.models import Message
from chat.providers import Prompt, Provider
from chat.providers.replay import ReplayProvider
from chat.ratelimit import Lease, Limiter, get_limiter

log = logging.getLogger("chat.admission")

CHARS_PER_TOKEN = 4  # the usage estimate when a provider reports none


def estimate_tokens(text: str) -> int:
    return math.ceil(len(text) / CHARS_PER_TOKEN)


class Admission:
    __slots__ = (  # kept by its reply for as long as it runs: no __dict__ (memory per idle stream)
        "owner",
        "ip",
        "newcomer",
        "stream",
        "use_cache",
        "admitted",
        "started_reply",
        "reply_leases",
        "stream_lease",
        "cache_key",
        "cache_shared",
        "cached",
        "limiter",
    )

    def __init__(
        self, *, owner: str, ip: str, newcomer: bool = False, stream: bool = False, cache: bool = True
    ) -> None:
        self.owner = owner  # "user:<id>" or "visitor:<token>"
        self.ip = ip
        self.newcomer = newcomer  # no session before this request: one visitor's share of the address
        self.stream = stream
        self.use_cache = cache
        self.admitted = False
        self.started_reply = False
        self.reply_leases: list[Lease] = []
        self.stream_lease: Lease | None = None
        self.cache_key: str | None = None
        self.cache_shared = False  # the key is read by other owners too (CHAT_CACHE_SCOPE=global)
        self.cached = False
        self.limiter: Limiter | None = None  # the one that counted it, which gives back its leases

    def _limiter(self) -> Limiter:
        if self.limiter is None:
            self.limiter = get_limiter()
        return self.limiter

    async def admit(self) -> None:
        """Check and count the limits; raises RateLimited. Once only (edit calls send)."""
        if self.admitted:
            return
        leases = await self._limiter().admit(
            owner=self.owner, ip=self.ip, newcomer=self.newcomer, stream=self.stream
        )
        self.admitted = True
        for lease in leases:
            if lease.key.startswith("streams/"):
                self.stream_lease = lease
            else:
                self.reply_leases.append(lease)

    async def __aenter__(self) -> "Admission":
        return self

    async def __aexit__(self, exc_type, exc, tb) -> None:
        if exc_type is not None:  # the request failed before its reply ran: give everything back
            leases = [*([] if self.started_reply else self.reply_leases), self.stream_lease]
            self.stream_lease = None
            await self._limiter().release([lease for lease in leases if lease is not None])

    async def started(self, reply_id: str, provider: Provider, prompt: Prompt) -> Provider:
        """The reply takes over the leases; a cached answer, if there is one, replaces the model."""
        self.started_reply = True
        if not self.use_cache or answercache.ttl() <= 0:
            return provider
        scope = answercache.scope_of(self.owner)
        self.cache_shared = answercache.is_shared(scope)
        self.cache_key = answercache.answer_key(provider=provider, prompt=prompt, scope=scope)
        answer = await answercache.answer_get(self.cache_key)
        if answer is None:
            return provider
        await db.run(Message.objects.filter(pk=reply_id).update, cached=True)
        self.cached = True
        return ReplayProvider(answer.text, answer.finish_reason)

    async def ended(self, *, end: End, text: str, tools_called: bool) -> None:
        """The reply ended: its leases go back, its tokens are charged (to its owner and its
        address), a complete answer is kept.

        An answer built with a tool is kept for its owner only: a tool reads its owner's data
        (the ToolContext), and the answer carries it. Never raises: the reply must still be saved.
        """
        try:
            limiter = self._limiter()
            await limiter.release(self.reply_leases)
            if not self.cached:
                reported = (end.usage or {}).get("output_tokens")
                tokens = reported if reported is not None else estimate_tokens(text)
                await limiter.charge(owner=self.owner, ip=self.ip, tokens=tokens)
            keep = end.status == Message.Status.COMPLETE and end.finish_reason == "stop"
            keep = keep and not (tools_called and self.cache_shared)
            if keep and self.cache_key is not None and not self.cached:
                await answercache.answer_set(self.cache_key, answercache.Answer(text, end.finish_reason))
        except Exception:
            log.exception("Limits or cache not updated at the end of a reply")

    def hold_stream(self, stream: AsyncIterator[bytes]) -> AsyncIterator[bytes]:
        """The reply's stream, giving back its stream lease when it closes."""
        lease, self.stream_lease = self.stream_lease, None
        return stream if lease is None else self._limiter().holding(lease, stream)
