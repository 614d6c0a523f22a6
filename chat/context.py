"""What of a conversation goes to the model: all of it, within CHAT_CONTEXT_CHARS.

The budget is in characters (about four per token in English), so it needs no tokenizer
per vendor. The oldest turns are dropped first; the system prompt and the new message never.
"""

from collections.abc import Sequence

from chat.providers import Turn


def fit(system: str, turns: Sequence[Turn], budget: int) -> tuple[Turn, ...]:
    """The newest turns that fit in `budget` with the system prompt, from a user turn on.

    The last turn (the new message) is always kept, even alone over the budget. The kept
    history starts with a user turn, as the vendors' APIs expect.
    """
    if not turns:
        return ()
    used = len(system) + len(turns[-1].content)
    start = len(turns) - 1
    while start > 0 and used + len(turns[start - 1].content) <= budget:
        start -= 1
        used += len(turns[start].content)
    while start < len(turns) - 1 and turns[start].role != "user":
        start += 1
    return tuple(turns[start:])
