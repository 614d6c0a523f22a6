"""The chat page in real Chromium against the real server: streaming, resuming, stopping,
the conversation list, errors and retries, editing, and rendering that stays correct."""

import re
import time

try:
    from playwright.sync_api import expect
except ImportError:  # the `browser` fixture skips these tests (fails them in CI) and says why
    expect = None

from chat.models import Conversation, Message
from tests.fakes import gate, script


def send(page, text: str) -> None:
    page.fill("#prompt", text)
    page.press("#prompt", "Enter")


def use_script_model(page) -> None:
    page.select_option("#model", "script:fake")


def reply(page, n: int = -1):
    replies = page.locator(".msg.assistant")
    return replies.last if n == -1 else replies.nth(n)


def wait_for(condition, timeout: float = 10.0):
    deadline = time.monotonic() + timeout
    while not (value := condition()):
        assert time.monotonic() < deadline, "timed out waiting"
        time.sleep(0.02)
    return value


def conversation_id(page) -> str:
    return page.url.rstrip("/").rsplit("/", 1)[-1]


def test_a_reply_streams_in_progressively_with_its_progress_shown(page):
    page.goto("/")
    use_script_model(page)
    steps = script({"gate": "start"}, {"say": "First words"}, {"gate": "more"}, {"say": " and the rest."})
    send(page, steps)
    # The message shows at once, before the model says anything, and the reply shows progress.
    expect(page.locator(".msg.user .text")).to_have_text(steps)
    expect(reply(page).locator(".progress")).to_have_text("Thinking…")
    expect(page.locator("#stop")).to_be_visible()
    gate("start").set()
    body = reply(page).locator(".markdown")
    expect(body).to_have_text("First words")  # the first look: part of the reply...
    assert not gate("more").is_set()
    expect(reply(page).locator(".progress")).to_be_hidden()
    gate("more").set()
    expect(body).to_have_text("First words and the rest.")  # ...the second: it grew
    expect(page.locator("#stop")).to_be_hidden()
    expect(page.locator("#send")).to_be_visible()
    expect(reply(page)).to_have_attribute("aria-busy", "false")
    assert page.locator("#log").get_attribute("aria-live") == "polite"
    assert Conversation.objects.filter(pk=conversation_id(page)).exists()


def test_shift_enter_adds_a_line_and_enter_sends(page):
    page.goto("/")
    use_script_model(page)
    page.fill("#prompt", '[{"say": "ok"}')
    page.press("#prompt", "Shift+Enter")
    page.keyboard.type("]")
    assert page.input_value("#prompt") == '[{"say": "ok"}\n]'
    page.press("#prompt", "Enter")
    expect(reply(page).locator(".markdown")).to_have_text("ok")
    assert page.input_value("#prompt") == ""


def test_reload_mid_reply_shows_the_whole_reply_once(page):
    page.goto("/")
    use_script_model(page)
    send(
        page,
        script({"say": "Alpha beta 🎉 "}, {"say": "gamma "}, {"gate": "rest"}, {"say": "delta 🦊 epsilon."}),
    )
    expect(reply(page).locator(".markdown")).to_have_text("Alpha beta 🎉 gamma")
    mid = reply(page).get_attribute("data-id")
    # Wait for a checkpoint, so that the reloaded page starts from stored text, then reload.
    wait_for(lambda: Message.objects.get(pk=mid).content)
    page.reload()
    expect(reply(page).locator(".markdown")).to_have_text("Alpha beta 🎉 gamma")
    expect(page.locator("#stop")).to_be_visible()
    gate("rest").set()
    expect(reply(page)).to_have_attribute("data-status", "complete")
    stored = Message.objects.get(pk=mid)
    assert stored.content == "Alpha beta 🎉 gamma delta 🦊 epsilon."
    assert reply(page).locator(".markdown").inner_text() == stored.content
    expect(page.locator(".msg.assistant")).to_have_count(1)


