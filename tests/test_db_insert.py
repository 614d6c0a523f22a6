"""chat.db.insert: a turn's rows in one statement, stored as the ORM's save() stores them; and
chat.db.execute, which runs the app's own statements."""

from datetime import timedelta

import pytest
from django.contrib.auth import get_user_model
from django.db import IntegrityError, connection, models
from django.db.backends.sqlite3.base import SQLiteCursorWrapper
from django.db.models.signals import post_save
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from chat import db
from chat.models import Conversation, Message


def stored(model, pk) -> dict:
    """The row as the database has it, column by column."""
    return model.objects.filter(pk=pk).values().get()


def turn(conversation: Conversation, now=None) -> list[Message]:
    now = now or timezone.now()
    return [
        Message(
            conversation=conversation,
            role="user",
            content="Hi — ünïcode ✓",
            model="demo",
            created_at=now,
            updated_at=now,
        ),
        Message(
            conversation=conversation,
            role="assistant",
            status=Message.Status.STREAMING,
            model="demo",
            created_at=now + timedelta(microseconds=1),
            updated_at=now,
            steps=[{"kind": "tool", "name": "current_time"}],
            input_tokens=12,
            error=None,
            stop_requested=True,
        ),
    ]


def test_rows_inserted_read_back_as_the_orms_own(transactional_db):
    user = get_user_model().objects.create_user("ada")
    for owner in ({"user": user}, {"visitor": "v" * 32}):
        by_orm, by_insert = (
            Conversation(title="t", model="demo", **owner),
            Conversation(model="demo", **owner),
        )
        by_insert.title = "t"
        by_orm.save(force_insert=True)
        db.insert([by_insert])
        assert not by_insert._state.adding and by_insert._state.db == "default"
        a, b = stored(Conversation, by_orm.pk), stored(Conversation, by_insert.pk)
        for row in (a, b):
            row.pop("id"), row.pop("created_at"), row.pop("updated_at")  # each its own now
        assert a == b
        now = timezone.now()
        orm_messages, inserted = turn(by_orm, now), turn(by_insert, now)
        Message.objects.bulk_create(orm_messages)
        with CaptureQueriesContext(connection) as queries:
            db.insert(inserted)
        assert len(queries) == 1  # both rows in one INSERT
        for mine, theirs in zip(inserted, orm_messages, strict=True):
            a, b = stored(Message, mine.pk), stored(Message, theirs.pk)
            assert a.pop("conversation_id") == by_insert.pk and b.pop("conversation_id") == by_orm.pk
            a.pop("id"), b.pop("id")
            assert a == b
            assert Message.objects.get(pk=mine.pk).created_at == mine.created_at  # to the microsecond


def test_a_models_save_receivers_still_run(transactional_db):
    """A host project listening to the chat's models keeps hearing each save."""
    heard = []

    def receiver(sender, instance, created, **kwargs):
        heard.append((instance.pk, created))

    post_save.connect(receiver, sender=Message)
    try:
        conversation = Conversation(model="demo", visitor="v")
        db.insert([conversation])
        messages = turn(conversation)
        db.insert(messages)
    finally:
        post_save.disconnect(receiver, sender=Message)
    assert heard == [(m.pk, True) for m in messages]
    assert Message.objects.filter(conversation=conversation).count() == 2


def test_a_value_that_is_an_expression_goes_through_the_orm(transactional_db):
    conversation = Conversation(model="demo", visitor="v")
    db.insert([conversation])
    message = Message(conversation=conversation, role="user", content="x", model="demo")
    message.reasoning = models.Value("from an expression")
    db.insert([message])
    assert stored(Message, message.pk)["reasoning"] == "from an expression"


def test_a_row_that_exists_is_refused_and_changes_nothing(transactional_db):
    conversation = Conversation(model="demo", visitor="v", title="first")
    db.insert([conversation])
    again = Conversation(pk=conversation.pk, model="demo", visitor="v", title="second")
    with pytest.raises(IntegrityError, match="(?i)unique|duplicate"):  # Django's, as from its cursor
        db.insert([again])
    assert stored(Conversation, conversation.pk)["title"] == "first"


def _postgresql_connection():
    """A PostgreSQL wrapper, never connected: what its operations and features prepare."""
    from django.db.backends.postgresql.base import DatabaseWrapper

    return DatabaseWrapper({**connection.settings_dict, "ENGINE": "django.db.backends.postgresql"}, "pg")


