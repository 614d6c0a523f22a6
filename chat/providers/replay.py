"""A stored answer told again: the reply path of a cache hit (chat/answercache.py).

It streams like a model, in pieces at a brisk pace (CHAT_CACHE_PIECE_INTERVAL), so that a
cached reply is stored, followed, resumed and stopped like any other; it costs no tokens.
"""

import asyncio
import re
from collections.abc import AsyncIterator, Iterator

from chat import conf
from chat.providers.base import Finish, Prompt, Provider, Usage

_WORD = re.compile(r"\s*\S+|\s+$")
PIECE_CHARS = 24


def pieces(text: str, size: int = PIECE_CHARS) -> Iterator[str]:
    """Whole words, about `size` characters at a time; joined they give `text` back exactly."""
    piece = ""
    for match in _WORD.finditer(text):
        piece += match.group()
        if len(piece) >= size:
            yield piece
            piece = ""
    if piece:
        yield piece


class ReplayProvider(Provider):
    name = "cache"
    cached = True

    def __init__(self, text: str, finish_reason: str | None) -> None:
        super().__init__("cache")
        self.text = text
        self.finish_reason = finish_reason

    async def stream(self, prompt: Prompt) -> AsyncIterator[str | Finish]:
        interval = float(conf.get("CHAT_CACHE_PIECE_INTERVAL") or 0)
        for i, piece in enumerate(pieces(self.text)):
            if i:
                await asyncio.sleep(interval)
            yield piece
        yield Finish(reason=self.finish_reason, usage=Usage(input_tokens=0, output_tokens=0))
