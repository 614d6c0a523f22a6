"""`SESSION_ENGINE = "chat.sessions"`: Django's database sessions, read with one SELECT.

Every API request reads its session first (who asks: chat.views.get_owner), and Django's
database backend reads it through the ORM: 178 µs of CPU a load on SQLite here, 36 µs so
(issue 14: the read is on the way to a reply's first event, on the request's thread). This
store is Django's own (`django.contrib.sessions.backends.db`: the same table, model, writes,
expiry, decoding and cookie); only the read is written out, with its values prepared by the
model's fields as the ORM would. A project's own SESSION_ENGINE is left alone.
"""

from asgiref.sync import sync_to_async
from django.contrib.sessions.backends import db
from django.db import connections, router
from django.utils import timezone


class SessionStore(db.SessionStore):
    def load(self) -> dict:
        data = self._session_data()
        return self.decode(data) if data is not None else {}

    async def aload(self) -> dict:
        data = await sync_to_async(self._session_data)()
        return self.decode(data) if data is not None else {}

    def _session_data(self) -> str | None:
        """The stored data of this unexpired session; None (and no key) if there is none, as
        Django's `_get_session_from_db` does."""
        model = self.model
        connection = connections[router.db_for_read(model)]
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
        with connection.cursor() as cursor:
            cursor.execute(sql, params)
            row = cursor.fetchone()
        if row is None:
            self._session_key = None
            return None
        return row[0]
