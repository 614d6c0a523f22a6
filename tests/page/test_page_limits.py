"""The page with the server's real limits and answer cache: a 429's sentence and countdown, and
the mark on a cached answer."""

import re
import uuid

try:
    from playwright.sync_api import expect
except ImportError:  # the `browser` fixture skips these tests (fails them in CI) and says why
    expect = None

from tests.fakes import script
from tests.page.test_page import reply, send, use_script_model


def test_a_refused_send_shows_the_servers_reason_and_a_countdown(page, settings):
    settings.CHAT_LIMITS_PREFIX = f"test-{uuid.uuid4().hex[:12]}"
    settings.CHAT_LIMIT_MESSAGES = "1/day"
    page.goto("/")
    use_script_model(page)
    send(page, script({"say": "Once."}, {"finish": "stop"}))
    expect(reply(page)).to_have_attribute("data-status", "complete")
    send(page, script({"say": "Twice."}, {"finish": "stop"}))
    notice = page.locator("#notice")
    expect(notice).to_contain_text("Too many messages from you: the limit is 1 per day.")
    # The countdown in words a person reads ("12 h 38 min"), whatever is left of the window.
    expect(notice).to_contain_text(re.compile(r"You can try again in (\d+ h \d+ min|\d+ min \d+ s|\d+ s)\."))
    expect(notice.locator(".retry")).to_be_disabled()
    expect(page.locator(".msg.assistant")).to_have_count(1)


def test_a_cached_answer_has_a_small_mark(page, settings):
    settings.CHAT_CACHE_TTL = 60
    question = script({"say": f"The answer is {uuid.uuid4().hex}."}, {"finish": "stop"})
    page.goto("/")
    use_script_model(page)
    send(page, question)
    expect(reply(page)).to_have_attribute("data-status", "complete")
    expect(reply(page).locator(".cached-mark")).to_be_hidden()
    page.goto("/")
    use_script_model(page)
    send(page, question)
    expect(reply(page)).to_have_attribute("data-status", "complete")
    expect(reply(page).locator(".cached-mark")).to_be_visible()
    page.reload()  # shown from the stored message too
    expect(reply(page).locator(".cached-mark")).to_be_visible()
