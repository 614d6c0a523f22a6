"""The search box over the conversation list, in real Chromium (contract v3, "Search")."""

try:
    from playwright.sync_api import expect
except ImportError:  # the `browser` fixture skips these tests (fails them in CI) and says why
    expect = None

from tests.page.test_page import conversation_id, reply, send


def test_the_search_box_lists_matches_with_marked_snippets_and_escape_brings_the_list_back(page):
    page.goto("/")
    send(page, "Where is the best café in Zürich? <img src=x onerror=alert(1)>")
    expect(reply(page)).to_have_attribute("aria-busy", "false")
    cafe = conversation_id(page)
    page.click("#new-chat")
    send(page, "Bananas are yellow")
    expect(reply(page)).to_have_attribute("aria-busy", "false")
    expect(page.locator("#conversations li.conv")).to_have_count(2)

    box = page.get_by_label("Search conversations")
    box.fill("CAFE zurich")
    hits = page.locator("#search-results li.search-hit")
    expect(hits).to_have_count(1)
    expect(page.locator("#conversations")).to_be_hidden()
    snippet = hits.first.locator(".snippet")
    expect(snippet).to_contain_text("<img src=x onerror=alert(1)>")  # text, not markup
    expect(snippet.locator("mark")).to_have_text(["café", "Zürich"])
    assert snippet.locator("img").count() == 0

    box.fill("nothing like it")
    expect(page.locator("#search-status")).to_have_text("No conversation matches.")
    expect(hits).to_have_count(0)
    box.fill('"* NEAR( -:^')
    expect(page.locator("#search-status")).to_have_text("No conversation matches.")

    box.press("Escape")
    expect(box).to_have_value("")
    expect(page.locator("#conversations li.conv")).to_have_count(2)
    expect(page.locator("#search-results")).to_be_hidden()

    box.fill("café")
    hits.first.locator(".conv-link").click()
    expect(page).to_have_url(f"/c/{cafe}/")
    expect(page.locator(".msg.user .text")).to_contain_text("best café in Zürich")
