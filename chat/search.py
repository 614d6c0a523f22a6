"""Search over one owner's conversations (contract v3, "Search"; `GET /api/conversations?q=`).

A conversation matches when its title, or one of its messages (on any branch), holds every
word of the query, whole words, case and accents aside. Title matches come first, then the
conversations by their best message; at most HIT_CAP matches of each kind are ranked (the
words' density): the newest, or on PostgreSQL the first in table order. The words are taken out
of the query as runs of letters and digits: what the full-text syntaxes give meaning to (`"`, `*`,
`NEAR(`, `-`, `:`, `^`, `&`, `!`) never reaches them, and each word is also quoted as an FTS5
string. The indexes are chat/search_index.py's; on a database with neither, the search reads
the owner's messages with `icontains` (every one of them: a cost that grows with the history,
and accents then matter).
"""

import functools
import math
import re
import unicodedata
import uuid
from dataclasses import dataclass
from typing import TYPE_CHECKING

from django.db import connection

from chat.errors import Invalid
from chat.models import Conversation, Message
from chat.search_index import MESSAGES, PG_CONFIG, TITLES, owner_token, sqlite_has_fts5
from chat.text import unstorable

if TYPE_CHECKING:
    from chat.services import Owner

MAX_QUERY_CHARS = 200
MAX_WORDS = 12
LIMIT = 50
# Matches read (of titles, and of messages) and ranked: a word in half of an owner's 500,000
# messages must not mean reading them all.
HIT_CAP = 500
SNIPPET_CHARS = 160
_WORD = re.compile(r"[^\W_]+")
_MARKS = re.compile("[\u0300-\u036f\u1ab0-\u1aff\u1dc0-\u1dff\u20d0-\u20ff\ufe20-\ufe2f]")


@dataclass(frozen=True)
class SearchHit:
    conversation: Conversation
    snippet: str
    match_message_id: uuid.UUID | None


def search_words(q: object) -> list[str]:
    """The words searched for; `Invalid` for a query no database should be asked."""
    if not isinstance(q, str):
        raise Invalid("'q' must be a string.")
    if len(q) > MAX_QUERY_CHARS:
        raise Invalid(f"The search is {len(q):,} characters long; the limit is {MAX_QUERY_CHARS}.")
    problem = unstorable(q)
    if problem:
        raise Invalid(f"'q' {problem}; remove it and search again.")
    words = list(dict.fromkeys(w.casefold() for w in _WORD.findall(q)))
    if len(words) > MAX_WORDS:
        raise Invalid(f"The search has {len(words)} words; the limit is {MAX_WORDS}.")
    return words


def conversation_search(*, owner: "Owner", q: str, limit: int = LIMIT) -> list[SearchHit]:
    """The owner's conversations that hold the words of `q`, best match first."""
    words = search_words(q)
    if not words or (owner.user_id is None and not owner.visitor):
        return []
    if connection.vendor == "postgresql":
        titles, messages = _postgresql(owner, words)
    elif connection.vendor == "sqlite" and _sqlite_indexed():
        titles, messages = _sqlite(owner, words)
    else:
        titles, messages = _scan(owner, words)
    return _hits(owner, words, titles, messages, limit)


def _hits(
    owner: "Owner", words: list[str], titles: list[tuple], messages: list[tuple], limit: int
) -> list[SearchHit]:
    """Title matches (id, title) first, then message matches (conversation id, text, id), each
    ranked; one hit per conversation, with its best message."""
    # Keyed by the ids as the database gives them (hex text on SQLite): 500 of them made
    # UUIDs cost more than the query.
    order: dict[object, tuple[str, object]] = {}
    for conversation_id, title in ranked(titles, words):
        if len(order) == limit:
            break
        order.setdefault(conversation_id, (title, None))
    for conversation_id, text, message_id in ranked(messages, words):
        matched_title = conversation_id in order and order[conversation_id][1] is None  # its best message too
        if matched_title or (conversation_id not in order and len(order) < limit):
            order[conversation_id] = (text, message_id)
    chosen = {_uuid(key): (text, None if m is None else _uuid(m)) for key, (text, m) in order.items()}
    # By primary key alone (an owner's condition here lets SQLite walk the owner's index), and
    # the owner checked on each: the owner's, whatever the index says.
    conversations = {c.pk: c for c in Conversation.objects.filter(pk__in=list(chosen)) if _owns(owner, c)}
    return [
        SearchHit(conversations[key], excerpt(text, words), message_id)
        for key, (text, message_id) in chosen.items()
        if key in conversations
    ]


def _uuid(value: object) -> uuid.UUID:
    return value if isinstance(value, uuid.UUID) else uuid.UUID(str(value))


def _owns(owner: "Owner", conversation: Conversation) -> bool:
    if owner.user_id is not None:
        return conversation.user_id == owner.user_id
    return conversation.user_id is None and conversation.visitor == owner.visitor


# --- SQLite: FTS5 ----------------------------------------------------------------------------


def _sqlite_indexed() -> bool:
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1 FROM sqlite_master WHERE name = %s", [MESSAGES])
        return cursor.fetchone() is not None and sqlite_has_fts5(connection)


def fts5_string(word: str) -> str:
    return '"' + word.replace('"', '""') + '"'


