"""CHAT_MAX_OUTPUT_TOKENS as a safety net around every provider (issue 9: a rambling model never ends).

Each provider also sends the limit to its server, which ends the reply there with its own
usage. This net is for a server that ignores the parameter, or a provider that has none: a
small local model stuck in a loop would otherwise stream until its context is full, minutes
later. It counts text deltas, which these servers send about one token at a time and never
less than one token, so a server that honours the limit ends first and is never cut short.

Reasoning deltas count too (issue 12): reasoning tokens are output tokens, which both vendors
count in their own limits. The count runs over the whole reply, across its tool rounds (one
provider object serves one reply). A reply (chat/replies/generation.py) reads the provider
inside, through its tool rounds if it has any (chat/tools/rounds.py), and counts with `past`
as it goes, one generator less per token; anything else that streams from the provider (a
title) goes through `stream`.
"""

import logging
from collections.abc import AsyncIterator
from contextlib import aclosing

from chat import conf
from chat.providers.base import Finish, Prompt, Provider, Reasoning

log = logging.getLogger("chat.providers")

LENGTH = "length"


def max_output_tokens() -> int:
    return conf.get_int("CHAT_MAX_OUTPUT_TOKENS")


class OutputLimit(Provider):
    """A provider's replies, ended with finish_reason `length` past CHAT_MAX_OUTPUT_TOKENS deltas."""

    def __init__(self, inner: Provider) -> None:
        super().__init__(inner.model)
        self.inner = inner
        self.name = inner.name
        self.deltas = 0  # over every round of the reply

    def past(self, item: object, limit: int) -> bool:
        """Counts a text or reasoning delta: True once the reply is past `limit` (cut it there)."""
        if isinstance(item, str) and item or isinstance(item, Reasoning) and item.text:
            self.deltas += 1
            return self.deltas > limit
        return False

    def cut(self, limit: int) -> Finish:
        """The end of a reply cut at `limit`."""
        log.warning(
            "%s model %r went past CHAT_MAX_OUTPUT_TOKENS (%d): reply cut", self.name, self.model, limit
        )
        # The server's own count comes at the end of a reply: none came.
        return Finish(reason=LENGTH, usage=None)

    async def stream(self, prompt: Prompt) -> AsyncIterator[str | Finish]:
        limit = max_output_tokens()
        cut = False
        # aclosing: leaving early closes the provider's stream, and with it the upstream response.
        async with aclosing(self.inner.stream(prompt)) as stream:
            async for item in stream:
                if self.past(item, limit):
                    cut = True
                    break
                yield item
        if cut:
            yield self.cut(limit)


def limited(provider: Provider) -> Provider:
    return provider if isinstance(provider, OutputLimit) else OutputLimit(provider)
