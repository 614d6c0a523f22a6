"""The full-text indexes behind search (contract v3, "Search"), made by migration 0008.

SQLite: two FTS5 tables (message text, conversation titles), kept current by triggers, with
their rowids equal to the rowids of chat_message / chat_conversation. Each row also holds its
owner as one token (`u<user id>` or `v<hex of the visitor token>`), so a search reads only the
owner's postings however many other owners there are.

PostgreSQL: a `chat_search` text search configuration (`simple`, with `unaccent` where the
extension can be created), a tsvector column on chat_message kept by a trigger and one on
chat_conversation generated from the title (kept out of the models: other databases have no
such columns), and GIN indexes on both.

Streaming replies are checkpointed (their `content` UPDATEd) about once a second: neither
database reindexes on those. A reply is indexed when it stops streaming, so the partial text
of a reply still being written is not found. On PostgreSQL the checkpoint also stays a HOT
update (the indexed column does not change while streaming).

Django remakes a SQLite table (copy, drop, rename) to alter it, which drops its triggers and
may renumber its rowids: `search_index_ensure` (run after every `migrate`) notices the
missing triggers and rebuilds the index.
"""

import contextlib
import logging
import sqlite3

from django.core.checks import Tags, Warning, register
from django.db import DatabaseError, connections, transaction
from django.db.backends.base.base import BaseDatabaseWrapper

log = logging.getLogger("chat.search")

MESSAGES = "chat_search_message"
TITLES = "chat_search_title"
TOKENIZE = "unicode61 remove_diacritics 2"
STREAMING = "'streaming'"


def owner_token_sql(row: str) -> str:
    """The owner token of a chat_conversation row, in SQLite's SQL (see `owner_token`)."""
    return f"CASE WHEN {row}.user_id IS NOT NULL THEN 'u' || {row}.user_id ELSE 'v' || hex({row}.visitor) END"


def owner_token(*, user_id: int | None, visitor: str | None) -> str:
    """What `owner_token_sql` gives for this owner: letters and digits, one FTS5 token."""
    if user_id is not None:
        return f"u{user_id}"
    return "v" + (visitor or "").encode().hex().upper()


_SQLITE_TRIGGERS = {
    "chat_search_message_insert": f"""
        CREATE TRIGGER chat_search_message_insert AFTER INSERT ON chat_message
        WHEN new.status <> {STREAMING}
        BEGIN
            INSERT INTO {MESSAGES}(rowid, body, owner)
            SELECT new.rowid, new.content, {owner_token_sql("c")} FROM chat_conversation c
            WHERE c.id = new.conversation_id;
        END""",
    # Not on a checkpoint (streaming before and after); not when the text did not change.
    "chat_search_message_update": f"""
        CREATE TRIGGER chat_search_message_update AFTER UPDATE OF content, status ON chat_message
        WHEN (old.status <> {STREAMING} OR new.status <> {STREAMING})
            AND (old.content IS NOT new.content OR old.status IS NOT new.status)
        BEGIN
            DELETE FROM {MESSAGES} WHERE rowid = old.rowid;
            INSERT INTO {MESSAGES}(rowid, body, owner)
            SELECT new.rowid, new.content, {owner_token_sql("c")} FROM chat_conversation c
            WHERE c.id = new.conversation_id AND new.status <> {STREAMING};
        END""",
    "chat_search_message_delete": f"""
        CREATE TRIGGER chat_search_message_delete AFTER DELETE ON chat_message
        BEGIN
            DELETE FROM {MESSAGES} WHERE rowid = old.rowid;
        END""",
    "chat_search_title_insert": f"""
        CREATE TRIGGER chat_search_title_insert AFTER INSERT ON chat_conversation
        BEGIN
            INSERT INTO {TITLES}(rowid, body, owner) VALUES (new.rowid, new.title, {owner_token_sql("new")});
        END""",
    # A rename; a visitor who signs in (conversations_claim): its messages change owner too.
    "chat_search_title_update": f"""
        CREATE TRIGGER chat_search_title_update AFTER UPDATE OF title, user_id, visitor ON chat_conversation
        WHEN old.title IS NOT new.title OR old.user_id IS NOT new.user_id OR old.visitor IS NOT new.visitor
        BEGIN
            DELETE FROM {TITLES} WHERE rowid = old.rowid;
            INSERT INTO {TITLES}(rowid, body, owner) VALUES (new.rowid, new.title, {owner_token_sql("new")});
            UPDATE {MESSAGES} SET owner = {owner_token_sql("new")}
            WHERE (old.user_id IS NOT new.user_id OR old.visitor IS NOT new.visitor)
                AND rowid IN (SELECT rowid FROM chat_message WHERE conversation_id = new.id);
        END""",
    "chat_search_title_delete": f"""
        CREATE TRIGGER chat_search_title_delete AFTER DELETE ON chat_conversation
        BEGIN
            DELETE FROM {TITLES} WHERE rowid = old.rowid;
        END""",
}


