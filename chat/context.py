"""What of a conversation goes to the model: all of it, within CHAT_CONTEXT_CHARS.

The budget is in characters (about four per token in English), so it needs no tokenizer
per vendor. The oldest turns are dropped first; the system prompt and the new message never.

A long conversation is read newest first, a few rows at a time, only as far as the budget
reaches: a send costs the budget, never the conversation's length.
"""

import uuid
from collections.abc import Iterable, Iterator, Sequence

from django.db.models import Subquery

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


def turns_newest_first(
    conversation_id: uuid.UUID, leaf_id: uuid.UUID | None = None, *, seen: dict | None = None
) -> Iterator[Turn]:
    """The turns with text of the branch ending at `leaf_id` (else at the newest message),
    newest first, read FIRST_READ rows, then twice as many...

    Each read goes on from the time of the last one's oldest row, not from an offset, so a
    message saved or deleted meanwhile can neither repeat a turn nor skip one. Rows sharing
    that time may have been cut by the slice: they are left to the next read, which starts at
    that time and so has them all. Of each read, only the branch is kept: the row expected
    (the leaf, then each one's parent); other branches' rows are skipped. A parent is never
    younger than its child (chat/branches.py), so reading by time meets the branch in order,
    and the root ends the reading. `seen["leaf"]` gets the leaf's (id, created_at) once read,
    `seen["turns"]` the id of each turn yielded, in order. A user message without text is a turn
    still: it may carry files (contract v3, "Files and images").
    """
    rows_read = (
        Message.objects.filter(conversation_id=conversation_id)
        .order_by("-created_at")
        .values_list("id", "parent_id", "role", "content", "created_at")
    )
    if leaf_id is not None:  # nothing younger than the leaf is on its branch
        leaf_time = Message.objects.filter(pk=leaf_id, conversation_id=conversation_id).values("created_at")
        rows_read = rows_read.filter(created_at__lte=Subquery(leaf_time[:1]))
    expected: object = leaf_id if leaf_id is not None else _NEWEST

    def branch(rows: list[tuple]) -> Iterator[Turn]:
        nonlocal expected
        by_id = {row[0]: row for row in rows}
        if expected is _NEWEST and rows:
            expected = rows[0][0]
        while expected in by_id:
            pk, parent, role, content, at = by_id.pop(expected)
            if seen is not None:
                seen.setdefault("leaf", (pk, at))
            if role == Message.Role.USER or (content and role == Message.Role.ASSISTANT):
                if seen is not None:  # which message each turn is (its files are read for those kept)
                    seen.setdefault("turns", []).append(pk)
                yield Turn(role, content)
            expected = parent

    rows, size = list(rows_read[:FIRST_READ]), FIRST_READ
    while len(rows) == size:
        last = rows[-1][4]
        whole = len(rows)
        while whole and rows[whole - 1][4] == last:
            whole -= 1
        yield from branch(rows[:whole])
        if expected is None:  # the root is reached
            return
        # All of one time: read more at once, past the usual limit.
        size = size * 2 if whole == 0 else min(size * 2, LARGEST_READ)
        rows = list(rows_read.filter(created_at__lte=last)[:size])
    yield from branch(rows)  # the first message is reached


_NEWEST = object()  # no leaf named: the newest message is the leaf