def test_stop_by_escape_and_after_a_reload_from_another_tab(page, new_page):
    page.goto("/")
    use_script_model(page)
    send(page, script({"say": "first partial"}, {"gate": "never"}, {"say": "never said"}))
    expect(reply(page).locator(".markdown")).to_have_text("first partial")
    page.keyboard.press("Escape")
    expect(reply(page).locator(".note")).to_have_text("Stopped.")
    expect(page.locator("#stop")).to_be_hidden()

    send(page, script({"say": "second partial"}, {"gate": "never"}, {"say": "never said"}))
    expect(reply(page).locator(".markdown")).to_have_text("second partial")
    mid = reply(page).get_attribute("data-id")
    page.reload()
    expect(page.locator("#stop")).to_be_visible()  # still stoppable after a reload
    other = new_page()
    other.goto(page.url)
    expect(reply(other).locator(".markdown")).to_have_text("second partial")
    other.click("#stop")
    for tab in (other, page):  # both tabs see the end
        expect(reply(tab).locator(".note")).to_have_text("Stopped.")
        expect(tab.locator("#stop")).to_be_hidden()
    stored = Message.objects.get(pk=mid)
    assert (stored.status, stored.content) == ("stopped", "second partial")
    expect(reply(page).locator(".markdown")).to_have_text("second partial")


def test_sidebar_lists_opens_renames_and_deletes_conversations(page, server):
    page.goto("/")
    send(page, "First question")
    expect(reply(page)).to_have_attribute("data-status", "complete")
    first = conversation_id(page)
    page.click("#new-chat")
    expect(page).to_have_url(f"{server.url}/")
    expect(page.locator(".msg")).to_have_count(0)
    send(page, "Second question")
    expect(reply(page)).to_have_attribute("data-status", "complete")
    second = conversation_id(page)
    links = page.locator(".conv-link")
    expect(links).to_have_text(["Second question", "First question"])  # newest first

    links.filter(has_text="First question").click()
    expect(page).to_have_url(f"{server.url}/c/{first}/")
    expect(page.locator(".msg.user .text")).to_have_text(["First question"])
    expect(page.locator("#title")).to_have_text("First question")
    expect(page.locator(".conv.active .conv-link")).to_have_text("First question")

    page.locator(f'.conv[data-id="{first}"] .rename').click()
    page.fill(".rename-input", "Trip to Lisbon")
    page.press(".rename-input", "Enter")
    expect(links).to_have_text(["Second question", "Trip to Lisbon"])
    expect(page.locator("#title")).to_have_text("Trip to Lisbon")
    assert Conversation.objects.get(pk=first).title == "Trip to Lisbon"

    page.go_back()  # history works: back to the second conversation
    expect(page.locator(".msg.user .text")).to_have_text(["Second question"])
    page.go_forward()
    expect(page.locator(".msg.user .text")).to_have_text(["First question"])

    page.locator(f'.conv[data-id="{first}"] .delete').click()
    page.locator(".confirm-delete").click()
    expect(links).to_have_text(["Second question"])
    expect(page.locator(".msg")).to_have_count(0)  # the open one was deleted: a new chat
    assert not Conversation.objects.filter(pk=first).exists()
    assert Conversation.objects.filter(pk=second).exists()
    page.goto(f"/c/{first}/")
    expect(page.locator("#notice")).to_contain_text("does not exist")


def test_a_failed_reply_shows_the_error_sentence_and_retry_answers_again(page):
    page.goto("/")
    use_script_model(page)
    sentence = "The model is overloaded; try again in a moment."
    send(
        page,
        script(
            {"say": "So far "},
            {"fail": sentence, "code": "rate_limited", "unless": "healed"},
            {"say": "so good."},
        ),
    )
    note = reply(page).locator(".note")
    expect(note).to_contain_text(sentence)
    expect(reply(page)).to_have_attribute("data-status", "error")
    gate("healed").set()
    note.locator(".retry").click()
    expect(reply(page)).to_have_attribute("data-status", "complete")
    expect(reply(page).locator(".markdown")).to_have_text("So far so good.")
    expect(reply(page).locator(".note")).to_be_hidden()
    expect(page.locator(".msg.assistant")).to_have_count(1)
    expect(reply(page).locator(".version-count")).to_have_text("2 / 2")  # the failed one stays
    replies = Message.objects.filter(conversation_id=conversation_id(page), role="assistant")
    assert [(m.status, m.content) for m in replies] == [("error", "So far "), ("complete", "So far so good.")]


