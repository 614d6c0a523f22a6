"""Files and images on the page in real Chromium against the real server: the attach button,
a refused file, a pasted screenshot, a dropped file, and a send that waits for its uploads."""

import base64
import io
import re
import uuid

try:
    from playwright.sync_api import expect
except ImportError:  # the `browser` fixture skips these tests (fails them in CI) and says why
    expect = None

from PIL import Image

from tests.page.test_page import conversation_id, reply, send, use_script_model

# Not a PNG, whatever its name says: the server judges the content (contract v3).
HTML_NAMED_PNG = b"<!doctype html><title>x</title><script>alert(document.cookie)</script>"
SVG = b'<svg xmlns="http://www.w3.org/2000/svg"><script>alert(1)</script></svg>'


def png(width: int = 40, height: int = 30) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (width, height), (200, 40, 40)).save(out, "PNG")
    return out.getvalue()


def attach(page, name: str, data: bytes, mime: str = "image/png") -> None:
    """Through the hidden file input, as the file picker does (CDP's DOM.setFileInputFiles)."""
    page.set_input_files("#attach-input", files=[{"name": name, "mimeType": mime, "buffer": data}])


def chip(page, name: str):
    return page.locator("#attachment-chips .chip").filter(has=page.locator(".chip-name", has_text=name))


def stored_attachments(page) -> list[dict]:
    """The files of the last user message, as the API answers the page's visitor."""
    messages = page.request.get(f"/api/conversations/{conversation_id(page)}").json()["messages"]
    return [message["attachments"] for message in messages if message["role"] == "user"][-1]


def test_an_attached_png_is_a_thumbnail_chip_then_a_thumbnail_in_the_log_that_the_demo_model_saw(
    page, context
):
    page.goto("/")
    # The paperclip is next to the message in keyboard order and opens the file picker.
    page.focus("#prompt")
    page.keyboard.press("Shift+Tab")
    paperclip = page.get_by_role("button", name="Attach files")
    expect(paperclip).to_be_focused()
    with page.expect_file_chooser() as chooser:
        paperclip.click()
    assert chooser.value.is_multiple()
    attach(page, "red square.png", png(40, 30))
    shot = chip(page, "red square.png")
    expect(shot).to_have_class(re.compile(r"\bready\b"))
    expect(shot.locator("img.chip-thumb")).to_be_visible()
    expect(shot.get_by_role("button", name="Remove red square.png")).to_be_visible()
    expect(shot.locator(".chip-status")).to_have_text(re.compile(r"^\d+(\.\d)? (B|KB)$"))

    send(page, "What is in this picture?")
    expect(page.locator("#attachment-chips .chip")).to_have_count(0)  # the chips clear
    expect(page.locator("#attachment-chips")).to_be_hidden()
    user = page.locator(".msg.user").last
    thumb = user.locator(".msg-attachment.image img")
    expect(thumb).to_have_attribute("alt", "red square.png")
    expect(thumb).to_have_attribute("width", "40")  # its box is known before it loads
    expect(thumb).to_have_attribute("height", "30")
    expect(reply(page)).to_have_attribute("data-status", "complete")
    # The demo model lists what it received (its code is on branch wt-att-providers).
    expect(reply(page).locator(".markdown")).to_contain_text("red square.png")
    expect(reply(page).locator(".markdown")).to_contain_text("40×30")

    [stored] = stored_attachments(page)
    assert (stored["name"], stored["content_type"]) == ("red square.png", "image/png")
    # The image the page shows is the server's copy, served to its owner.
    page.wait_for_function("img => img.complete && img.naturalWidth === 40", arg=thumb.element_handle())

    page.reload()
    thumb = page.locator(".msg.user .msg-attachment.image img")
    expect(thumb).to_have_attribute("alt", "red square.png")
    with context.expect_page() as opened:
        thumb.click()  # the full image, in a new tab
    full = opened.value
    full.wait_for_load_state()
    assert full.url.endswith(f"/api/attachments/{stored['id']}")
    full.close()


