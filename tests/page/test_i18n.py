"""The page in German in real Chromium (issue 32): the browser's language picks the strings of
the server's HTML and of the scripts alike (their catalogue, /jsi18n/)."""

import pytest

try:
    from playwright.sync_api import expect
except ImportError:  # the `browser` fixture skips these tests (fails them in CI) and says why
    expect = None

from tests.page.conftest import TIMEOUT_MS, Page


@pytest.fixture
def german_page(browser, server):
    """A tab of a browser set to German: it sends Accept-Language: de-DE."""
    context = browser.new_context(
        base_url=server.url, locale="de-DE", viewport={"width": 1100, "height": 800}
    )
    context.set_default_timeout(TIMEOUT_MS)
    recorder = Page(context.new_page())
    yield recorder.page
    context.close()
    assert not recorder.errors, recorder.errors


def test_a_german_browser_gets_the_page_and_its_scripts_in_german(german_page):
    page = german_page
    page.goto("/")
    expect(page.locator("html")).to_have_attribute("lang", "de")
    expect(page.locator("#send")).to_have_text("Senden")
    page.fill("#prompt", "Hallo")
    page.press("#prompt", "Enter")
    reply = page.locator(".msg.assistant").last
    expect(reply).to_have_attribute("aria-busy", "false")
    # Made by the scripts (reply.js, chat.js), in German from the catalogue.
    expect(reply.locator(".copy-reply")).to_have_text("Kopieren")
    expect(reply.locator(".copy-reply")).to_have_attribute("aria-label", "Die Antwort kopieren")
    expect(reply.locator(".regenerate")).to_have_text("Neu erzeugen")
    expect(reply).to_have_attribute("aria-label", "Antwort")
    expect(page.locator(".msg.user .edit")).to_have_text("Bearbeiten")
    expect(page.locator(".msg.user")).to_have_attribute("aria-label", "Sie")
    expect(page.locator("#announcer")).to_have_text("Antwort fertig.")
