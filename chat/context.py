"""What of a conversation goes to the model: all of it, within CHAT_CONTEXT_CHARS.

The budget is in characters (about four per token in English), so it needs no tokenizer
per vendor. The oldest turns are dropped first; the system prompt and the new message never.

A long conversation is read newest first, a few rows at a time, only as far as the budget
reaches: a send costs the budget, never the conversation's length.
"""

import uuid
from collections.abc import Iterable, Iterator, Sequence

from django.db import connection

from chat import db
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
    that time may have been cut by the LIMIT: they are left to the next read, which starts at
    that time and so has them all. The SQL is written out: the ORM's conversion of every
    row's time costs more than the read (2.8 ms for 400 rows, against 0.7 ms).
    """
    meta, quote = Message._meta, connection.ops.quote_name
    role, content, at, conversation = (
        quote(meta.get_field(name).column) for name in ("role", "content", "created_at", "conversation")
    )
    select = (
        f"SELECT {role}, {content}, {at} FROM {quote(meta.db_table)} "
        f"WHERE {conversation} = %s AND {role} IN (%s, %s) AND {content} <> ''"
    )
    order = f" ORDER BY {at} DESC LIMIT %s"
    params = [
        meta.pk.get_db_prep_value(conversation_id, connection),
        Message.Role.USER,
        Message.Role.ASSISTANT,
    ]
    sql, until, size = select + order, [], FIRST_READ
    while True:
        rows = db.execute(connection, sql, [*params, *until, size], fetch=True)
        if len(rows) < size:  # the first message is reached
            yield from (Turn(row[0], row[1]) for row in rows)
            return
        last = rows[-1][2]
        whole = len(rows)
        while whole and rows[whole - 1][2] == last:
            whole -= 1
        yield from (Turn(row[0], row[1]) for row in rows[:whole])
        sql, until = select + f" AND {at} <= %s" + order, [connection.ops.adapt_datetimefield_value(last)]
        # All of one time: read more at once, past the usual limit.
        size = size * 2 if whole == 0 else min(size * 2, LARGEST_READ)