def test_a_refused_file_shows_the_servers_sentence_and_is_not_sent(page, tab):
    refusal = tab.post("/api/attachments", files={"file": ("page.png", HTML_NAMED_PNG, "image/png")})
    assert refusal.status_code == 415
    sentence = refusal.json()["error"]

    page.goto("/")
    attach(page, "page.png", HTML_NAMED_PNG)
    attach(page, "logo.svg", SVG, "image/svg+xml")
    attach(page, "fine.png", png())
    refused = chip(page, "page.png")
    expect(refused).to_have_class(re.compile(r"\bfailed\b"))
    expect(refused.get_by_role("alert")).to_have_text(sentence)
    expect(chip(page, "logo.svg").get_by_role("alert")).to_contain_text("not accepted")
    expect(chip(page, "fine.png")).to_have_class(re.compile(r"\bready\b"))

    send(page, "Three files, two of them refused.")
    expect(reply(page)).to_have_attribute("data-status", "complete")
    expect(page.locator(".msg.user .msg-attachment")).to_have_count(1)
    expect(page.locator(".msg.user .msg-attachment img")).to_have_attribute("alt", "fine.png")
    assert [a["name"] for a in stored_attachments(page)] == ["fine.png"]
    expect(page.locator("#attachment-chips .chip")).to_have_count(0)


def test_a_pasted_screenshot_and_a_dropped_file_are_attached_and_one_can_be_removed(page):
    page.goto("/")
    page.focus("#prompt")
    page.evaluate(
        """(b64) => {
          const bytes = Uint8Array.from(atob(b64), (c) => c.charCodeAt(0));
          const data = new DataTransfer();
          data.items.add(new File([bytes], "image.png", { type: "image/png" }));
          const paste = new ClipboardEvent("paste", { clipboardData: data, bubbles: true, cancelable: true });
          document.querySelector("#prompt").dispatchEvent(paste);
        }""",
        base64.b64encode(png(16, 16)).decode(),
    )
    expect(chip(page, "image.png")).to_have_class(re.compile(r"\bready\b"))
    expect(chip(page, "image.png").locator("img.chip-thumb")).to_be_visible()

    # Files dragged over the log show the drop target; dropped, they are attached.
    drag = page.evaluate_handle(
        """() => {
          const data = new DataTransfer();
          data.items.add(new File(["a,b\\n1,2\\n"], "numbers.csv", { type: "text/csv" }));
          data.items.add(new File(["# Notes\\n"], "notes.md", { type: "text/markdown" }));
          return data;
        }"""
    )
    page.dispatch_event("#log", "dragenter", {"dataTransfer": drag})
    expect(page.locator("#drop-zone")).to_be_visible()
    expect(page.locator("#announcer")).to_have_text("Drop the files to attach them to your message.")
    page.dispatch_event("#log", "drop", {"dataTransfer": drag})
    expect(page.locator("#drop-zone")).to_be_hidden()
    expect(chip(page, "numbers.csv")).to_have_class(re.compile(r"\bready\b"))
    expect(chip(page, "notes.md").locator(".chip-status")).to_have_text("8 B")

    chip(page, "numbers.csv").get_by_role("button", name="Remove numbers.csv").click()
    expect(chip(page, "numbers.csv")).to_have_count(0)
    expect(chip(page, "notes.md").get_by_role("button", name="Remove notes.md")).to_be_focused()

    send(page, "A screenshot and my notes.")
    user = page.locator(".msg.user").last
    expect(user.locator(".msg-attachment.image img")).to_have_attribute("alt", "image.png")
    expect(user.locator(".msg-attachment.file a")).to_contain_text("notes.md")
    expect(user.locator(".msg-attachment.file a")).to_have_attribute("download", "notes.md")
    expect(reply(page)).to_have_attribute("data-status", "complete")
    assert sorted(a["name"] for a in stored_attachments(page)) == ["image.png", "notes.md"]


def test_a_send_waits_for_the_upload_in_flight_and_sends_its_id(page):
    held = []
    page.route("**/api/attachments", lambda route: held.append(route))
    page.goto("/")
    attach(page, "slow.png", png())
    expect(chip(page, "slow.png")).to_have_class(re.compile(r"\buploading\b"))
    expect(chip(page, "slow.png").locator(".chip-status")).to_contain_text("Uploading")
    send(page, "Wait for my picture.")
    expect(page.locator("#send")).to_be_disabled()
    assert page.locator(".msg.user").count() == 0  # nothing is sent before the upload ends
    assert held, "the upload was not intercepted"
    held[0].continue_()
    expect(page.locator(".msg.user .msg-attachment img")).to_have_attribute("alt", "slow.png")
    expect(page.locator("#send")).to_be_enabled()
    expect(reply(page)).to_have_attribute("data-status", "complete")
    assert [a["name"] for a in stored_attachments(page)] == ["slow.png"]


