"""Search (contract v3, "Search"): `GET /api/conversations?q=` on SQLite (FTS5) and PostgreSQL."""

import uuid
from collections.abc import Callable, Iterator

import psycopg
import pytest
from django.db import connection

from chat import search_index
from chat.models import Conversation, Message
from chat.search import conversation_search, excerpt, search_words
from chat.services import Owner, conversations_claim
from tests.conftest import Tab, free_port
from tests.processes import PYTHON, ServerProcess, migrate, server_env

HOSTILE = [
    '"',
    "*",
    "NEAR(",
    "NEAR(a b)",
    "-",
    ":",
    "^",
    'a"b',
    "owner : u1",
    "body:café",
    '"café',
    "café*",
    "NOT",
    "AND OR",
    "'",
    "\\",
    "&!|",
    "(",
    ")",
    "{owner}",
    "x:*",
    "'':*",
    "<->",
    "%",
    "_",
]


def search(tab: Tab, q: str) -> list[dict]:
    response = tab.get("/api/conversations", params={"q": q})
    assert response.status_code == 200, response.text
    return response.json()["conversations"]


def ids(results: list[dict]) -> list[str]:
    return [c["id"] for c in results]


Insert = Callable[..., str]  # (conversation_id, parent_id, content, status) -> message id
Update = Callable[..., None]  # (message_id, content, status)


def the_contract_holds(tab: Tab, other: Tab, insert: Insert, update: Update) -> None:
    """Every behaviour of the contract's search, through HTTP, on whichever database serves."""
    trip = tab.conversation(title="Trip planning")
    sent = tab.send("Where is the best café in Zürich, near the lake?", trip["id"])
    tab.wait_finished(sent["assistant_message"]["id"], trip["id"])
    question = sent["user_message"]["id"]
    budget = tab.conversation(title="Quarterly budget")
    theirs = other.conversation(title="Their café")
    other.send("café talk of another visitor", theirs["id"])

    # Case and accents do not matter; the snippet shows the match; best match first.
    for q in ("cafe", "CAFÉ", "Café", "zurich", "ZÜRICH", "cafe zurich", "  café   lake  "):
        [hit] = search(tab, q)
        assert hit["id"] == trip["id"] and hit["match_message_id"] == question, q
        assert "café" in hit["snippet"] and hit["title"] == "Trip planning"
    assert search(tab, "café nowhere") == []  # every word must be there
    assert search(tab, "caf") == []  # whole words
    # Another owner's conversations are never returned, and theirs finds only theirs.
    assert ids(search(other, "cafe")) == [theirs["id"]]
    assert search(other, "zurich") == []
    # A title-only match: no message, the title as the snippet.
    [hit] = search(tab, "BUDGET")
    assert (hit["id"], hit["match_message_id"], hit["snippet"]) == (budget["id"], None, "Quarterly budget")

    # A renamed title is found by its new words, no longer by the old ones.
    renamed = tab.http.patch(
        f"/api/conversations/{budget['id']}", json={"title": "Ski holiday"}, headers=tab.csrf
    )
    assert renamed.status_code == 200, renamed.text
    assert ids(search(tab, "holiday")) == [budget["id"]] and search(tab, "budget") == []

    # A message on another branch than the current one is found (any branch).
    sibling = insert(trip["id"], None, "A different question about the xylophone museum", "complete")
    nested = insert(trip["id"], question, "Also a glockenspiel, on a branch of its own", "complete")
    assert [(h["id"], h["match_message_id"]) for h in search(tab, "xylophone")] == [(trip["id"], sibling)]
    assert [(h["id"], h["match_message_id"]) for h in search(tab, "glockenspiel")] == [(trip["id"], nested)]

    # A reply still streaming is not found (nor its checkpoints); it is once it finishes.
    streaming = insert(trip["id"], question, "zebra partial", "streaming")
    update(streaming, "zebra partial text, checkpointed", "streaming")
    assert search(tab, "zebra") == [] and search(tab, "checkpointed") == []
    update(streaming, "zebra partial text, checkpointed and finished", "complete")
    assert [h["match_message_id"] for h in search(tab, "zebra finished")] == [streaming]
    update(streaming, "an edited text", "complete")
    assert search(tab, "zebra") == [] and ids(search(tab, "edited")) == [trip["id"]]

    # Title matches come before message matches.
    holiday = insert(trip["id"], question, "about the holiday", "complete")
    assert [(h["id"], h["match_message_id"]) for h in search(tab, "holiday")] == [
        (budget["id"], None),
        (trip["id"], holiday),
    ]

    # Best match first: the words more often, in fewer words, whatever came last.
    dense, sparse = tab.conversation(title="Dense"), tab.conversation(title="Sparse")
    insert(dense["id"], None, "Lumen, lumen and lumen again.", "complete")
    insert(
        sparse["id"], None, "A long text that names the lumen only once, " + "and goes on " * 20, "complete"
    )
    assert ids(search(tab, "LUMEN")) == [dense["id"], sparse["id"]]

    # Hostile queries: results or a 400 with the JSON shape, never a 500.
    for q in HOSTILE:
        response = tab.get("/api/conversations", params={"q": q})
        assert response.status_code == 200, (q, response.text)
    assert ids(search(tab, 'NEAR("café" zurich)')) == [trip["id"]]  # just words
    for q in ("x" * 201, "café\x00", " ".join("abcdefghijklm")):
        response = tab.get("/api/conversations", params={"q": q})
        assert response.status_code == 400 and response.json()["code"] == "invalid", q

    # Without q, or with an empty one, the list is unchanged.
    plain = tab.get("/api/conversations").json()
    assert tab.get("/api/conversations", params={"q": "   "}).json() == plain
    assert "snippet" not in plain["conversations"][0]

    # A deleted conversation is gone from the results.
    assert tab.delete(f"/api/conversations/{trip['id']}").status_code == 204
    assert search(tab, "cafe") == [] and search(tab, "xylophone") == []
    assert ids(search(other, "cafe")) == [theirs["id"]]