def test_rate_limited_send_says_when_to_try_again(page):
    page.goto("/")
    refused = []

    def refuse_once(route):
        if not refused:
            refused.append(route.request.url)
            route.fulfill(
                status=429,
                headers={"Retry-After": "1", "Content-Type": "application/json"},
                body='{"error": "Too many messages at once.", "code": "rate_limited"}',
            )
        else:
            route.continue_()

    page.route("**/api/conversations", refuse_once)
    send(page, "Hello")
    notice = page.locator("#notice")
    expect(notice).to_contain_text("Too many messages at once. You can try again in 1 s.")
    expect(notice.locator(".retry")).to_be_disabled()
    expect(notice.locator(".retry")).to_be_enabled(timeout=3000)
    notice.locator(".retry").click()
    expect(reply(page)).to_have_attribute("data-status", "complete")
    expect(page.locator(".msg.user .text")).to_have_text(["Hello"])
    expect(notice).to_be_hidden()


def test_regenerate_and_edit_the_last_message_keep_the_old_versions(page):
    page.goto("/")
    use_script_model(page)
    send(page, script({"say": "one"}))
    expect(reply(page)).to_have_attribute("data-status", "complete")
    first_reply = reply(page).get_attribute("data-id")
    reply(page).locator(".regenerate").click()
    expect(reply(page)).not_to_have_attribute("data-id", first_reply)
    expect(reply(page)).to_have_attribute("data-status", "complete")
    expect(page.locator(".msg.assistant")).to_have_count(1)
    expect(reply(page).locator(".version-count")).to_have_text("2 / 2")

    page.locator(".msg.user .edit").click()
    assert page.input_value("#prompt") == script({"say": "one"})
    page.fill("#prompt", script({"say": "two"}))
    page.press("#prompt", "Enter")
    expect(page.locator(".msg.user .text")).to_have_text([script({"say": "two"})])
    expect(reply(page).locator(".markdown")).to_have_text("two")
    expect(reply(page)).to_have_attribute("data-status", "complete")
    expect(page.locator(".msg.user .version-count")).to_have_text("2 / 2")
    stored = Message.objects.filter(conversation_id=conversation_id(page)).order_by("created_at")
    assert [(m.role, m.content) for m in stored] == [
        ("user", script({"say": "one"})),
        ("assistant", "one"),
        ("assistant", "one"),
        ("user", script({"say": "two"})),
        ("assistant", "two"),
    ]


def test_edit_an_earlier_message_switch_versions_and_reload_shows_the_same_branch(page):
    page.goto("/")
    use_script_model(page)
    for word in ("first", "second"):
        send(page, script({"say": word}))
        expect(reply(page)).to_have_attribute("data-status", "complete")
    # Every message of yours can be edited, not only the last.
    page.locator(".msg.user").first.locator(".edit").click()
    page.fill("#prompt", script({"say": "premier"}))
    page.press("#prompt", "Enter")
    expect(page.locator(".msg.assistant .markdown")).to_have_text(["premier"])
    expect(reply(page)).to_have_attribute("data-status", "complete")
    user = page.locator(".msg.user").first
    expect(user.locator(".version-count")).to_have_text("2 / 2")
    expect(user.get_by_role("button", name="Next version")).to_be_disabled()
    # Back to the first version: the old branch, whole.
    user.get_by_role("button", name="Previous version").click()
    expect(page.locator(".msg.assistant .markdown")).to_have_text(["first", "second"])
    expect(page.locator(".msg.user").first.locator(".version-count")).to_have_text("1 / 2")
    expect(page.get_by_role("button", name="Next version")).to_be_focused()
    page.reload()
    expect(page.locator(".msg.assistant .markdown")).to_have_text(["first", "second"])
    expect(page.locator(".msg.user").first.locator(".version-count")).to_have_text("1 / 2")
    page.locator(".msg.user").first.get_by_role("button", name="Next version").click()
    expect(page.locator(".msg.assistant .markdown")).to_have_text(["premier"])


