"""axe-core in real Chromium finds no serious or critical violation on the chat page (issue 32).

The page is checked with a conversation open whose reply has everything the log can show
(reasoning, a tool step, code, a table, feedback buttons, a user's attached image), in the
light and dark themes, and at phone size with the list closed and open. axe-core comes from
tests/node (`make node`); without it these tests skip, and fail under CHAT_REQUIRE_SERVICES=1.
"""

import pathlib

import pytest

try:
    from playwright.sync_api import expect
except ImportError:  # the `browser` fixture skips these tests (fails them in CI) and says why
    expect = None

from tests.conftest import REQUIRE_SERVICES
from tests.page.conftest import TIMEOUT_MS
from tests.page.test_attachments import attach, chip, png
from tests.page.test_page import send

AXE = pathlib.Path(__file__).resolve().parents[1] / "node" / "node_modules" / "axe-core" / "axe.min.js"
PHONE = {"width": 390, "height": 844}
ANSWER = """Here is the plan:

| Day | City |
| --- | ---- |
| 1 | Lisbon |
| 2 | Porto |

```python
@cache
def total(count: int) -> int:
    # two pears, and None if none
    return len("pear") * count + 1 if count else None
```

```html
<p class="note">A <b>note</b></p>
```

Done, *really* **done** with `code`."""


@pytest.fixture
def context(browser, server):
    """The page's context, where the test may inject axe past the page's script-src 'self'."""
    context = browser.new_context(
        base_url=server.url, viewport={"width": 1100, "height": 800}, bypass_csp=True
    )
    context.set_default_timeout(TIMEOUT_MS)
    yield context
    context.close()


@pytest.fixture
def axe() -> pathlib.Path:
    if not AXE.exists():
        problem = "axe-core is not installed: make node (npm ci --prefix tests/node)"
        if REQUIRE_SERVICES:
            pytest.fail(problem)
        pytest.skip(problem)
    return AXE


def violations(page, axe: pathlib.Path) -> list[str]:
    """The serious and critical violations axe finds in the page as it is now, one line each."""
    page.add_script_tag(path=str(axe))
    found = page.evaluate(
        """async () => {
            const { violations } = await axe.run(document, { resultTypes: ["violations"] });
            return violations.filter((v) => ["serious", "critical"].includes(v.impact)).flatMap(
                (v) => v.nodes.map((n) => `${v.id} (${v.impact}) at ${n.target.join(" ")}: ${v.help}`
                    + ` — ${n.failureSummary.replace(/\\s+/g, " ")}`),
            );
        }"""
    )
    return found


def open_full_conversation(page, openai_vendor, settings) -> None:
    """A conversation whose reply shows every part of the log, and a chip in the composer."""
    settings.CHAT_TOOLS = ["tests.test_tools_vendors.fruit_price"]
    openai_vendor.play(
        {"reason": "The price of pears, from the market tool."},
        {"call": "fruit_price", "id": "c1", "args": ['{"name": "pear", "count": 2}']},
        {"finish": "tool_calls"},
    )
    openai_vendor.play({"say": ANSWER})
    page.goto("/")
    page.select_option("#model", "openai:gpt-test")
    send(page, "Plan a trip, and how much are two pears?")
    reply = page.locator(".msg.assistant").last
    expect(reply).to_have_attribute("aria-busy", "false")
    expect(reply.locator(".step")).to_have_count(2)
    expect(reply.locator(".markdown table")).to_be_visible()
    expect(reply.locator(".code-block")).to_have_count(2)
    page.reload()  # the stored conversation, as a visitor opens it
    expect(page.locator(".msg.assistant .markdown table")).to_be_visible()
    expect(page.locator(".msg.assistant .feedback .thumb")).to_have_count(2)
    attach(page, "red square.png", png())
    expect(chip(page, "red square.png").locator("img.chip-thumb")).to_be_visible()


def assert_no_violations(page, axe) -> None:
    found = violations(page, axe)
    assert not found, "axe-core found serious or critical violations:\n" + "\n".join(found)


@pytest.mark.parametrize("scheme", ["light", "dark"])
def test_the_page_with_a_conversation_open_has_no_serious_violation(
    page, axe, openai_vendor, settings, scheme
):
    page.emulate_media(color_scheme=scheme)
    open_full_conversation(page, openai_vendor, settings)
    reply = page.locator(".msg.assistant").last
    reply.locator(".step.tool summary").click()  # an open step is checked too
    reply.get_by_role("button", name="Bad reply").click()  # pressed, with its comment form
    expect(reply.locator(".feedback-comment textarea")).to_be_visible()
    assert_no_violations(page, axe)


@pytest.mark.parametrize("scheme", ["light", "dark"])
def test_at_phone_size_with_the_list_closed_and_open_there_is_no_serious_violation(
    page, axe, openai_vendor, settings, scheme
):
    page.emulate_media(color_scheme=scheme)
    page.set_viewport_size(PHONE)
    open_full_conversation(page, openai_vendor, settings)
    assert_no_violations(page, axe)
    page.click("#open-sidebar")
    expect(page.locator("#sidebar")).to_be_in_viewport(ratio=1)
    assert_no_violations(page, axe)
    page.locator(".conv .delete").first.click()  # the list's question before a delete
    expect(page.locator(".conv.confirming .confirm-delete")).to_be_visible()
    assert_no_violations(page, axe)


def test_rename_and_delete_buttons_name_their_conversation(page):
    page.goto("/")
    send(page, "Trip plans")
    expect(page.locator(".msg.assistant").last).to_have_attribute("data-status", "complete")
    item = page.locator(".conv").filter(has_text="Trip plans")
    expect(item.get_by_role("button", name="Rename “Trip plans”")).to_have_count(1)
    expect(item.get_by_role("button", name="Delete “Trip plans”")).to_have_count(1)
    item.get_by_role("button", name="Delete “Trip plans”").click()
    expect(item.get_by_role("button", name="Cancel, keep “Trip plans”")).to_be_focused()


def test_on_a_phone_opening_the_list_moves_focus_into_it_and_escape_gives_it_back(page):
    page.set_viewport_size(PHONE)
    page.goto("/")
    send(page, "Trip plans")
    expect(page.locator(".msg.assistant").last).to_have_attribute("data-status", "complete")
    toggle = page.locator("#open-sidebar")
    toggle.focus()
    page.keyboard.press("Enter")
    expect(toggle).to_have_attribute("aria-expanded", "true")
    expect(page.locator("#new-chat")).to_be_focused()  # the list's first control
    page.keyboard.press("Tab")
    expect(page.locator("#close-sidebar")).to_be_focused()
    page.keyboard.press("Escape")
    expect(toggle).to_be_focused()
    expect(toggle).to_have_attribute("aria-expanded", "false")
    # Closed, the list is out of the tab order: Tab from the toggle does not land in it.
    page.keyboard.press("Tab")
    assert page.evaluate("document.getElementById('sidebar').contains(document.activeElement)") is False
    # The close button gives focus back too.
    toggle.click()
    expect(page.locator("#new-chat")).to_be_focused()
    page.locator("#close-sidebar").click()
    expect(toggle).to_be_focused()