# --- SQLite, the suite's database, served in process -----------------------------------------


def orm_insert(conversation_id: str, parent_id: str | None, content: str, status: str) -> str:
    message = Message.objects.create(
        conversation_id=conversation_id, parent_id=parent_id, role="assistant", content=content, status=status
    )
    return str(message.id)


def orm_update(message_id: str, content: str, status: str) -> None:
    Message.objects.filter(pk=message_id).update(content=content, status=status)


def test_search_on_sqlite_finds_by_title_and_any_branch_for_its_owner_only(tab, new_tab):
    the_contract_holds(tab, new_tab(), orm_insert, orm_update)


@pytest.mark.django_db(transaction=True)
def test_a_signed_in_visitor_finds_the_conversations_it_had_as_a_visitor(django_user_model):
    user = django_user_model.objects.create_user("searcher", password="x")
    visitor = Owner(visitor=uuid.uuid4().hex)
    conversation = Conversation.objects.create(visitor=visitor.visitor, title="Draft", model="demo")
    orm_insert(str(conversation.id), None, "The heliotrope report", "complete")
    assert [h.conversation.id for h in conversation_search(owner=visitor, q="heliotrope")] == [
        conversation.id
    ]
    conversations_claim(user_id=user.pk, visitor=visitor.visitor)
    user_owner = Owner(user_id=user.pk)
    assert [h.conversation.id for h in conversation_search(owner=user_owner, q="heliotrope draft")] == []
    assert [h.conversation.id for h in conversation_search(owner=user_owner, q="heliotrope")] == [
        conversation.id
    ]
    assert [h.conversation.id for h in conversation_search(owner=user_owner, q="draft")] == [conversation.id]
    assert conversation_search(owner=visitor, q="heliotrope") == []


@pytest.mark.django_db(transaction=True)
def test_the_index_is_rebuilt_when_a_table_remake_dropped_its_triggers():
    owner = Owner(visitor=uuid.uuid4().hex)
    conversation = Conversation.objects.create(visitor=owner.visitor, title="Remade", model="demo")
    with connection.cursor() as cursor:  # what Django's SQLite table remake leaves
        cursor.execute("DROP TRIGGER chat_search_message_insert")
    orm_insert(str(conversation.id), None, "written while the index was blind", "complete")
    assert conversation_search(owner=owner, q="blind") == []
    assert search_index.search_index_ensure(connection=connection) is True
    assert [h.conversation.id for h in conversation_search(owner=owner, q="blind")] == [conversation.id]
    assert search_index.search_index_ensure(connection=connection) is False


@pytest.mark.django_db(transaction=True)
def test_without_an_index_search_reads_the_messages_and_answers_the_same():
    owner = Owner(visitor=uuid.uuid4().hex)
    conversation = Conversation.objects.create(visitor=owner.visitor, title="Fallback notes", model="demo")
    message = orm_insert(str(conversation.id), None, "The café on the corner", "complete")
    search_index.search_index_uninstall(connection=connection)
    try:
        [hit] = conversation_search(owner=owner, q="CAFÉ corner")
        assert (hit.conversation.id, str(hit.match_message_id)) == (conversation.id, message)
        assert [h.match_message_id for h in conversation_search(owner=owner, q="fallback")] == [None]
    finally:
        search_index.search_index_install(connection=connection)
    assert [h.conversation.id for h in conversation_search(owner=owner, q="cafe")] == [conversation.id]


def test_search_words_take_only_letters_and_digits_and_refuse_what_no_database_should_see():
    assert search_words('NEAR("Café" -zürich*) owner:u1 ^x') == ["near", "café", "zürich", "owner", "u1", "x"]
    assert search_words("*:^-") == []
    for bad in ("x" * 201, "a\x00b", "\ud800", 42, " ".join("abcdefghijklm")):
        with pytest.raises(Exception) as raised:
            search_words(bad)
        assert getattr(raised.value, "code", None) == "invalid"