def sqlite_has_fts5(connection: BaseDatabaseWrapper) -> bool:
    with connection.cursor() as cursor:
        cursor.execute("SELECT sqlite_compileoption_used('ENABLE_FTS5')")
        if cursor.fetchone()[0]:
            return True
        try:  # built as a loadable extension, or compiled in without the option being listed
            cursor.execute("SELECT * FROM pragma_module_list WHERE name = 'fts5'")
            return cursor.fetchone() is not None
        except DatabaseError:  # no such table: a SQLite built without its introspection pragmas
            return False


def _sqlite_install(cursor) -> None:
    for table in (MESSAGES, TITLES):
        cursor.execute(
            f"CREATE VIRTUAL TABLE IF NOT EXISTS {table} USING fts5(body, owner, tokenize='{TOKENIZE}')"
        )
    _sqlite_rebuild(cursor)


def _sqlite_rebuild(cursor) -> None:
    for name in _SQLITE_TRIGGERS:
        cursor.execute(f"DROP TRIGGER IF EXISTS {name}")
    cursor.execute(f"DELETE FROM {MESSAGES}")
    cursor.execute(f"DELETE FROM {TITLES}")
    cursor.execute(
        f"INSERT INTO {MESSAGES}(rowid, body, owner) SELECT m.rowid, m.content, {owner_token_sql('c')} "
        "FROM chat_message m JOIN chat_conversation c ON c.id = m.conversation_id "
        f"WHERE m.status <> {STREAMING}"
    )
    cursor.execute(
        f"INSERT INTO {TITLES}(rowid, body, owner) "
        f"SELECT c.rowid, c.title, {owner_token_sql('c')} FROM chat_conversation c"
    )
    for sql in _SQLITE_TRIGGERS.values():
        cursor.execute(sql)
    cursor.execute(f"INSERT INTO {MESSAGES}({MESSAGES}) VALUES ('optimize')")


def _sqlite_uninstall(cursor) -> None:
    for name in _SQLITE_TRIGGERS:
        cursor.execute(f"DROP TRIGGER IF EXISTS {name}")
    for table in (MESSAGES, TITLES):
        cursor.execute(f"DROP TABLE IF EXISTS {table}")


def sqlite_index_ready(connection: BaseDatabaseWrapper) -> bool:
    """Both tables and every trigger are there (a table remake drops the triggers)."""
    names = {*_SQLITE_TRIGGERS, MESSAGES, TITLES}
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT name FROM sqlite_master WHERE type IN ('table', 'trigger') AND name LIKE 'chat_search_%'"
        )
        return names <= {row[0] for row in cursor.fetchall()}


# --- PostgreSQL -----------------------------------------------------------------------------

PG_CONFIG = "chat_search"
GIN_PENDING_KB = 256

_PG_FUNCTION = f"""
CREATE OR REPLACE FUNCTION chat_message_search_vector() RETURNS trigger AS $$
BEGIN
    IF NEW.status = 'streaming' THEN
        NEW.search_vector := NULL;
    ELSE
        NEW.search_vector := to_tsvector('{PG_CONFIG}', NEW.content);
    END IF;
    RETURN NEW;
END
$$ LANGUAGE plpgsql"""

_PG_TRIGGERS = (
    """CREATE TRIGGER chat_message_search_insert BEFORE INSERT ON chat_message
    FOR EACH ROW EXECUTE FUNCTION chat_message_search_vector()""",
    # Not on a checkpoint: the column stays NULL and the update stays HOT.
    """CREATE TRIGGER chat_message_search_update BEFORE UPDATE OF content, status ON chat_message
    FOR EACH ROW WHEN ((OLD.status <> 'streaming' OR NEW.status <> 'streaming')
        AND (OLD.content IS DISTINCT FROM NEW.content OR OLD.status IS DISTINCT FROM NEW.status))
    EXECUTE FUNCTION chat_message_search_vector()""",
)


def _pg_config(cursor, connection: BaseDatabaseWrapper) -> None:
    cursor.execute("SELECT 1 FROM pg_ts_config WHERE cfgname = %s", [PG_CONFIG])
    if cursor.fetchone():
        return
    cursor.execute(f"CREATE TEXT SEARCH CONFIGURATION {PG_CONFIG} (COPY = simple)")
    try:
        with transaction.atomic(using=connection.alias):  # a savepoint: a refusal leaves the rest
            cursor.execute("CREATE EXTENSION IF NOT EXISTS unaccent")
    except Exception as exc:  # noqa: BLE001 (no privilege, or the contrib package is missing)
        log.warning("Search: no unaccent extension (%s); accents will matter on this database.", exc)
        return
    cursor.execute(
        f"ALTER TEXT SEARCH CONFIGURATION {PG_CONFIG} "
        "ALTER MAPPING FOR hword, hword_part, word, numword, hword_numpart WITH unaccent, simple"
    )


