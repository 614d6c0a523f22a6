"""The AI SDK requests' pure parts (chat/uichat.py): the chat id scheme and the body's checks."""

import uuid

import pytest

from chat.errors import Invalid
from chat.services import Owner
from chat.uichat import (
    CLIENT_ID_NAMESPACE,
    attachment_id_of,
    chat_id_check,
    conversation_pk,
    ui_request_parse,
)


def test_a_client_id_names_one_conversation_per_owner():
    alice, bob = Owner(visitor="a" * 32), Owner(user_id=7)
    pk, client = conversation_pk(owner=alice, chat_id="Xy_9-z")
    assert client and pk == uuid.uuid5(CLIENT_ID_NAMESPACE, f"visitor:{'a' * 32}\nXy_9-z")
    assert conversation_pk(owner=alice, chat_id="Xy_9-z") == (pk, True)
    assert conversation_pk(owner=bob, chat_id="Xy_9-z")[0] != pk
    ours = uuid.uuid4()
    assert conversation_pk(owner=bob, chat_id=str(ours)) == (ours, False)


@pytest.mark.parametrize("chat_id", ["", "a b", "é", "x" * 101, "../x", "a/b", 3, None])
def test_a_chat_id_is_a_uuid_or_up_to_100_safe_characters(chat_id):
    with pytest.raises(Invalid):
        chat_id_check(chat_id)


def test_only_this_apps_upload_urls_are_files(db):
    pk = uuid.uuid4()
    assert attachment_id_of(f"/api/attachments/{pk}", "h:1") == str(pk)
    assert attachment_id_of(f"http://h:1/api/attachments/{pk}", "h:1") == str(pk)
    for url in (
        f"http://other:1/api/attachments/{pk}",
        "data:text/plain,hi",
        f"/api/messages/{pk}",
        "/nothing",
    ):
        with pytest.raises(Invalid):
            attachment_id_of(url, "h:1")


def test_the_text_parts_are_joined_and_other_parts_ignored():
    parts = [
        {"type": "text", "text": "One"},
        {"type": "reasoning", "text": "x"},
        {"type": "text", "text": "Two"},
    ]
    body = {"id": "c", "trigger": "submit-message", "messages": [{"id": "u", "role": "user", "parts": parts}]}
    request = ui_request_parse(body, host="h")
    assert request.content == "One\n\nTwo" and request.attachment_ids == () and request.message_id is None