def test_a_snippet_is_plain_text_around_the_first_match_whatever_its_accents():
    text = "word " * 100 + "the CAFÉ Zürich " + "more " * 100
    snippet = excerpt(text, ["cafe"])
    assert snippet.startswith("…") and snippet.endswith("…") and "CAFÉ Zürich" in snippet
    assert len(snippet) <= 162
    assert excerpt("Straße und Ölung", ["olung"]) == "Straße und Ölung"
    assert excerpt("short text", ["absent"]) == "short text"


# --- PostgreSQL, a server process on a database of its own ----------------------------------


@pytest.fixture
def postgres_server(postgres_database) -> Iterator[tuple[ServerProcess, str]]:
    database, _, _ = postgres_database
    env = server_env(database, CHAT_DEMO_RATE="0", CHAT_DEMO_TOKENS="8")
    migrate(env)
    port = free_port()
    command = [PYTHON, "-m", "uvicorn", "project.asgi:application", "--port", str(port)]
    server = ServerProcess(command, env, port).start()
    yield server, database
    server.stop()


def test_search_on_postgresql_finds_by_title_and_any_branch_for_its_owner_only(postgres_server):
    server, database = postgres_server
    db = psycopg.connect(database.replace("postgres://", "postgresql://", 1), autocommit=True)

    def insert(conversation_id: str, parent_id: str | None, content: str, status: str) -> str:
        message_id = str(uuid.uuid4())
        db.execute(
            "INSERT INTO chat_message (id, conversation_id, parent_id, role, content, status, model, "
            "created_at, updated_at, stop_requested) "
            "VALUES (%s, %s, %s, 'assistant', %s, %s, '', now(), now(), false)",
            [message_id, conversation_id, parent_id, content, status],
        )
        return message_id

    def update(message_id: str, content: str, status: str) -> None:
        db.execute(
            "UPDATE chat_message SET content = %s, status = %s WHERE id = %s", [content, status, message_id]
        )

    tab, other = Tab(server.url), Tab(server.url)
    try:
        the_contract_holds(tab, other, insert, update)
        # The accents are folded by unaccent (this server has the extension).
        row = db.execute("SELECT to_tsvector('chat_search', 'Café Zürich2 Crème-brûlée')::text").fetchone()
        assert row[0] == "'brulee':5 'cafe':1 'creme':4 'creme-brulee':3 'zurich2':2"
    finally:
        tab.close()
        other.close()
        db.close()


@pytest.mark.django_db(transaction=True)
def test_migration_0008_indexes_the_messages_a_site_already_has_but_not_a_streaming_reply():
    from django.db.migrations.executor import MigrationExecutor

    def migrate(target=None):  # None: the newest migrations
        executor = MigrationExecutor(connection)
        targets = [("chat", target)] if target else executor.loader.graph.leaf_nodes()
        executor.migrate(targets)
        return executor.loader.project_state(targets).apps

    try:
        apps = migrate("0006_branches_feedback_sharing")
        old_conversation, old_message = (
            apps.get_model("chat", "Conversation"),
            apps.get_model("chat", "Message"),
        )
        visitor = uuid.uuid4().hex
        chat = old_conversation.objects.create(model="demo", visitor=visitor, title="Before search")
        kept = old_message.objects.create(conversation=chat, role="user", content="An old marmalade recipe")
        old_message.objects.create(
            conversation=chat, role="assistant", content="marmalade so far", status="streaming"
        )
    finally:
        migrate()
    owner = Owner(visitor=visitor)
    [hit] = conversation_search(owner=owner, q="marmalade")
    assert (hit.conversation.id, hit.match_message_id) == (chat.id, kept.id)
    assert [h.match_message_id for h in conversation_search(owner=owner, q="before")] == [None]


@pytest.mark.django_db(transaction=True)
def test_a_streaming_replys_checkpoints_write_nothing_to_the_search_index():
    conversation = Conversation.objects.create(visitor=uuid.uuid4().hex, title="Streams", model="demo")
    reply = Message.objects.create(
        conversation=conversation, role="assistant", content="", status="streaming"
    )

    def rows_written(**fields) -> int:
        """Rows this one UPDATE changed, its triggers' included (SQLite's total_changes)."""
        with connection.cursor() as cursor:
            cursor.execute("SELECT total_changes()")
            before = cursor.fetchone()[0]
            Message.objects.filter(pk=reply.pk).update(**fields)
            cursor.execute("SELECT total_changes()")
            return cursor.fetchone()[0] - before

    assert rows_written(content="Half a") == 1  # a checkpoint: the row alone
    assert rows_written(content="Half a sentence") == 1
    assert rows_written(content="Half a sentence, done.", status="complete") > 1  # indexed now
    assert rows_written(feedback_rating=1) == 1  # not its text: not indexed again