def _sqlite(owner: "Owner", words: list[str]) -> tuple[list[tuple], list[tuple]]:
    """The owner's newest HIT_CAP matches (cheap: the index is walked in rowid order and
    stops). Not ranked by FTS5's bm25: it counts, for each query term, every row holding it,
    the owner's token included: 35 ms for an owner of 500,000 messages, before any row."""
    token = owner_token(user_id=owner.user_id, visitor=owner.visitor)
    match = f"owner : {fts5_string(token)} AND " + " AND ".join(f"body : {fts5_string(w)}" for w in words)
    # Only rowids from the index; the texts come with the rows they are joined to.
    newest = "SELECT rowid FROM {table} WHERE {table} MATCH %s ORDER BY rowid DESC LIMIT %s"
    with connection.cursor() as cursor:
        cursor.execute(
            f"SELECT c.id, c.title FROM ({newest.format(table=TITLES)}) t "
            "JOIN chat_conversation c ON c.rowid = t.rowid",
            [match, HIT_CAP],
        )
        titles = cursor.fetchall()
        cursor.execute(
            f"SELECT m.conversation_id, m.content, m.id FROM ({newest.format(table=MESSAGES)}) h "
            "JOIN chat_message m ON m.rowid = h.rowid",
            [match, HIT_CAP],
        )
        return titles, cursor.fetchall()


def ranked(rows: list[tuple], words: list[str]) -> list[tuple]:
    """Rows (key, text, ...) best first: the words' occurrences over the square root of the
    text's length in words (all the words are in every row, so no weight per word); the
    newest first among equals. Occurrences as substrings (`str.count`, 50 times quicker than
    a regular expression's word bounds): the index already matched whole words."""
    folded = [fold(w) for w in words]

    def score(row: tuple) -> float:
        text = fold(row[1])
        return sum(text.count(w) for w in folded) / math.sqrt(text.count(" ") + 1)

    return sorted(rows, key=score, reverse=True)


# --- PostgreSQL: a tsvector column and GIN indexes -----------------------------------------


def _postgresql(owner: "Owner", words: list[str]) -> tuple[list[tuple], list[tuple]]:
    """HIT_CAP of the owner's matches through the GIN indexes, in table order (not ranked by
    `ts_rank`, which reads every match's vector first). Not the newest, as on SQLite: `ORDER
    BY created_at` makes PostgreSQL walk the time index backwards and test each row, 43,000
    rows (63 ms) for a word in 2 % of 500,000 messages."""
    if owner.user_id is not None:
        mine, params = "c.user_id = %s", [owner.user_id]
    else:
        mine, params = "c.user_id IS NULL AND c.visitor = %s", [owner.visitor]
    query = f"plainto_tsquery('{PG_CONFIG}', %s)"
    text = " ".join(words)
    with connection.cursor() as cursor:
        cursor.execute(
            f"SELECT c.id, c.title FROM chat_conversation c WHERE c.search_vector @@ {query} AND {mine} "
            "LIMIT %s",
            [text, *params, HIT_CAP],
        )
        titles = cursor.fetchall()
        cursor.execute(
            "SELECT m.conversation_id, m.content, m.id FROM chat_message m "
            "JOIN chat_conversation c ON c.id = m.conversation_id "
            f"WHERE m.search_vector @@ {query} AND {mine} LIMIT %s",
            [text, *params, HIT_CAP],
        )
        return titles, cursor.fetchall()


# --- any other database: a scan ------------------------------------------------------------


def _scan(owner: "Owner", words: list[str]) -> tuple[list[tuple], list[tuple]]:
    """Every message of the owner's is read: no index, so keep this for small histories."""
    mine = owner.conversations()
    titles = mine
    for word in words:
        titles = titles.filter(title__icontains=word)
    messages = Message.objects.filter(conversation__in=mine).exclude(status=Message.Status.STREAMING)
    for word in words:
        messages = messages.filter(content__icontains=word)
    return (
        list(titles.order_by("-updated_at").values_list("id", "title")[:HIT_CAP]),
        list(messages.order_by("-created_at").values_list("conversation_id", "content", "id")[:HIT_CAP]),
    )


# --- snippets --------------------------------------------------------------------------------


def fold(text: str) -> str:
    """Case and accents aside: `Café` and `CAFE` fold to the same `cafe`."""
    if text.isascii():
        return text.lower()
    return _MARKS.sub("", unicodedata.normalize("NFKD", text)).casefold()


@functools.lru_cache(maxsize=4096)
def _fold_char(char: str) -> str:
    return "".join(c for c in unicodedata.normalize("NFKD", char) if not unicodedata.combining(c)).casefold()


def _folded(text: str) -> tuple[str, list[int]]:
    """`text` folded, with the index in `text` of each folded character."""
    if text.isascii():
        return text.lower(), list(range(len(text)))
    table = {ord(c): _fold_char(c) for c in set(text) if not c.isascii()}
    if all(len(f) == 1 for f in table.values()):  # the usual case (é, ü, ñ): one for one
        folded = text.translate(table).lower()
        if len(folded) == len(text):
            return folded, list(range(len(text)))
    out, index = [], []
    for i, char in enumerate(text):
        folded = char.lower() if char.isascii() else _fold_char(char)
        out.append(folded)
        index.extend([i] * len(folded))
    return "".join(out), index


def excerpt(text: str, words: list[str], width: int = SNIPPET_CHARS) -> str:
    """About `width` characters of `text` around the first of `words` in it, plain text."""
    text = " ".join(text[:50_000].split())
    folded, index = _folded(text)
    found = [
        m.start()
        for w in words
        if (m := re.search(rf"(?<![^\W_]){re.escape(fold(w))}(?![^\W_])", folded)) is not None
    ]
    at = index[min(found)] if found else 0
    start = max(0, at - width // 3)
    if start > 0:
        space = text.find(" ", start, at)
        start = space + 1 if space != -1 else start
    end = min(len(text), start + width)
    if end < len(text):
        space = text.rfind(" ", at, end)
        end = space if space > at else end
    return ("…" if start > 0 else "") + text[start:end] + ("…" if end < len(text) else "")
