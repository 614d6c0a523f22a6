"""What of a conversation goes to the model: all of it, within CHAT_CONTEXT_CHARS.

The budget is in characters (about four per token in English), so it needs no tokenizer
per vendor. The oldest turns are dropped first; the system prompt and the new message never.

A long conversation is read newest first, a few rows at a time, only as far as the budget
reaches: a send costs the budget, never the conversation's length.
"""

import uuid
from collections.abc import Iterable, Iterator, Sequence

from chat.models import Message
from chat.providers import Turn

FIRST_READ = 32  # rows; each read after it asks for twice as many, up to LARGEST_READ
LARGEST_READ = 512


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


def fit_newest(system: str, newest_first: Iterable[Turn], budget: int) -> tuple[Turn, ...]:
    """`fit` of the turns given newest first, taken only as far as the budget reaches.

    The first turn over the budget is taken too, and nothing older: `fit` stops at it, so
    the result is `fit` of the whole history.
    """
    taken: list[Turn] = []
    used = len(system)
    for turn in newest_first:
        taken.append(turn)
        used += len(turn.content)
        if used > budget:
            break
    return fit(system, taken[::-1], budget)


def turns_newest_first(conversation_id: uuid.UUID) -> Iterator[Turn]:
    """A conversation's turns with text, newest first, read FIRST_READ rows, then twice as many...

    Each read goes on from the time of the last one's oldest row, not from an offset, so a
    message saved or deleted meanwhile can neither repeat a turn nor skip one. Rows sharing
    that time may have been cut by the slice: they are left to the next read, which starts at
    that time and so has them all.
    """
    turns = (
        Message.objects.filter(
            conversation_id=conversation_id, role__in=[Message.Role.USER, Message.Role.ASSISTANT]
        )
        .exclude(content="")
        .order_by("-created_at")
        .values_list("role", "content", "created_at")
    )
    rows, size = list(turns[:FIRST_READ]), FIRST_READ
    while len(rows) == size:
        last = rows[-1][2]
        whole = len(rows)
        while whole and rows[whole - 1][2] == last:
            whole -= 1
        yield from (Turn(role, content) for role, content, _ in rows[:whole])
        # All of one time: read more at once, past the usual limit.
        size = size * 2 if whole == 0 else min(size * 2, LARGEST_READ)
        rows = list(turns.filter(created_at__lte=last)[:size])
    yield from (Turn(role, content) for role, content, _ in rows)  # the first message is reached
