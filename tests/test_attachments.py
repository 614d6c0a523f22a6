"""Files and images (contract v3) through the real server: uploads judged by their content,
served to their owner only, sent with a message to the model, deleted with their rows."""

import io
import json
import socket
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from django.core.files.base import ContentFile
from django.core.management import call_command
from django.urls import reverse
from django.utils import timezone
from PIL import Image

from chat.models import Attachment, Conversation, Message
from tests.attachment_files import pdf_bytes
from tests.fakes import ModelCalls, script

FAKE = "script:fake"
QUICK = script({"say": "ok"}, {"finish": "stop"})


@pytest.fixture
def media(settings, tmp_path) -> Path:
    """Uploads in a directory of this test's own."""
    settings.MEDIA_ROOT = str(tmp_path)
    return tmp_path


@pytest.fixture
def model_calls(settings) -> ModelCalls:
    settings.FAKE_MODEL_CALLS = calls = ModelCalls()
    return calls


def stored_files(root: Path) -> list[Path]:
    return [p for p in root.rglob("*") if p.is_file()]


def png(width: int = 3, height: int = 2, color=(255, 0, 0)) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (width, height), color).save(out, "PNG")
    return out.getvalue()


def jpeg(width: int = 4, height: int = 5) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (width, height), (0, 128, 255)).save(out, "JPEG")
    return out.getvalue()


def pdf(text: str = "Hello PDF") -> bytes:
    """A small real PDF with one page of text, which pypdf reads."""
    return pdf_bytes(text)


def upload(tab, data: bytes, name: str = "file.bin", content_type: str = "application/octet-stream"):
    return tab.post("/api/attachments", files={"file": (name, data, content_type)})


def uploaded(tab, data: bytes, name: str, content_type: str = "application/octet-stream") -> dict:
    response = upload(tab, data, name, content_type)
    assert response.status_code == 201, response.text
    return response.json()


def unsupported(response) -> None:
    assert response.status_code == 415, response.text
    body = response.json()
    assert body["code"] == "unsupported" and body["error"].endswith(".")


# --- judged by content ----------------------------------------------------------------------


def test_a_real_png_and_jpeg_are_accepted_with_their_size_in_pixels(tab, media):
    image = png(3, 2)
    body = uploaded(tab, image, "red.png", "image/png")
    assert body["name"] == "red.png" and body["content_type"] == "image/png"
    assert body["size"] == len(image) and (body["width"], body["height"]) == (3, 2)
    assert body["url"] == f"/api/attachments/{body['id']}"
    photo = uploaded(tab, jpeg(4, 5), "photo.bin")  # the name says nothing: the bytes decide
    assert photo["content_type"] == "image/jpeg" and (photo["width"], photo["height"]) == (4, 5)
    row = Attachment.objects.get(pk=body["id"])
    assert row.message is None and row.file.name.startswith("chat/attachments/")
    assert "red" not in row.file.name  # no user-chosen part in the stored path
    assert (media / row.file.name).read_bytes() == image


def test_a_real_pdf_is_accepted_with_its_text(tab, media):
    body = uploaded(tab, pdf("Quarterly numbers"), "report.pdf", "application/pdf")
    assert body["content_type"] == "application/pdf" and body["width"] is None
    assert "Quarterly numbers" in Attachment.objects.get(pk=body["id"]).text


def test_text_files_are_accepted_and_labelled_by_their_extension(tab, media):
    assert uploaded(tab, b"# Title\n\nSome *markdown*.", "notes.md")["content_type"] == "text/markdown"
    assert uploaded(tab, b"a,b\n1,2\n", "table.csv")["content_type"] == "text/csv"
    assert uploaded(tab, "def f():\n    return 'é'\n".encode(), "code.py")["content_type"] == "text/plain"