@pytest.mark.django_db
@pytest.mark.filterwarnings("ignore:DateTimeField .* received a naive datetime")
def test_each_value_is_prepared_as_its_fields_own_method_prepares_it():
    """The preparers that skip Django's layers for the usual values (issue 14) give what
    `get_db_prep_save` gives, on SQLite and PostgreSQL, for those values and for the others
    (which go through Django's method): a lazy string, a number in a text field, a naive time,
    a key given as text or as an empty string, a value of a field Django's classes would not
    keep as it is."""
    from django.utils.functional import lazy

    now = timezone.now()
    samples = [
        None,
        "",
        "text ✓",
        lazy(lambda: "lazy text", str)(),
        7,
        True,
        False,
        now,
        now.replace(tzinfo=None),
        Message._meta.pk.default(),
        "4f1c7d2a9b8e4c3d8a6b5e4f3a2b1c0d",
        [{"kind": "tool"}],
        {"a": 1},
    ]
    fields = [*Message._meta.local_concrete_fields, *Conversation._meta.local_concrete_fields]
    for conn in (connection, _postgresql_connection()):
        prepare = db.preparers(fields, conn.vendor)
        checked = 0
        for field, prepare_one in zip(fields, prepare, strict=True):
            for value in samples:
                try:
                    expected = field.get_db_prep_save(value, conn)
                except Exception as exc:  # noqa: BLE001 - the same refusal either way
                    with pytest.raises(type(exc)):
                        prepare_one(value, conn)
                    continue
                got = prepare_one(value, conn)
                assert type(got) is type(expected), (conn.vendor, field.name, value)
                # psycopg's Jsonb wrapper compares by identity: compare what it wraps
                assert getattr(got, "obj", got) == getattr(expected, "obj", expected), (field.name, value)
                checked += 1
        assert checked > len(fields) * 5


def _conversions(monkeypatch) -> list[str]:
    """The statements Django's SQLite cursor converts from here on (`%s` to `?`)."""
    converted, convert = [], SQLiteCursorWrapper.convert_query

    def counting(self, query, **kwargs):
        converted.append(query)
        return convert(self, query, **kwargs)

    monkeypatch.setattr(SQLiteCursorWrapper, "convert_query", counting)
    return converted


def _titles_sql() -> tuple[str, str]:
    table = connection.ops.quote_name(Conversation._meta.db_table)
    update = f"UPDATE {table} SET title = %s WHERE visitor = %s AND title <> '100%%'"
    return update, f"SELECT title FROM {table} WHERE visitor = %s ORDER BY title"


@pytest.mark.skipif(connection.vendor != "sqlite", reason="SQLite's cursor converts placeholders")
def test_a_statement_nothing_watches_goes_to_the_drivers_cursor_converted_once(transactional_db, monkeypatch):
    """Issue 14: Django's SQLite cursor scans each statement for `%s` at every execution; the
    app's own go to the driver's cursor as `?`, converted once, with the same results."""
    for title in ("a", "b", "100%"):
        db.insert([Conversation(model="demo", visitor="v", title=title)])
    update, select = _titles_sql()
    db._qmark.cache_clear()
    converted = _conversions(monkeypatch)
    assert db.execute(connection, update, ["same", "v"]) == 2  # the row count; `%%` is a literal %
    assert db.execute(connection, select, ["v"], fetch=True) == [("100%",), ("same",), ("same",)]
    assert db.execute(connection, update, [("x", "v"), ("y", "nobody")], many=True) == 2
    assert db.execute(connection, update, ["z", "v"]) == 2
    assert converted == [update, select]  # each once, by Django's own method
    with pytest.raises(IntegrityError):  # errors are Django's, as from its own cursor
        db.execute(connection, f"INSERT INTO {Conversation._meta.db_table} (id) VALUES (%s)", [None])


@pytest.mark.django_db(transaction=True)
def test_a_statement_watched_goes_through_djangos_cursor_as_before(monkeypatch):
    """The debug log and a project's execute wrappers see the app's statements as they did."""
    db.insert([Conversation(model="demo", visitor="v", title="a")])
    update, select = _titles_sql()
    db._qmark.cache_clear()
    converted = _conversions(monkeypatch)
    seen = []

    def wrapper(execute, sql, params, many, context):
        seen.append((sql, many))
        return execute(sql, params, many, context)

    with connection.execute_wrapper(wrapper):
        assert db.execute(connection, update, ["b", "v"]) == 1
        assert db.execute(connection, select, ["v"], fetch=True) == [("b",)]
    assert seen == [(update, False), (select, False)]
    with CaptureQueriesContext(connection) as queries:
        db.execute(connection, update, [("c", "v")], many=True)
    assert [q["sql"] for q in queries] == [f"1 times: {update}"]  # Django's log of executemany
    if connection.vendor == "sqlite":
        assert converted == [update, select, update]
