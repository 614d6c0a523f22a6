"""The README and docs/ stay short, whole and true (issue 32).

The README is what a newcomer reads in two minutes, so it has a length limit; everything else
lives in docs/. A link that leads nowhere is the first thing a newcomer meets in a clone (the
old README linked `../shared/API.md`, outside the repository), so every relative link and
image of README.md and docs/*.md must name a file of the repository, and every `#anchor` a
heading of the file it points to, by GitHub's rules. The rules are generic: pages and sections
that others add later are held to them too. docs/configuration.md names every setting of
`chat.conf.DEFAULTS`, so a setting added without its documentation fails here.
"""

import re
from pathlib import Path

import pytest

from chat.conf import DEFAULTS

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"
PAGES = sorted([README, *(ROOT / "docs").glob("*.md")])
README_MAX_LINES = 350

FENCE = re.compile(r"^ {0,3}(```|~~~).*?^ {0,3}\1[^\n]*$", re.M | re.S)
CODE_SPAN = re.compile(r"(`+)(.+?)(?<!`)\1(?!`)", re.S)
# [text](target "title") and ![alt](target); the text may hold one level of brackets.
INLINE_LINK = re.compile(r"!?\[(?:[^\[\]]|\[[^\[\]]*\])*\]\(\s*<?([^)\s>]*)>?(?:\s+\"[^\"]*\")?\s*\)")
REFERENCE_LINK = re.compile(r"^ {0,3}\[[^\]]+\]:\s*<?(\S+?)>?(?:\s|$)", re.M)
HEADING = re.compile(r"^ {0,3}(#{1,6})\s+(.*?)\s*#*\s*$", re.M)
EXTERNAL = re.compile(r"^[a-z][a-z0-9+.-]*:", re.I)  # http:, https:, mailto: ...


def prose(text: str) -> str:
    """The page without fenced code blocks: a `# comment` or `[x](y)` in code is no heading
    or link on GitHub."""
    return FENCE.sub("", text)


def links(path: Path) -> list[str]:
    """Every link and image target of a page, outside code."""
    text = CODE_SPAN.sub("", prose(path.read_text()))
    return INLINE_LINK.findall(text) + REFERENCE_LINK.findall(text)


def slug(heading: str) -> str:
    """GitHub's anchor for a heading: its text as rendered (code, emphasis and link syntax
    gone), lowercased, punctuation dropped except `-` and `_`, spaces turned into `-`."""
    text = re.sub(r"!?\[([^\]]*)\]\([^)]*\)", r"\1", heading)
    text = re.sub(r"[`*]|(?<!\w)_|_(?!\w)", "", text)
    text = text.strip().lower()
    text = re.sub(r"[^\w\- ]", "", text)
    return text.replace(" ", "-")


def anchors(path: Path) -> set[str]:
    """The anchors GitHub makes for a page's headings (a repeated one gets -1, -2 ...)."""
    seen: dict[str, int] = {}
    found = set()
    for _, heading in HEADING.findall(prose(path.read_text())):
        base = slug(heading)
        count = seen.get(base, 0)
        seen[base] = count + 1
        found.add(base if count == 0 else f"{base}-{count}")
    return found


def local_targets() -> list[tuple[Path, str]]:
    """(page, target) for every link that is not to another site."""
    return [(page, t) for page in PAGES for t in links(page) if t and not EXTERNAL.match(t)]


def test_the_readme_reads_in_two_minutes():
    lines = README.read_text().count("\n")
    assert lines <= README_MAX_LINES, f"README.md has {lines} lines; at most {README_MAX_LINES}"


def test_the_pages_are_found_and_have_links():
    names = {page.name for page in PAGES}
    assert {"README.md", "configuration.md", "deploying.md", "how-it-works.md", "api.md"} <= names
    assert {"benchmarks.md", "features.md", "API-extensions.md"} <= names
    assert len(local_targets()) > 20  # the parser reads links: a silent regex passes nothing


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.name)
def test_every_docs_page_is_linked_from_the_readme(page):
    if page == README:
        return
    targets = {(README.parent / t.split("#")[0]).resolve() for t in links(README) if not EXTERNAL.match(t)}
    assert page.resolve() in targets, f"README.md's Documentation list does not link {page.name}"


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.name)
def test_every_relative_link_and_image_resolves_inside_the_repository(page):
    broken = []
    for target in (t for p, t in local_targets() if p == page):
        path, _, anchor = target.partition("#")
        file = (page.parent / path).resolve() if path else page
        if not file.is_relative_to(ROOT):
            broken.append(f"{target}: outside the repository")
        elif not file.exists():
            broken.append(f"{target}: no such file")
        elif anchor and file.suffix == ".md" and anchor not in anchors(file):
            broken.append(f"{target}: no heading #{anchor} in {file.relative_to(ROOT)}")
    assert not broken, f"{page.relative_to(ROOT)}:\n" + "\n".join(broken)


def test_no_page_links_to_the_shared_folder_beside_the_clone():
    offending = [(p.name, t) for p, t in local_targets() if "shared/" in t]
    assert not offending, offending


def test_configuration_names_every_setting_of_the_app():
    page = (ROOT / "docs" / "configuration.md").read_text()
    named = set(re.findall(r"`([A-Z][A-Z0-9_]+)`", page))
    missing = sorted(set(DEFAULTS) - named)
    assert not missing, f"docs/configuration.md does not document {missing}"


@pytest.mark.parametrize(
    ("heading", "anchor"),
    [
        ("Limits and cache (issue 10)", "limits-and-cache-issue-10"),
        ("Switching: `POST /api/conversations/<id>/branch`", "switching-post-apiconversationsidbranch"),
        ("Images: byte for byte, past a vendor's limits", "images-byte-for-byte-past-a-vendors-limits"),
        ("Figures (`make bench`, scenario 5, and the tests)", "figures-make-bench-scenario-5-and-the-tests"),
        ("Adding `CHAT_TOOLS` to a **site**", "adding-chat_tools-to-a-site"),
        ("See [the API](api.md) here", "see-the-api-here"),
    ],
)
def test_anchors_follow_githubs_rules(heading, anchor):
    assert slug(heading) == anchor


def test_a_repeated_heading_gets_a_numbered_anchor(tmp_path):
    page = tmp_path / "page.md"
    page.write_text("# Top\n\n## Events\n\n```python\n# settings.py\n```\n\n## Events\n")
    assert anchors(page) == {"top", "events", "events-1"}


def test_links_in_code_are_not_links(tmp_path):
    page = tmp_path / "page.md"
    page.write_text('[a](a.md) `[b](b.md)`\n\n```\n[c](c.md)\n```\n![d](d.png "D")\n[e]: e.md\n')
    assert sorted(links(page)) == ["a.md", "d.png", "e.md"]