@pytest.mark.parametrize(
    ("name", "data"),
    [
        ("page.png", b"<!DOCTYPE html><html><script>alert(1)</script></html>"),
        ("image.png", b'<svg xmlns="http://www.w3.org/2000/svg" onload="alert(1)"/>'),
        ("pic.svg", b'\n  <?xml version="1.0"?><svg xmlns="http://www.w3.org/2000/svg"></svg>'),
        ("setup.txt", b"MZ\x90\x00\x03\x00\x00\x00\x04\x00\x00\x00\xff\xff" + b"\x00" * 50),
        ("tool.txt", b"\x7fELF\x02\x01\x01" + b"\x00" * 50),
        ("archive.txt", b"PK\x03\x04\x14\x00\x00\x00\x08\x00" + bytes(range(256))),
        ("polyglot.gif", b"GIF89a/*\x00\x00\x00\x00*/=1;alert(1);//"),
        ("latin1.txt", "café".encode("latin-1")),
        ("fake.pdf", b"%PDF-1.4\nnot really a pdf at all"),
    ],
    ids=[
        "html-named-png",
        "svg-named-png",
        "svg",
        "exe",
        "elf",
        "zip",
        "gif-js-polyglot",
        "latin1",
        "fake-pdf",
    ],
)
def test_hostile_or_unknown_files_are_refused_415_and_nothing_is_stored(tab, media, name, data):
    unsupported(upload(tab, data, name, "image/png"))
    assert Attachment.objects.count() == 0
    assert stored_files(media) == []


def test_a_png_with_a_page_appended_is_refused(tab, media):
    unsupported(upload(tab, png() + b"<html><script>alert(1)</script></html>", "poly.png"))
    assert Attachment.objects.count() == 0


