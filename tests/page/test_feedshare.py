"""Feedback thumbs and the share dialog in real Chromium against the real server."""

import re

try:
    from playwright.sync_api import expect
except ImportError:  # the `browser` fixture skips these tests (fails them in CI) and says why
    expect = None

from chat.models import Message, Share
from tests.fakes import script
from tests.page.test_page import reply, send, use_script_model


def finished(page, text: str):
    page.goto("/")
    use_script_model(page)
    send(page, script({"say": text}))
    expect(reply(page)).to_have_attribute("data-status", "complete")
    return reply(page)


def test_thumbs_up_shows_pressed_after_a_reload_and_pressing_it_again_clears_it(page):
    answer = finished(page, "A fine answer.")
    mid = answer.get_attribute("data-id")
    up, down = answer.locator(".thumb-up"), answer.locator(".thumb-down")
    expect(up).to_have_attribute("aria-pressed", "false")
    up.click()
    expect(up).to_have_attribute("aria-pressed", "true")
    expect(down).to_have_attribute("aria-pressed", "false")
    expect(answer.locator(".feedback-comment")).to_be_hidden()  # a comment is asked after a thumbs-down
    assert Message.objects.get(pk=mid).feedback_rating == 1
    page.reload()
    up = reply(page).locator(".thumb-up")
    expect(up).to_have_attribute("aria-pressed", "true")
    expect(reply(page).locator(".thumb-down")).to_have_attribute("aria-pressed", "false")
    up.click()
    expect(up).to_have_attribute("aria-pressed", "false")
    assert Message.objects.get(pk=mid).feedback_rating is None


def test_thumbs_down_asks_for_a_comment_that_is_kept(page):
    answer = finished(page, "A poor answer.")
    mid = answer.get_attribute("data-id")
    answer.locator(".thumb-down").click()
    form = answer.locator(".feedback-comment")
    expect(form).to_be_visible()
    expect(form.locator("textarea")).to_be_focused()
    form.locator("textarea").fill("It missed the <b>point</b>.")
    form.locator(".feedback-send").click()
    expect(form).to_be_hidden()
    stored = Message.objects.get(pk=mid)
    assert (stored.feedback_rating, stored.feedback_comment) == (-1, "It missed the <b>point</b>.")
    expect(answer.locator(".thumb-down")).to_have_attribute("aria-pressed", "true")
    page.reload()
    expect(reply(page).locator(".thumb-down")).to_have_attribute("aria-pressed", "true")


def test_the_share_dialog_gives_a_url_that_opens_in_a_fresh_browser_and_revokes_it(page, browser):
    finished(page, "Shared words here.")
    expect(page.locator("#share")).to_be_visible()
    page.click("#share")
    dialog = page.locator("#share-dialog")
    expect(dialog).to_be_visible()
    url_field = dialog.locator("#share-url")
    expect(url_field).to_have_value(re.compile(r"^http://127\.0\.0\.1:[0-9]+/s/[A-Za-z0-9_-]{32}/$"))
    expect(dialog.locator("#share-revoke")).to_be_visible()
    url = url_field.input_value()
    assert url.startswith(page.evaluate("location.origin") + "/s/")
    assert Share.objects.count() == 1

    stranger = browser.new_context(java_script_enabled=False)  # no cookie, and no script either
    try:
        shared = stranger.new_page()
        response = shared.goto(url)
        assert response.status == 200
        expect(shared.locator(".shared-assistant")).to_contain_text("Shared words here.")
        assert shared.locator("textarea, input, form").count() == 0

        dialog.locator("#share-revoke").click()
        expect(url_field).to_be_hidden()
        assert shared.goto(url).status == 404
    finally:
        stranger.close()
    dialog.locator("#share-close").click()
    expect(dialog).to_be_hidden()


def test_a_new_chat_has_no_share_button(page):
    page.goto("/")
    expect(page.locator("#share")).to_be_hidden()
