"""The admin in real Chromium (issue 32): the transcript's Markdown drawn safely by the page's
renderer, the message list within 1280 px, and no "Add conversation" button."""

import pytest

try:
    from playwright.sync_api import expect
except ImportError:  # the `browser` fixture skips these tests (fails them in CI) and says why
    expect = None

from django.urls import reverse

from chat.models import Message
from tests.test_admin import make

HOSTILE = """Some **bold** words and a list:

- one
- two

<img src=x onerror="window.pwned = 'img'">

[a link](javascript:window.pwned='link') and <a href="javascript:window.pwned='a'">another</a>

<script>window.pwned = 'script'</script>

| a | b |
| - | - |
| 1 | 2 |

```python
print("hi")
```
"""


@pytest.fixture
def operator(page, django_user_model):
    """The page, signed in to the admin through its form as a superuser."""
    django_user_model.objects.create_user("operator", password="pw", is_staff=True, is_superuser=True)
    page.goto("/admin/login/")
    page.fill("#id_username", "operator")
    page.fill("#id_password", "pw")
    page.click("input[type=submit]")
    expect(page.locator("#user-tools")).to_contain_text("operator")
    return page


def test_the_transcript_draws_a_replys_markdown_and_nothing_hostile_runs(operator):
    page = operator
    dialogs: list[str] = []
    page.on("dialog", lambda dialog: (dialogs.append(dialog.message), dialog.dismiss()))
    conversation = make("Hostile", "Show me <b>this</b> **as typed**", HOSTILE)
    page.goto(reverse("admin:chat_conversation_change", args=[conversation.pk]))
    reply = page.locator(".chat-role-assistant .chat-text")
    expect(reply).to_have_class("chat-text markdown chat-rendered")
    expect(reply.locator("strong")).to_have_text("bold")
    expect(reply.locator("li")).to_have_count(2)
    expect(reply.locator("table td")).to_have_text(["1", "2"])
    expect(reply.locator("pre code")).to_have_text('print("hi")')
    # The raw HTML shows as the text it is; no image, script or javascript: link is in the DOM.
    expect(reply).to_contain_text("<img src=x onerror=")
    expect(reply).to_contain_text("<script>window.pwned = 'script'</script>")
    assert reply.locator("img, script").count() == 0
    hrefs = reply.locator("a").evaluate_all("links => links.map((a) => a.getAttribute('href'))")
    assert not [href for href in hrefs if href and href.strip().lower().startswith("javascript:")]
    for link in reply.locator("a").all():
        link.click()  # were a javascript: URL left, a click would run it
    assert page.evaluate("window.pwned") is None and dialogs == []
    # The question stays plain text, as the page shows it.
    question = page.locator(".chat-role-user .chat-text")
    expect(question).to_have_text("Show me <b>this</b> **as typed**")
    assert question.locator("b, strong").count() == 0


def test_the_message_list_fits_at_1280_px(operator):
    page = operator
    page.set_viewport_size({"width": 1280, "height": 800})
    long = "word " * 200
    for n in range(30):
        conversation = make(
            f"Conversation {n}",
            f"Question {n} {long}",
            f"Answer {n} {long}",
            model="openai:a-rather-long-model-name-2026-12-01-preview",
            status="error",
        )
        conversation.messages.filter(role="assistant").update(
            error="The provider refused the request: " + "details " * 40, error_code="provider_error"
        )
    page.goto(reverse("admin:chat_message_changelist"))
    expect(page.locator("#result_list tbody tr")).to_have_count(60)
    widths = page.evaluate(
        """() => [document.documentElement, document.querySelector('#changelist .results')].map(
            (el) => [el.scrollWidth, el.clientWidth])"""
    )
    for scroll_width, client_width in widths:
        assert scroll_width <= client_width, widths


def test_history_has_no_add_button_and_no_add_form(operator):
    page = operator
    make("Kept", "Hi", "Hello")
    page.goto(reverse("admin:chat_conversation_changelist"))
    expect(page.locator("#result_list")).to_contain_text("Kept")
    expect(page.get_by_role("link", name="Add conversation")).to_have_count(0)
    assert page.goto(reverse("admin:index")).ok
    expect(page.locator(".model-conversation .addlink")).to_have_count(0)
    assert page.goto("/admin/chat/conversation/add/").status == 403
    assert Message.objects.count() == 2