def test_a_truncated_image_is_refused(tab, media):
    image = png(64, 64, (10, 200, 30))
    unsupported(upload(tab, image[: len(image) // 2], "cut.png", "image/png"))
    truncated_jpeg = jpeg(64, 64)
    unsupported(upload(tab, truncated_jpeg[: len(truncated_jpeg) - 200], "cut.jpg", "image/jpeg"))
    assert Attachment.objects.count() == 0


def test_an_empty_file_a_missing_field_and_a_json_body_are_400(tab, media):
    response = upload(tab, b"", "empty.txt")
    assert response.status_code == 400 and response.json()["code"] == "invalid"
    response = tab.post("/api/attachments", files={"other": ("a.txt", b"hello", "text/plain")})
    assert response.status_code == 400 and "'file'" in response.json()["error"]
    response = tab.post("/api/attachments", json={"file": "hello"})
    assert response.status_code == 400


def test_a_name_with_a_path_and_control_characters_is_cleaned(tab, media):
    body = uploaded(tab, b"hello", "C:\\Users\\me\\pa\u202ess\u200bwd.txt")
    assert body["name"] == "passwd.txt"


# --- size: refused before the body is read ----------------------------------------------------


def test_an_upload_over_the_limit_is_refused_413_before_its_body_is_sent(server, settings, media):
    """Headers alone, announcing 50 MiB: the answer comes without the body ever being sent."""
    settings.CHAT_MAX_ATTACHMENT_BYTES = 1000
    address = urlsplit(server.url)
    with socket.create_connection((address.hostname, address.port), timeout=10) as sock:
        head = (
            "POST /api/attachments HTTP/1.1\r\nHost: 127.0.0.1\r\n"
            "Content-Type: multipart/form-data; boundary=x\r\n"
            f"Content-Length: {50 * 2**20}\r\n\r\n"
        )
        sock.sendall(head.encode())
        data = b""
        while b"\r\n\r\n" not in data:
            received = sock.recv(65536)
            assert received, data
            data += received
    status_line = data.split(b"\r\n", 1)[0]
    assert b" 413 " in status_line
    assert b'"code": "too_large"' in data
    assert Attachment.objects.count() == 0


def test_a_file_over_the_limit_within_the_body_limit_is_413(tab, settings, media):
    settings.CHAT_MAX_ATTACHMENT_BYTES = 1000
    response = upload(tab, b"a" * 1001, "big.txt")
    assert response.status_code == 413 and response.json()["code"] == "too_large"
    assert uploaded(tab, b"a" * 1000, "fits.txt")["size"] == 1000


def test_the_json_api_keeps_its_own_smaller_limit(tab, settings, media):
    settings.CHAT_MAX_BODY_BYTES = 1000
    response = tab.post("/api/conversations", json={"title": "x" * 2000})
    assert response.status_code == 413
    assert uploaded(tab, b"b" * 5000, "bigger-than-json.txt")["size"] == 5000


def test_the_upload_limit_follows_the_apps_mount_prefix(server, settings, media):
    """Mounted under /assistant/: the file's limit is that path's, the JSON limit every other's."""
    import httpx

    settings.ROOT_URLCONF = "tests.urls_mounted"
    settings.CHAT_MAX_BODY_BYTES = 10_000
    settings.CHAT_MAX_ATTACHMENT_BYTES = 50_000
    with httpx.Client(base_url=server.url, timeout=10) as http:
        files = {"file": ("big.txt", b"x" * 20_000, "text/plain")}
        response = http.post("/assistant/api/attachments", files=files)
        assert response.status_code == 201, response.text
        assert response.json()["url"].startswith("/assistant/api/attachments/")
        http.cookies.clear()  # a client without a session, as curl: no token needed
        files = {"file": ("bigger.txt", b"x" * 60_000, "text/plain")}
        assert http.post("/assistant/api/attachments", files=files).status_code == 413
        big_json = http.post("/assistant/api/conversations", content=b" " * 20_000)
        assert big_json.status_code == 413


# --- served to the owner only -----------------------------------------------------------------


def test_a_file_is_served_to_its_owner_with_its_type_disposition_and_nosniff(tab, new_tab, media):
    image = png()
    body = uploaded(tab, image, "red dot.png")
    response = tab.get(body["url"])
    assert response.status_code == 200 and response.content == image
    assert response.headers["Content-Type"] == "image/png"
    assert response.headers["Content-Disposition"] == 'inline; filename="red dot.png"'
    assert response.headers["X-Content-Type-Options"] == "nosniff"
    assert "sandbox" in response.headers["Content-Security-Policy"]
    assert response.headers["Cache-Control"].startswith("private")
    text = uploaded(tab, "<b>not html</b> — ünïcode".encode()[8:], "résumé.txt")
    response = tab.get(text["url"])
    assert response.headers["Content-Type"] == "text/plain; charset=utf-8"
    assert response.headers["Content-Disposition"].startswith("attachment;")
    assert "filename*=utf-8''r%C3%A9sum%C3%A9.txt" in response.headers["Content-Disposition"]

    other = new_tab()
    for url in (body["url"], "/api/attachments/not-a-uuid", "/api/attachments/" + "0" * 32):
        response = other.get(url)
        assert response.status_code == 404 and response.json()["code"] == "not_found"


def test_an_upload_needs_the_csrf_token_and_is_refused_cross_site(tab, media):
    response = tab.http.post("/api/attachments", files={"file": ("a.txt", b"hello", "text/plain")})
    assert response.status_code == 403 and response.json()["code"] == "csrf"
    response = tab.post(
        "/api/attachments",
        files={"file": ("a.txt", b"hello", "text/plain")},
        headers={"Origin": "https://evil.example", "Sec-Fetch-Site": "cross-site"},
    )
    assert response.status_code == 403
    assert Attachment.objects.count() == 0


# --- sent with a message ----------------------------------------------------------------------


def test_files_sent_with_a_message_reach_the_model_and_show_on_the_message(tab, media, model_calls):
    image, document = png(3, 2), pdf("Page one")
    first = uploaded(tab, image, "red.png")
    second = uploaded(tab, document, "doc.pdf")
    conversation = tab.conversation(model=FAKE)
    sent = tab.send(QUICK, conversation["id"], attachments=[first["id"], second["id"]])
    user = sent["user_message"]
    assert [a["id"] for a in user["attachments"]] == [first["id"], second["id"]]
    assert set(user["attachments"][0]) >= {"id", "name", "content_type", "size", "url"}
    assert sent["assistant_message"]["attachments"] == []
    tab.wait_finished(sent["assistant_message"]["id"], conversation["id"])

    turn = model_calls.prompts[-1].turns[-1]
    assert [a.name for a in turn.attachments] == ["red.png", "doc.pdf"]
    assert turn.attachments[0].data == image and turn.attachments[0].content_type == "image/png"
    assert (turn.attachments[0].width, turn.attachments[0].height) == (3, 2)
    assert turn.attachments[1].data == document and "Page one" in turn.attachments[1].text

    shown = tab.get(f"/api/conversations/{conversation['id']}").json()
    assert shown["messages"][0]["attachments"] == user["attachments"]

    # The next send sees the earlier turn with its files; the files are sent once only.
    tab.send(QUICK, conversation["id"])
    earlier = model_calls.prompts[-1].turns[0]
    assert [a.name for a in earlier.attachments] == ["red.png", "doc.pdf"]
    response = tab.post(
        f"/api/conversations/{conversation['id']}/messages",
        json={"content": QUICK, "attachments": [first["id"]]},
    )
    assert response.status_code == 400 and response.json()["code"] == "invalid"


def test_files_of_turns_outside_the_context_budget_are_not_read(tab, media, settings, model_calls):
    """The old turn's file is gone from the storage: had it been read, the send would fail."""
    old = uploaded(tab, png(), "old.png")
    conversation = tab.conversation(model=FAKE)
    sent = tab.send(QUICK, conversation["id"], attachments=[old["id"]])
    tab.wait_finished(sent["assistant_message"]["id"], conversation["id"])
    for path in stored_files(media):
        path.unlink()
    settings.CHAT_CONTEXT_CHARS = len(QUICK) + 10  # the new message alone fits
    reply = tab.send(QUICK, conversation["id"])["assistant_message"]
    assert tab.wait_finished(reply["id"], conversation["id"])["status"] == "complete"
    assert [t.role for t in model_calls.prompts[-1].turns] == ["user"]


def test_a_file_gone_from_the_storage_is_left_out_of_the_prompt_and_404s(tab, media, model_calls, caplog):
    old = uploaded(tab, png(), "old.png")
    conversation = tab.conversation(model=FAKE)
    sent = tab.send(QUICK, conversation["id"], attachments=[old["id"]])
    tab.wait_finished(sent["assistant_message"]["id"], conversation["id"])
    for path in stored_files(media):
        path.unlink()
    reply = tab.send(QUICK, conversation["id"])["assistant_message"]
    assert tab.wait_finished(reply["id"], conversation["id"])["status"] == "complete"
    assert model_calls.prompts[-1].turns[0].attachments == ()
    assert "gone from the storage" in caplog.text
    assert tab.get(old["url"]).status_code == 404


def test_regenerate_keeps_the_questions_files_and_edit_takes_new_ones(tab, media, model_calls):
    first = uploaded(tab, png(), "one.png")
    conversation = tab.conversation(model=FAKE)
    sent = tab.send(QUICK, conversation["id"], attachments=[first["id"]])
    tab.wait_finished(sent["assistant_message"]["id"], conversation["id"])
    response = tab.post(f"/api/conversations/{conversation['id']}/regenerate", json={})
    assert response.status_code == 201, response.text
    tab.wait_finished(response.json()["assistant_message"]["id"], conversation["id"])
    assert [a.name for a in model_calls.prompts[-1].turns[-1].attachments] == ["one.png"]

    second = uploaded(tab, b"some notes", "notes.txt")
    edited = tab.send(QUICK, conversation["id"], edit=sent["user_message"]["id"], attachments=[second["id"]])
    assert [a["name"] for a in edited["user_message"]["attachments"]] == ["notes.txt"]
    tab.wait_finished(edited["assistant_message"]["id"], conversation["id"])
    assert [a.name for a in model_calls.prompts[-1].turns[-1].attachments] == ["notes.txt"]


def test_a_message_may_be_files_alone_and_names_the_conversation(tab, media):
    first = uploaded(tab, png(), "holiday.png")
    response = tab.post("/api/conversations", json={"content": "", "attachments": [first["id"]]})
    assert response.status_code == 201, response.text
    assert response.json()["title"] == "holiday.png"
    response = tab.post("/api/conversations", json={"content": "  "})
    assert response.status_code == 400


@pytest.mark.parametrize(
    "value",
    [
        "not-a-list",
        [1, 2],
        ["not-a-uuid"],
        ["00000000-0000-0000-0000-000000000000"],
        [str(i) * 8 for i in range(11)],
    ],
)
def test_bad_attachment_ids_are_400_and_store_nothing(tab, media, value):
    conversation = tab.conversation(model=FAKE)
    response = tab.post(
        f"/api/conversations/{conversation['id']}/messages", json={"content": QUICK, "attachments": value}
    )
    assert response.status_code == 400 and response.json()["code"] == "invalid"
    assert Message.objects.count() == 0


def test_another_owners_file_cannot_be_sent(tab, new_tab, media):
    other = new_tab()
    theirs = uploaded(other, png(), "theirs.png")
    conversation = tab.conversation(model=FAKE)
    response = tab.post(
        f"/api/conversations/{conversation['id']}/messages",
        json={"content": QUICK, "attachments": [theirs["id"]]},
    )
    assert response.status_code == 400 and response.json()["code"] == "invalid"
    assert Message.objects.count() == 0
    assert Attachment.objects.get(pk=theirs["id"]).message is None


def test_a_model_without_vision_refuses_images_before_anything_is_stored(tab, media, settings, model_calls):
    settings.CHAT_NO_VISION_MODELS = ["script:*"]
    image = uploaded(tab, png(), "red.png")
    conversation = tab.conversation(model=FAKE)
    response = tab.post(
        f"/api/conversations/{conversation['id']}/messages",
        json={"content": QUICK, "attachments": [image["id"]]},
    )
    assert response.status_code == 400 and response.json()["code"] == "invalid"
    assert "cannot see images" in response.json()["error"]
    assert Message.objects.count() == 0 and len(model_calls) == 0
    assert Attachment.objects.get(pk=image["id"]).message is None
    # Text files still go to it.
    notes = uploaded(tab, b"plain notes", "notes.txt")
    tab.send(QUICK, conversation["id"], attachments=[notes["id"]])


def test_regenerating_a_question_with_an_image_needs_vision_and_later_turns_drop_it(
    tab, media, settings, model_calls
):
    image = uploaded(tab, png(), "red.png")
    conversation = tab.conversation(model=FAKE)
    sent = tab.send(QUICK, conversation["id"], attachments=[image["id"]])
    tab.wait_finished(sent["assistant_message"]["id"], conversation["id"])
    settings.CHAT_NO_VISION_MODELS = ["script:*"]
    count = Message.objects.count()
    response = tab.post(f"/api/conversations/{conversation['id']}/regenerate", json={})
    assert response.status_code == 400 and "cannot see images" in response.json()["error"]
    assert Message.objects.count() == count
    reply = tab.send(QUICK, conversation["id"])["assistant_message"]
    tab.wait_finished(reply["id"], conversation["id"])
    earlier = model_calls.prompts[-1].turns[0]
    assert earlier.role == "user" and earlier.attachments == ()


# --- deleted with their rows ------------------------------------------------------------------


def test_deleting_a_conversation_deletes_its_files_from_the_storage(tab, media):
    first = uploaded(tab, png(), "red.png")
    conversation = tab.conversation(model=FAKE)
    sent = tab.send(QUICK, conversation["id"], attachments=[first["id"]])
    tab.wait_finished(sent["assistant_message"]["id"], conversation["id"])
    kept = uploaded(tab, b"not sent", "kept.txt")
    assert len(stored_files(media)) == 2
    assert tab.delete(f"/api/conversations/{conversation['id']}").status_code == 204
    assert not Attachment.objects.filter(pk=first["id"]).exists()
    assert [p.name for p in stored_files(media)] == [kept["id"]]
    assert tab.get(first["url"]).status_code == 404


def test_chat_prune_deletes_uploads_never_sent_and_their_files(tab, media):
    old = uploaded(tab, b"forgotten", "old.txt")
    recent = uploaded(tab, b"just now", "recent.txt")
    sent = uploaded(tab, b"sent long ago", "sent.txt")
    conversation = tab.conversation(model=FAKE)
    tab.send(QUICK, conversation["id"], attachments=[sent["id"]])
    long_ago = timezone.now() - timezone.timedelta(days=3)
    Attachment.objects.filter(pk__in=[old["id"], sent["id"]]).update(created_at=long_ago)
    out = io.StringIO()
    call_command("chat_prune", "--unsent-older-than", "24h", stdout=out)
    assert "1 upload" in out.getvalue()
    assert set(Attachment.objects.values_list("name", flat=True)) == {"recent.txt", "sent.txt"}
    assert sorted(p.name for p in stored_files(media)) == sorted([recent["id"], sent["id"]])
    assert Conversation.objects.count() == 1


def test_deleting_a_message_in_the_admin_deletes_its_files(tab, media):
    from chat import history

    first = uploaded(tab, png(), "red.png")
    conversation = tab.conversation(model=FAKE)
    sent = tab.send(QUICK, conversation["id"], attachments=[first["id"]])
    tab.wait_finished(sent["assistant_message"]["id"], conversation["id"])
    history.messages_delete(Message.objects.filter(pk=sent["user_message"]["id"]))
    assert stored_files(media) == [] and Attachment.objects.count() == 0


def test_a_visitor_who_signs_in_keeps_its_unsent_files(tab, media, django_user_model):
    file = uploaded(tab, b"draft", "draft.txt")
    django_user_model.objects.create_user("keeper", password="pw-keeper-123")
    page = tab.get("/accounts/login/")
    assert page.status_code == 200
    response = tab.http.post(
        "/accounts/login/",
        data={
            "username": "keeper",
            "password": "pw-keeper-123",
            "csrfmiddlewaretoken": tab.csrf["X-CSRFToken"],
        },
    )
    assert response.status_code == 302, response.text
    assert tab.get(file["url"]).content == b"draft"
    assert Attachment.objects.get(pk=file["id"]).user.username == "keeper"


def test_the_export_carries_the_files_metadata_and_the_import_takes_it(tab, media):
    from chat import history, history_import

    first = uploaded(tab, png(3, 2), "red.png")
    conversation = tab.conversation(model=FAKE)
    sent = tab.send(QUICK, conversation["id"], attachments=[first["id"]])
    tab.wait_finished(sent["assistant_message"]["id"], conversation["id"])
    exported = history.conversations_export(Conversation.objects.all())
    (record,) = exported["conversations"]
    files = record["messages"][0]["attachments"]
    assert [(f["id"], f["name"], f["width"]) for f in files] == [(first["id"], "red.png", 3)]
    Conversation.objects.all().delete()
    history_import.conversations_import(json.loads(json.dumps(exported)))
    assert Message.objects.count() == 2 and Attachment.objects.count() == 0  # metadata only


def test_deleting_a_user_deletes_their_files(tab, media, django_user_model):
    user = django_user_model.objects.create_user("filer", password="pw-filer-123")
    data = png()
    attachment = Attachment.objects.create(
        user=user, name="x.png", content_type="image/png", size=len(data), sha256="0" * 64
    )
    attachment.file.save(str(attachment.pk), ContentFile(data))
    assert len(stored_files(media)) == 1
    user.delete()
    assert stored_files(media) == []


# --- limits -----------------------------------------------------------------------------------


def test_uploads_over_the_owners_limit_are_429_in_memory_and_in_redis(tab, new_tab, media, lim):
    lim.CHAT_LIMIT_ATTACHMENTS = "2/hour"
    uploaded(tab, b"one", "1.txt")
    uploaded(tab, b"two", "2.txt")
    response = upload(tab, b"three", "3.txt")
    assert response.status_code == 429
    body = response.json()
    assert body["code"] == "rate_limited" and body["limit"] == "attachments"
    assert "files uploaded" in body["error"]
    assert response.headers["Retry-After"] == str(body["retry_after"]) and body["retry_after"] >= 1
    assert Attachment.objects.count() == 2
    uploaded(new_tab(), b"another visitor", "4.txt")  # counted per owner


def test_uploads_from_clients_without_cookies_are_limited_by_address(server, media, lim):
    """A client that keeps no cookie is a new visitor each time: its address counts, four
    visitors' worth."""
    import httpx

    lim.CHAT_LIMIT_ATTACHMENTS = "1/hour"
    with httpx.Client(base_url=server.url) as http:
        codes = []
        for number in range(5):
            http.cookies.clear()
            response = http.post("/api/attachments", files={"file": (f"{number}.txt", b"hi", "text/plain")})
            codes.append(response.status_code)
    assert codes == [201, 201, 201, 201, 429]
    assert response.json()["limit"] == "attachments_ip"


# --- the admin --------------------------------------------------------------------------------


def test_the_admin_lists_files_read_only_and_previews_them_to_staff_only(
    client, db, media, django_user_model
):
    from chat.attachments import attachment_create
    from chat.services import Owner

    image = png(5, 4)
    attachment = attachment_create(owner=Owner(visitor="v" * 32), data=image, name="shot.png")
    file_url = reverse("admin:chat_attachment_file", args=[attachment.pk])
    assert client.get(file_url).status_code == 302  # to the sign-in page
    client.force_login(django_user_model.objects.create_superuser("root", password="pw-root-123"))
    page = client.get(reverse("admin:chat_attachment_changelist"))
    assert page.status_code == 200
    html = page.content.decode()
    assert "shot.png" in html and "image/png" in html and "not sent" in html and file_url in html
    detail = client.get(reverse("admin:chat_attachment_change", args=[attachment.pk]))
    assert detail.status_code == 200 and "5 × 4" in detail.content.decode()
    assert 'name="name"' not in detail.content.decode()  # a record, not a form
    served = client.get(file_url)
    assert served.status_code == 200 and served.content == image
    assert served["Content-Type"] == "image/png" and served["X-Content-Type-Options"] == "nosniff"


# --- on PostgreSQL ----------------------------------------------------------------------------


def test_files_round_trip_on_postgres_and_go_with_their_conversation(postgres_database, tmp_path):
    """A uvicorn of its own on PostgreSQL: upload, send, read, delete; the storage follows."""
    import httpx
    import psycopg

    from tests.conftest import free_port
    from tests.processes import PYTHON, ServerProcess, migrate, server_env

    database, name, admin = postgres_database
    media = tmp_path / "media"
    env = server_env(database, MEDIA_ROOT=str(media), CHAT_DEMO_RATE="0")
    migrate(env)
    port = free_port()
    command = [PYTHON, "-m", "uvicorn", "project.asgi:application", "--port", str(port)]
    server = ServerProcess(command, env, port).start()
    try:
        with httpx.Client(base_url=server.url, timeout=10) as http:
            http.get("/")
            csrf = {"X-CSRFToken": http.cookies["csrftoken"]}
            files = {"file": ("dot.png", png(), "image/png")}
            body = http.post("/api/attachments", files=files, headers=csrf).json()
            created = http.post(
                "/api/conversations",
                json={"content": "What is it?", "attachments": [body["id"]]},
                headers=csrf,
            )
            assert created.status_code == 201, created.text
            conversation = created.json()
            assert conversation["user_message"]["attachments"][0]["id"] == body["id"]
            shown = http.get(f"/api/conversations/{conversation['id']}").json()
            assert shown["messages"][0]["attachments"][0]["name"] == "dot.png"
            assert len(stored_files(media)) == 1
            assert http.delete(f"/api/conversations/{conversation['id']}", headers=csrf).status_code == 204
            assert stored_files(media) == []
        with psycopg.connect(admin.info.dsn, dbname=name) as conn:
            assert conn.execute("SELECT count(*) FROM chat_attachment").fetchone()[0] == 0
    finally:
        server.stop()