def _pg_install(cursor, connection: BaseDatabaseWrapper) -> None:
    _pg_config(cursor, connection)
    cursor.execute("ALTER TABLE chat_message ADD COLUMN IF NOT EXISTS search_vector tsvector")
    cursor.execute(_PG_FUNCTION)
    cursor.execute("DROP TRIGGER IF EXISTS chat_message_search_insert ON chat_message")
    cursor.execute("DROP TRIGGER IF EXISTS chat_message_search_update ON chat_message")
    for sql in _PG_TRIGGERS:
        cursor.execute(sql)
    cursor.execute(
        f"UPDATE chat_message SET search_vector = to_tsvector('{PG_CONFIG}', content) "
        "WHERE status <> 'streaming'"
    )
    # A small pending list: GIN keeps new entries in a list that every search reads whole
    # until a vacuum (or the list's limit, 4 MB by default) merges it into the index.
    cursor.execute(
        "CREATE INDEX IF NOT EXISTS chat_msg_search ON chat_message USING gin (search_vector) "
        f"WITH (gin_pending_list_limit = {GIN_PENDING_KB})"
    )
    # Titles change seldom and are short: a generated column (an expression index alone has
    # PostgreSQL compute each title's vector again whenever it prefers a scan of the owner's).
    cursor.execute(
        "ALTER TABLE chat_conversation ADD COLUMN IF NOT EXISTS search_vector tsvector "
        f"GENERATED ALWAYS AS (to_tsvector('{PG_CONFIG}'::regconfig, title)) STORED"
    )
    cursor.execute(
        "CREATE INDEX IF NOT EXISTS chat_conv_search ON chat_conversation USING gin (search_vector) "
        f"WITH (gin_pending_list_limit = {GIN_PENDING_KB})"
    )


def _pg_uninstall(cursor) -> None:
    cursor.execute("DROP INDEX IF EXISTS chat_conv_search")
    cursor.execute("DROP TRIGGER IF EXISTS chat_message_search_insert ON chat_message")
    cursor.execute("DROP TRIGGER IF EXISTS chat_message_search_update ON chat_message")
    cursor.execute("DROP FUNCTION IF EXISTS chat_message_search_vector()")
    cursor.execute("ALTER TABLE chat_message DROP COLUMN IF EXISTS search_vector")
    cursor.execute("ALTER TABLE chat_conversation DROP COLUMN IF EXISTS search_vector")
    cursor.execute(f"DROP TEXT SEARCH CONFIGURATION IF EXISTS {PG_CONFIG}")


def pg_index_ready(connection: BaseDatabaseWrapper) -> bool:
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT 1 FROM information_schema.columns WHERE table_name = 'chat_message' "
            "AND column_name = 'search_vector' AND table_schema = current_schema()"
        )
        return cursor.fetchone() is not None


# --- what the migration and `migrate` call --------------------------------------------------


def search_index_install(*, connection: BaseDatabaseWrapper) -> None:
    """Create the index of this database's vendor, filled from the rows there are."""
    with connection.cursor() as cursor:
        if connection.vendor == "sqlite":
            if sqlite_has_fts5(connection):
                _sqlite_install(cursor)
            else:
                log.warning("Search: this SQLite has no FTS5; search reads every message instead.")
        elif connection.vendor == "postgresql":
            _pg_install(cursor, connection)


def search_index_uninstall(*, connection: BaseDatabaseWrapper) -> None:
    with connection.cursor() as cursor:
        if connection.vendor == "sqlite":
            _sqlite_uninstall(cursor)
        elif connection.vendor == "postgresql":
            _pg_uninstall(cursor)


def search_index_ensure(*, connection: BaseDatabaseWrapper) -> bool:
    """Rebuild the SQLite index if a table remake dropped its triggers; True if it did."""
    if connection.vendor != "sqlite" or not sqlite_has_fts5(connection):
        return False
    if sqlite_index_ready(connection):
        return False
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1 FROM sqlite_master WHERE name = %s", [MESSAGES])
        if cursor.fetchone() is None:  # migration 0008 not applied (yet, or reversed)
            return False
    log.warning("Search: the SQLite index had lost its triggers (a table was remade); rebuilding it.")
    with transaction.atomic(using=connection.alias), connection.cursor() as cursor:
        _sqlite_install(cursor)
    return True


def repair_after_migrate(sender, using: str = "default", **kwargs) -> None:
    """post_migrate: a later migration that remade chat_message or chat_conversation."""
    from django.db import connections

    search_index_ensure(connection=connections[using])


@register(Tags.compatibility)
def check_sqlite_fts5(app_configs=None, **kwargs) -> list[Warning]:
    """Python's sqlite3 module is the library every SQLite connection of this process uses."""
    if not any(c.vendor == "sqlite" for c in connections.all(initialized_only=False)):
        return []
    with contextlib.closing(sqlite3.connect(":memory:")) as memory:
        options = {row[0] for row in memory.execute("PRAGMA compile_options")}
    if "ENABLE_FTS5" in options:
        return []
    return [
        Warning(
            "This SQLite has no FTS5: search reads every one of an owner's messages.",
            hint="Use a Python built with an SQLite that has FTS5 (most have), or PostgreSQL.",
            id="chat.W020",
        )
    ]