def test_a_dropped_network_shows_reconnecting_and_recovers(page, proxy):
    page.goto(f"{proxy.url}/")
    use_script_model(page)
    send(page, script({"say": "Before "}, {"gate": "offline"}, {"say": "after."}))
    expect(reply(page).locator(".markdown")).to_have_text("Before")
    proxy.drop()
    expect(reply(page).locator(".progress")).to_have_text("Reconnecting…")
    gate("offline").set()
    # EventSource reconnects by itself (after the server's `retry`) and resumes at its offset.
    expect(reply(page)).to_have_attribute("data-status", "complete")
    expect(reply(page).locator(".markdown")).to_have_text("Before after.")
    expect(reply(page).locator(".progress")).to_be_hidden()


def test_a_reply_deleted_while_the_network_was_down_says_so_instead_of_retrying(page, proxy):
    """The stream answers 404 once the reply is gone; the page then asks for that one message
    (GET /api/messages/<id>), hears 404 too, and ends the reply with a sentence."""
    page.goto(f"{proxy.url}/")
    use_script_model(page)
    send(page, script({"say": "Before "}, {"gate": "deleted"}, {"say": "after."}))
    expect(reply(page).locator(".markdown")).to_have_text("Before")
    asked: list[str] = []
    page.on("request", lambda request: asked.append(request.url))
    proxy.drop()
    Conversation.objects.filter(pk=conversation_id(page)).delete()  # before EventSource's retry (2 s)
    expect(reply(page)).to_have_attribute("data-status", "error")
    expect(reply(page)).to_contain_text("This reply no longer exists.")
    lookups = [url for url in asked if re.search(r"/api/messages/[0-9a-f-]{36}$", url)]
    assert lookups and not any("/api/conversations/" in url for url in asked), asked
    gate("deleted").set()


def test_streamed_rendering_matches_rendering_the_whole_reply_at_once(page, settings):
    # The incremental renderer commits blocks as they complete; the result must be exactly
    # what rendering the finished text in one go gives.
    settings.CHAT_DEMO_RATE = 3000
    settings.CHAT_DEMO_TOKENS = 1200
    page.goto("/")
    send(page, "Render me")
    expect(reply(page)).to_have_attribute("data-status", "complete")
    streamed, whole = page.evaluate(
        """async () => {
            const { renderMarkdown } = await import("/static/chat/markdown.js");
            const root = document.querySelector(".msg.assistant .markdown");
            const id = root.closest(".msg").dataset.id;
            const cid = location.pathname.split("/")[2];
            const conversation = await (await fetch(`/api/conversations/${cid}`)).json();
            const text = conversation.messages.find((m) => m.id === id).content;
            const box = document.createElement("div");
            box.append(renderMarkdown(text));
            const clone = root.cloneNode(true);
            clone.querySelector(".md-live")?.remove();
            return [clone.innerHTML, box.innerHTML];
        }"""
    )
    assert streamed.count('class="code-block"') >= 10
    assert streamed.count("hljs-") > 50  # highlighted
    assert streamed == whole


def test_the_page_has_a_strict_content_security_policy(page):
    response = page.goto("/")
    policy = response.headers["content-security-policy"]
    assert "script-src 'self'" in policy and "object-src 'none'" in policy


def test_on_a_phone_the_list_slides_in_and_out(page):
    page.set_viewport_size({"width": 390, "height": 800})
    page.goto("/")
    send(page, "From my phone")
    expect(reply(page)).to_have_attribute("data-status", "complete")
    expect(page.locator("#sidebar")).not_to_be_in_viewport()
    page.click("#open-sidebar")
    expect(page.locator("#sidebar")).to_be_in_viewport()
    expect(page.locator(".conv-link")).to_have_text(["From my phone"])
    page.keyboard.press("Escape")
    expect(page.locator("#sidebar")).not_to_be_in_viewport()
    assert page.evaluate("document.documentElement.scrollWidth") <= 390  # nothing overflows sideways
