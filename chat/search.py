"""Search over one owner's conversations (contract v3, "Search"; `GET /api/conversations?q=`).

A conversation matches when its title, or one of its messages (on any branch), holds every
word of the query, whole words, case and accents aside. Title matches come first, then the
best message match (bm25 on SQLite, ts_rank on PostgreSQL). The words are taken out of the
query as runs of letters and digits: what the full-text syntaxes give meaning to (`"`, `*`,
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

from django.db import connection

from chat.errors import Invalid
from chat.models import Conversation, Message
from chat.search_index import MESSAGES, PG_CONFIG, TITLES, owner_token, sqlite_has_fts5
from chat.text import unstorable

MAX_QUERY_CHARS = 200
MAX_WORDS = 12
LIMIT = 50
# Message hits read, best first, before they are grouped by conversation: a word in half of
# an owner's 500,000 messages must not mean ranking them all in Python.
HIT_CAP = 1000
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


def conversation_search(*, owner, q: str, limit: int = LIMIT) -> list[SearchHit]:
    """The owner's conversations that hold the words of `q`, best match first."""
    words = search_words(q)
    if not words or (owner.user_id is None and not owner.visitor):
        return []
    if connection.vendor == "postgresql":
        titles, messages = _postgresql(owner, words, limit)
    elif connection.vendor == "sqlite" and _sqlite_indexed():
        titles, messages = _sqlite(owner, words, limit)
    else:
        titles, messages = _scan(owner, words, limit)
    return _hits(owner, words, titles, messages, limit)


def _hits(
    owner, words: list[str], titles: list[uuid.UUID], messages: list[tuple[uuid.UUID, uuid.UUID]], limit: int
) -> list[SearchHit]:
    """Title matches first, then message matches; one hit per conversation (its best message)."""
    best: dict[uuid.UUID, uuid.UUID] = {}
    for conversation_id, message_id in messages:
        best.setdefault(conversation_id, message_id)
    order = list(dict.fromkeys([*titles, *best]))[:limit]
    # By primary key alone (an owner's condition here lets SQLite walk the owner's index), and
    # the owner checked on each: the owner's, whatever the index says.
    conversations = {c.pk: c for c in Conversation.objects.filter(pk__in=order) if _owns(owner, c)}
    wanted = [best[c] for c in order if c in best]
    texts = dict(Message.objects.filter(pk__in=wanted).values_list("id", "content"))
    hits = []
    for conversation_id in order:
        conversation = conversations.get(conversation_id)
        message_id = best.get(conversation_id)
        if conversation is None or (message_id is not None and message_id not in texts):
            continue  # gone since the index was read
        text = texts[message_id] if message_id is not None else conversation.title
        hits.append(SearchHit(conversation, excerpt(text, words), message_id))
    return hits


def _owns(owner, conversation: Conversation) -> bool:
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


def _sqlite(owner, words: list[str], limit: int):
    """The owner's newest HIT_CAP matches (cheap: the index is walked in rowid order and
    stops), ranked here. FTS5's bm25 would count, for each query term, every row holding it,
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
        titles = [uuid.UUID(c) for c, _ in ranked(cursor.fetchall(), words)[:limit]]
        cursor.execute(
            f"SELECT m.conversation_id, m.content, m.id FROM ({newest.format(table=MESSAGES)}) h "
            "JOIN chat_message m ON m.rowid = h.rowid",
            [match, HIT_CAP],
        )
        best: dict[str, str] = {}
        for conversation_id, _, message_id in ranked(cursor.fetchall(), words):
            best.setdefault(conversation_id, message_id)
            if len(best) == limit:
                break
    return titles, [(uuid.UUID(c), uuid.UUID(m)) for c, m in best.items()]


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


def _postgresql(owner, words: list[str], limit: int):
    """HIT_CAP of the owner's matches through the GIN indexes, in table order, ranked as on
    SQLite (`ts_rank` would read every match's vector first). Not the newest, as on SQLite:
    `ORDER BY created_at` makes PostgreSQL walk the time index backwards and test each row,
    43,000 rows (63 ms) for a word in 2 % of 500,000 messages."""
    if owner.user_id is not None:
        mine, params = "c.user_id = %s", [owner.user_id]
    else:
        mine, params = "c.user_id IS NULL AND c.visitor = %s", [owner.visitor]
    query = f"plainto_tsquery('{PG_CONFIG}', %s)"
    text = " ".join(words)
    with connection.cursor() as cursor:
        cursor.execute(
            f"SELECT c.id, c.title FROM chat_conversation c "
            f"WHERE c.search_vector @@ {query} AND {mine} LIMIT %s",
            [text, *params, HIT_CAP],
        )
        titles = [c for c, _ in ranked(cursor.fetchall(), words)[:limit]]
        cursor.execute(
            "SELECT m.conversation_id, m.content, m.id FROM chat_message m "
            "JOIN chat_conversation c ON c.id = m.conversation_id "
            f"WHERE m.search_vector @@ {query} AND {mine} LIMIT %s",
            [text, *params, HIT_CAP],
        )
        best: dict[uuid.UUID, uuid.UUID] = {}
        for conversation_id, _, message_id in ranked(cursor.fetchall(), words):
            best.setdefault(conversation_id, message_id)
            if len(best) == limit:
                break
    return titles, list(best.items())


# --- any other database: a scan ------------------------------------------------------------


def _scan(owner, words: list[str], limit: int):
    """Every message of the owner's is read: no index, so keep this for small histories."""
    mine = owner.conversations()
    titles = mine
    for word in words:
        titles = titles.filter(title__icontains=word)
    messages = Message.objects.filter(conversation__in=mine).exclude(status=Message.Status.STREAMING)
    for word in words:
        messages = messages.filter(content__icontains=word)
    found = ranked(list(titles.order_by("-updated_at").values_list("id", "title")[:HIT_CAP]), words)
    newest = messages.order_by("-created_at").values_list("conversation_id", "content", "id")[:HIT_CAP]
    return [c for c, _ in found[:limit]], [(c, m) for c, _, m in ranked(list(newest), words)]


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
