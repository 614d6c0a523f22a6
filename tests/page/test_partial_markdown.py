"""Half-written Markdown does not flash raw markers while a reply streams (issue 32).

The page's renderer (chat/static/chat/markdown.js) is fed the growing prefixes of a reply in
real Chromium, one character at a time, as a stream would deliver it; no prefix may show a
`*`, `_`, `` ` `` or `~` beyond those the final render shows, and the final render is the one
renderMarkdown gives for the whole text.
"""

import pytest

MARKERS = "*_`~"
REPLY = """# A **plan** for _the_ trip

Some **bold text**, some *emphasis*, some __strong__ and ~~struck~~ words, \
`inline code` and a snake_case_name in a sentence.

- first item with **bold
  across two lines**
- second item with `code` and *more*

| Day | City |
| --- | ---- |
| 1 | **Lisbon** |

```python
def total(count):
    return count * 2  # a star in code stays
```

Done, ***really*** done: `a*b` and 2 * 3 = 6.
"""

FEED = """async (text) => {
    const { MarkdownView, renderMarkdown } = await import("/static/chat/markdown.js");
    const root = document.createElement("div");
    document.body.append(root);
    const view = new MarkdownView(root);
    const seen = [];
    for (const character of text) {
        view.append(character);
        view.render();
        seen.push([view.text, root.textContent]);
    }
    view.render(true);
    const streamed = root.cloneNode(true);
    streamed.querySelector(".md-live")?.remove();
    const whole = document.createElement("div");
    whole.append(renderMarkdown(text));
    return { seen, final: root.textContent, streamed: streamed.innerHTML, whole: whole.innerHTML };
}"""


def flashes(seen: list[list[str]], final: str) -> list[str]:
    """The prefixes whose visible text shows more of a marker than the final render does."""
    allowed = {marker: final.count(marker) for marker in MARKERS}
    return [
        f"{prefix!r} shows {visible!r}"
        for prefix, visible in seen
        if any(visible.count(marker) > allowed[marker] for marker in MARKERS)
    ]


@pytest.mark.parametrize(
    "text",
    [
        REPLY,
        "Plain **bold** then *it* and `x`",
        "```js\nlet a = `b`;\n```\nafter *that*",
        "* a star bullet with __init__ and *it*\n* another ``code with ` inside``\n\n> quoted **strong**",
        "Math 2*3*4 = 24, **bold *nested* still** and _a_b_ and ~~gone~~.\n\n### Head **x**\n\n1. *one*\n",
    ],
    ids=["reply", "inline", "fence", "bullets", "nested"],
)
def test_no_prefix_of_a_streaming_reply_shows_a_marker_the_final_render_hides(page, text):
    page.goto("/")
    result = page.evaluate(FEED, text)
    assert result["streamed"] == result["whole"]  # the final render is unchanged
    assert "**" not in result["final"]
    assert flashes(result["seen"], result["final"]) == []


def test_an_open_span_is_drawn_formatted_while_it_streams(page):
    page.goto("/")
    drawn = page.evaluate(
        """async () => {
            const { MarkdownView } = await import("/static/chat/markdown.js");
            const root = document.createElement("div");
            const view = new MarkdownView(root);
            view.append("Some **bold te");
            view.render();
            const bold = root.querySelector("strong")?.textContent;
            view.append("xt** and `co");
            view.render();
            return [bold, root.querySelector("code")?.textContent, root.textContent.trim()];
        }"""
    )
    assert drawn == ["bold te", "co", "Some bold text and co"]
