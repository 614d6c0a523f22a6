"""Files from upload to the vendor's wire, through the real server: the uploaded bytes reach
each vendor in its own format, and the demo model says what it received."""

import base64

import pytest

from tests.test_attachments import media, pdf, png, upload  # noqa: F401 - `media` is a fixture


def send_with(tab, ids: list[str], model: str) -> dict:
    sent = tab.send("What is in these?", model=model, attachments=ids)
    reply = sent["assistant_message"]
    return tab.wait_finished(reply["id"], reply["conversation_id"])


@pytest.fixture
def uploaded(tab, media):  # noqa: F811 - the fixture imported above
    image, document = png(7, 5), pdf("Quarterly numbers")
    ids = [upload(tab, image, "chart.png").json()["id"], upload(tab, document, "report.pdf").json()["id"]]
    return ids, image, document


def test_an_upload_reaches_openai_as_an_image_url_and_a_file_part_byte_for_byte(tab, uploaded, openai_vendor):
    ids, image, document = uploaded
    openai_vendor.play({"say": "A chart and a report."})
    assert send_with(tab, ids, "openai:gpt-test")["content"] == "A chart and a report."
    parts = openai_vendor.completions()[-1].body["messages"][-1]["content"]
    assert parts[0] == {"type": "text", "text": "What is in these?"}
    assert parts[1]["image_url"]["url"] == "data:image/png;base64," + base64.b64encode(image).decode()
    assert parts[2]["type"] == "file" and parts[2]["file"]["filename"] == "report.pdf"
    assert (
        parts[2]["file"]["file_data"] == "data:application/pdf;base64," + base64.b64encode(document).decode()
    )


def test_an_upload_reaches_anthropic_as_image_and_document_blocks(tab, uploaded, anthropic_vendor):
    ids, image, document = uploaded
    anthropic_vendor.play({"say": "Seen."})
    assert send_with(tab, ids, "anthropic:claude-test")["content"] == "Seen."
    blocks = anthropic_vendor.completions()[-1].body["messages"][-1]["content"]
    kinds = [block["type"] for block in blocks]
    assert kinds == ["image", "document", "text"]
    assert base64.b64decode(blocks[0]["source"]["data"]) == image
    assert base64.b64decode(blocks[1]["source"]["data"]) == document


def test_the_demo_model_says_what_it_received(tab, uploaded):
    ids, _, _ = uploaded
    reply = send_with(tab, ids, "demo")
    assert reply["content"].startswith("I received 2 files:")
    assert "chart.png" in reply["content"] and "7×5 px" in reply["content"]
    assert "report.pdf" in reply["content"] and "Quarterly numbers" in reply["content"]