def test_a_file_over_the_servers_limit_is_refused_on_the_page_without_an_upload(page, settings):
    settings.CHAT_MAX_ATTACHMENT_BYTES = 1000
    uploads = []
    page.on(
        "request",
        lambda request: uploads.append(request) if request.url.endswith("/api/attachments") else None,
    )
    page.goto("/")
    attach(page, "big.txt", b"x" * 5000, "text/plain")
    big = chip(page, "big.txt")
    expect(big.get_by_role("alert")).to_have_text("The file is too large (4.9 KB): the limit is 1000 B.")
    expect(big.locator(".chip-status")).to_have_text("Not attached")
    assert uploads == []
    big.get_by_role("button", name="Remove big.txt").click()
    expect(page.locator("#attachment-chips")).to_be_hidden()
    expect(page.locator("#prompt")).to_be_focused()


def test_an_upload_over_the_rate_limit_shows_the_servers_sentence(page, settings):
    settings.CHAT_LIMITS_PREFIX = f"test-{uuid.uuid4().hex[:12]}"
    settings.CHAT_LIMIT_ATTACHMENTS = "1/hour"
    page.goto("/")
    attach(page, "first.png", png())
    expect(chip(page, "first.png")).to_have_class(re.compile(r"\bready\b"))
    attach(page, "second.png", png())
    refused = chip(page, "second.png")
    expect(refused).to_have_class(re.compile(r"\bfailed\b"))
    expect(refused.get_by_role("alert")).to_contain_text("the limit is 1 per hour")
    send(page, "Only the first goes.")
    expect(page.locator(".msg.user .msg-attachment img")).to_have_attribute("alt", "first.png")
    expect(page.locator(".msg.user .msg-attachment")).to_have_count(1)


def test_a_refused_send_keeps_its_files_in_the_composer_for_the_retry(page, settings):
    settings.CHAT_NO_VISION_MODELS = ["script:*"]
    page.goto("/")
    use_script_model(page)
    attach(page, "chart.png", png())
    expect(chip(page, "chart.png")).to_have_class(re.compile(r"\bready\b"))
    send(page, "What does the chart say?")
    notice = page.locator("#notice")
    expect(notice).to_contain_text("The model script:fake cannot see images")
    expect(page.locator(".msg.user")).to_have_count(0)
    expect(chip(page, "chart.png")).to_have_class(re.compile(r"\bready\b"))  # back, still uploaded
    page.select_option("#model", "demo")
    notice.locator(".retry").click()
    expect(page.locator(".msg.user .msg-attachment img")).to_have_attribute("alt", "chart.png")
    expect(page.locator("#attachment-chips .chip")).to_have_count(0)
    expect(reply(page)).to_have_attribute("data-status", "complete")
    assert [a["name"] for a in stored_attachments(page)] == ["chart.png"]


def test_a_send_waiting_for_an_upload_that_is_refused_sends_nothing_and_keeps_the_message(page):
    held = []
    page.route("**/api/attachments", lambda route: held.append(route))
    page.goto("/")
    attach(page, "page.png", HTML_NAMED_PNG)
    expect(chip(page, "page.png")).to_have_class(re.compile(r"\buploading\b"))
    send(page, "Here is my picture.")
    expect(page.locator("#send")).to_be_disabled()
    held[0].continue_()
    expect(chip(page, "page.png").get_by_role("alert")).to_contain_text("not accepted")
    expect(page.locator("#send")).to_be_enabled()
    assert page.input_value("#prompt") == "Here is my picture."  # the person decides: remove, send again
    expect(page.locator(".msg.user")).to_have_count(0)


def test_a_file_removed_while_it_uploads_is_cancelled_and_not_sent(page):
    held = []
    page.route("**/api/attachments", lambda route: held.append(route))
    page.goto("/")
    attach(page, "second thoughts.png", png())
    uploading = chip(page, "second thoughts.png")
    expect(uploading).to_have_class(re.compile(r"\buploading\b"))
    assert held
    uploading.get_by_role("button", name="Remove second thoughts.png").click()
    expect(uploading).to_have_count(0)
    expect(page.locator("#prompt")).to_be_focused()
    send(page, "Never mind the picture.")
    expect(reply(page)).to_have_attribute("data-status", "complete")
    expect(page.locator(".msg.user .msg-attachment")).to_have_count(0)
    assert stored_attachments(page) == []
