"""`SESSION_ENGINE = "chat.sessions"`: Django's database sessions, read with one SELECT.

Every API request reads its session first (who asks: chat.views.get_owner), and Django's
database backend reads it through the ORM: 178 µs of CPU a load on SQLite here, 36 µs so
(issue 14: the read is on the way to a reply's first event, on the request's thread). This
store is Django's own (`django.contrib.sessions.backends.db`: the same table, model, writes,
expiry, decoding and cookie); only the read is written out, with its values prepared by the
model's fields as the ORM would. A project's own SESSION_ENGINE is left alone.

On SQLite an async load reads on the event loop itself (`_read_here`), not on a thread: the
thread hop cost more than the read (issue 14: 400K instructions of a reply's 7.5M opening).
"""

import sqlite3
import threading

from asgiref.sync import sync_to_async
from django.contrib.sessions.backends import db
from django.db import connections, router
from django.utils import timezone

from chat import db as chat_db

_UNREAD = object()
_here = threading.local()  # `.sqlite`: this thread's own connection for reading sessions


class SessionStore(db.SessionStore):
    def load(self) -> dict:
        data = self._session_data()
        return self.decode(data) if data is not None else {}

    async def aload(self) -> dict:
        data = self._read_here()
        if data is _UNREAD:
            data = await sync_to_async(self._session_data)()
        return self.decode(data) if data is not None else {}

    def _query(self, connection) -> tuple[str, list]:
        model = self.model
        meta, quote = model._meta, connection.ops.quote_name
        key, expires = meta.get_field("session_key"), meta.get_field("expire_date")
        sql = "SELECT {} FROM {} WHERE {} = %s AND {} > %s".format(
            quote(meta.get_field("session_data").column),
            quote(meta.db_table),
            quote(key.column),
            quote(expires.column),
        )
        params = [
            key.get_db_prep_value(self.session_key, connection),
            expires.get_db_prep_value(timezone.now(), connection),
        ]
        return sql, params

    def _session_data(self) -> str | None:
        """The stored data of this unexpired session; None (and no key) if there is none, as
        Django's `_get_session_from_db` does."""
        connection = connections[router.db_for_read(self.model)]
        sql, params = self._query(connection)
        rows = chat_db.execute(connection, sql, params, fetch=True)
        return self._found(rows[0] if rows else None)

    def _found(self, row: tuple | None) -> str | None:
        if row is None:
            self._session_key = None
            return None
        return row[0]

    def _read_here(self) -> object:
        """SQLite: the session's data read on this thread (the event loop), on a connection of
        its own that only reads, in autocommit (its read ends with the statement) and never
        waits (timeout 0). `_UNREAD` where that is not how to read it: another database, an
        in-memory one (another connection would see another database), or SQLite busy.

        A read of a WAL database takes no lock a writer waits for, and the row is one lookup
        in the session table's primary key, so the loop stops for about what queueing the read
        on a thread and waking the loop again cost it."""
        if not self.session_key:  # no key: no row, as the SELECT would find
            return self._found(None)
        connection = connections[router.db_for_read(self.model)]
        if connection.vendor != "sqlite" or connection.is_in_memory_db():
            return _UNREAD
        name = str(connection.settings_dict["NAME"])
        reader = getattr(_here, "sqlite", None)
        if reader is None or reader[0] != name:
            try:
                conn = sqlite3.connect(name, timeout=0, isolation_level=None, check_same_thread=True)
                conn.execute("PRAGMA query_only = 1")
            except sqlite3.Error:
                return _UNREAD
            reader = _here.sqlite = (name, conn)
        sql, params = self._query(connection)
        try:
            rows = reader[1].execute(sql.replace("%s", "?"), params).fetchall()
        except sqlite3.Error:  # busy, or a table not there yet: the usual way, on a thread
            return _UNREAD
        return self._found(rows[0] if rows else None)
