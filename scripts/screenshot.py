"""Take docs/screenshot.png (and docs/screenshot-dark.png): the page with a streamed reply.

    .venv/bin/python scripts/screenshot.py

A fresh server with the demo model in a temporary database, Debian's Chromium, headless.
"""

import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.page_bench import Server  # noqa: E402
from tests.page.chromium import CHROMIUM, CHROMIUM_ARGS  # noqa: E402

QUESTIONS = [
    "Plan a weekend in Lisbon",
    "Why is my Django query slow?",
    "How do I stream a reply to the browser?",
]


def main() -> None:
    from playwright.sync_api import sync_playwright

    with tempfile.TemporaryDirectory() as tmp, sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        server = Server(None, f"{tmp}/db.sqlite3", rate=400)
        try:
            context = browser.new_context(base_url=server.url, viewport={"width": 1280, "height": 900})
            page = context.new_page()
            for question in QUESTIONS:
                page.goto("/")
                page.fill("#prompt", question)
                page.press("#prompt", "Enter")
                page.wait_for_selector(".msg.assistant[data-status=complete]", timeout=30_000)
            page.mouse.move(0, 0)
            for scheme, name in (("light", "screenshot.png"), ("dark", "screenshot-dark.png")):
                page.emulate_media(color_scheme=scheme)
                page.evaluate("document.getElementById('log').scrollTop = 0")
                page.screenshot(path=str(ROOT / "docs" / name))
                print(f"Wrote docs/{name}")
        finally:
            server.stop()
            browser.close()


if __name__ == "__main__":
    main()
