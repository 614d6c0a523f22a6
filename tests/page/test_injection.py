"""Script injection: payloads in the user's message and in the model's reply never run, and
read as the text they are.

The browser context bypasses the page's Content-Security-Policy, so that what is tested is
the rendering (textContent for people, marked then DOMPurify for models), not the CSP.
"""

import json

import pytest

try:
    from playwright.sync_api import expect
except ImportError:  # the `browser` fixture skips these tests (fails them in CI) and says why
    expect = None

from tests.fakes import script

PAYLOADS = [
    "<script>window.__xss = 'script'</script>",
    "<img src=x onerror=\"window.__xss = 'img'\">",
    "<svg onload=\"window.__xss = 'svg'\"><circle r=1 /></svg>",
    "<iframe srcdoc=\"<script>parent.__xss = 'iframe'</script>\"></iframe>",
    "<details open ontoggle=\"window.__xss = 'details'\">x</details>",
    "<a href=\"javascript:window.__xss = 'href'\">click me</a>",
    "<a href=\"&#106;avascript:window.__xss = 'entity'\">entity</a>",
    "<body onload=\"window.__xss = 'body'\">",
    "<input autofocus onfocus=\"window.__xss = 'focus'\">",
    "<object data=\"javascript:window.__xss = 'object'\"></object>",
    "<embed src=\"javascript:window.__xss = 'embed'\">",
    "<form><button formaction=\"javascript:window.__xss = 'form'\">go</button></form>",
    "<style>@import 'javascript:window.__xss = 1';</style>",
    "<math><mtext><table><mglyph><style><img src=x onerror=\"window.__xss = 'mxss'\">",
    "<noscript><p title=\"</noscript><img src=x onerror=window.__xss='noscript'>\">",
    "\"><script>window.__xss = 'attribute'</script>",
    "</textarea><script>window.__xss = 'textarea'</script>",
    "<div style=\"background:url(javascript:window.__xss='css')\">styled</div>",
    "[markdown link](javascript:window.__xss='mdlink')",
    "[data link](data:text/html;base64,PHNjcmlwdD5wYXJlbnQuX194c3M9MTwvc2NyaXB0Pg==)",
    "![markdown image](x\" onerror=\"window.__xss='mdimg')",
    "<a href='x' onmouseover='window.__xss=1'>hover</a> `<img src=x onerror=alert(1)>`",
    "javascript:alert(document.domain)",
]

DANGEROUS_DOM = """() => {
    const found = [];
    const forbidden = ["script", "iframe", "object", "embed", "img", "svg", "math", "style", "form",
                       "input", "textarea", "noscript", "details", "body", "frame", "link", "meta", "base"];
    for (const el of document.querySelectorAll(".msg .markdown *, .msg.user .text *, .conv-link *")) {
        const tag = el.tagName.toLowerCase();
        if (forbidden.includes(tag) || (tag === "button" && !el.closest(".code-head")))
            found.push(tag);
        for (const attr of el.attributes) {
            const value = attr.value.replace(/[\\s\\u0000-\\u001f]/g, "").toLowerCase();
            if (attr.name.startsWith("on")) found.push(`${tag}[${attr.name}]`);
            if (["href", "src", "action", "formaction", "data", "srcdoc", "style"].includes(attr.name)
                && /^(javascript|data|vbscript):/.test(value))
                found.push(`${tag}[${attr.name}=${attr.value}]`);
        }
    }
    return found;
}"""


@pytest.fixture
def unsafe_page(browser, server):
    context = browser.new_context(base_url=server.url, bypass_csp=True)
    context.set_default_timeout(10_000)
    page = context.new_page()
    dialogs: list[str] = []
    page.on("dialog", lambda dialog: (dialogs.append(dialog.message), dialog.dismiss()))
    page.dialogs = dialogs
    yield page
    context.close()


def ran(page) -> list:
    page.wait_for_timeout(100)  # let any error handler of a failed load fire
    return [page.evaluate("window.__xss"), page.dialogs, page.evaluate(DANGEROUS_DOM)]


def test_payloads_in_the_users_message_are_shown_as_text_and_never_run(unsafe_page):
    page = unsafe_page
    page.goto("/")
    message = "\n".join(PAYLOADS)
    page.fill("#prompt", message)
    page.press("#prompt", "Enter")
    expect(page.locator(".msg.assistant")).to_have_attribute("data-status", "complete")
    assert ran(page) == [None, [], []]
    assert page.locator(".msg.user .text").text_content() == message
    # The demo model repeats the question in its reply: model output carries it too.
    assert "<script>window.__xss = 'script'</script>" in page.locator(".msg.assistant .markdown").inner_text()
    page.reload()  # and from history
    expect(page.locator(".msg.assistant")).to_have_attribute("data-status", "complete")
    assert page.locator(".msg.user .text").text_content() == message
    page.locator(".conv-link").first.hover()
    assert ran(page) == [None, [], []]
    expect(page.locator(".conv-link")).to_have_text([" ".join(message.split())[:59].rsplit(" ", 1)[0] + "…"])


def test_payloads_in_the_models_reply_never_run_and_read_as_text(unsafe_page):
    page = unsafe_page
    page.goto("/")
    page.select_option("#model", "script:fake")
    fenced = "```html\n" + "\n".join(PAYLOADS) + "\n```"
    paragraphs = "\n\n".join(p for p in PAYLOADS if not p.startswith(("[", "!")))
    links = "\n\n".join(p for p in PAYLOADS if p.startswith(("[", "!")))
    # Streamed in small pieces, so that payloads are cut at every point across deltas.
    reply = f"{paragraphs}\n\n{links}\n\n{fenced}\n"
    pieces = [{"say": reply[i : i + 7]} for i in range(0, len(reply), 7)]
    page.fill("#prompt", script(*pieces))
    page.press("#prompt", "Enter")
    body = page.locator(".msg.assistant .markdown")
    expect(page.locator(".msg.assistant")).to_have_attribute("data-status", "complete")
    for check in (lambda: None, page.reload):
        check()
        expect(page.locator(".msg.assistant")).to_have_attribute("data-status", "complete")
        assert ran(page) == [None, [], []]
        # The code block holds every payload exactly; raw HTML in prose reads as itself.
        assert body.locator("pre code").text_content().rstrip("\n") == "\n".join(PAYLOADS)
        text = body.inner_text()
        for payload in PAYLOADS:
            if not payload.startswith(("[", "!")) and "`" not in payload:
                assert payload in text, payload
        assert "markdown link" in text and "data link" in text and "markdown image" in text
        for link in body.locator("a").all():
            href = link.get_attribute("href") or ""
            assert not href.replace(" ", "").lower().startswith(("javascript:", "data:")), href
            link.hover()
        assert ran(page) == [None, [], []]
    assert json.loads(page.locator(".msg.user .text").text_content()) == pieces
