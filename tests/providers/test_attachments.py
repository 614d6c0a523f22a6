"""What each model receives of files and images (issue 30): the real provider classes and SDKs
against the fake vendors on loopback, which record each request as it arrived."""

import base64
import io
import random

from PIL import Image

from chat.providers import Attachment, Prompt, Turn
from chat.providers.anthropic import AnthropicProvider
from chat.providers.images import encoded_size
from chat.providers.openai import OpenAIProvider
from tests.attachment_files import gif, pdf, png, text
from tests.vendor_servers import collect


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def _ask(*attachments, content="What are these?", model="gpt-test") -> Prompt:
    return Prompt(model, "Be brief.", (Turn("user", content, attachments=attachments),))


def _last_user(server) -> object:
    (request,) = server.completions()
    return request.body["messages"][-1]["content"]


def _image(data_url_or_b64: str) -> Image.Image:
    raw = base64.b64decode(data_url_or_b64.partition("base64,")[2] or data_url_or_b64)
    image = Image.open(io.BytesIO(raw))
    image.load()
    return image


def test_openai_gets_text_then_an_image_url_a_file_part_and_a_fenced_text_file(openai_vendor):
    photo, report, table = png(), pdf(), text()
    _, error = collect(OpenAIProvider("gpt-test"), _ask(photo, report, table))
    assert error is None
    assert _last_user(openai_vendor) == [
        {"type": "text", "text": "What are these?"},
        {"type": "image_url", "image_url": {"url": "data:image/png;base64," + _b64(photo.data)}},
        {
            "type": "file",
            "file": {
                "filename": "report.pdf",
                "file_data": "data:application/pdf;base64," + _b64(report.data),
            },
        },
        {"type": "text", "text": "data.csv (text/csv):\n```\na,b\n1,2\n\n```"},
    ]


def test_a_server_that_reads_no_pdfs_gets_their_text(openai_vendor, settings):
    settings.CHAT_OPENAI_PDF = "text"  # Ollama, vLLM, llama.cpp
    collect(OpenAIProvider("gpt-test"), _ask(pdf("Page one", "Page two")))
    assert _last_user(openai_vendor)[1] == {
        "type": "text",
        "text": "report.pdf (application/pdf):\n```\nPage one\nPage two\n```",
    }


def test_anthropic_gets_images_and_documents_before_the_text(anthropic_vendor):
    photo, report, table = png(), pdf(), text()
    _, error = collect(AnthropicProvider("claude-test"), _ask(photo, report, table, model="claude-test"))
    assert error is None
    assert _last_user(anthropic_vendor) == [
        {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": _b64(photo.data)}},
        {
            "type": "document",
            "source": {"type": "base64", "media_type": "application/pdf", "data": _b64(report.data)},
            "title": "report.pdf",
        },
        {"type": "text", "text": "data.csv (text/csv):\n```\na,b\n1,2\n\n```"},
        {"type": "text", "text": "What are these?"},
    ]


def test_turns_without_files_stay_plain_strings_beside_one_with_files(openai_vendor, anthropic_vendor):
    turns = (
        Turn("user", "Look", attachments=(png(),)),
        Turn("assistant", "A red square."),
        Turn("user", "Thanks"),
    )
    collect(OpenAIProvider("gpt-test"), Prompt("gpt-test", "", turns))
    collect(AnthropicProvider("claude-test"), Prompt("claude-test", "", turns))
    for server in (openai_vendor, anthropic_vendor):
        messages = server.completions()[0].body["messages"]
        assert isinstance(messages[0]["content"], list)
        assert messages[1:] == [
            {"role": "assistant", "content": "A red square."},
            {"role": "user", "content": "Thanks"},
        ]


def test_files_alone_send_no_empty_text(openai_vendor, anthropic_vendor):
    photo = png()
    collect(OpenAIProvider("gpt-test"), _ask(photo, content=""))
    collect(AnthropicProvider("claude-test"), _ask(photo, content="", model="claude-test"))
    assert [part["type"] for part in _last_user(openai_vendor)] == ["image_url"]
    assert [block["type"] for block in _last_user(anthropic_vendor)] == ["image"]


def test_a_text_file_with_backticks_cannot_close_its_fence(openai_vendor):
    notes = text("Run:\n```sh\nmake\n```\n", name="RE\nADME.md", content_type="text/markdown")
    collect(OpenAIProvider("gpt-test"), _ask(notes))
    assert (
        _last_user(openai_vendor)[1]["text"]
        == "RE ADME.md (text/markdown):\n````\nRun:\n```sh\nmake\n```\n\n````"
    )


def test_an_image_within_the_limits_arrives_byte_for_byte(openai_vendor, anthropic_vendor):
    photo = png(1200, 900, noisy=True)  # 3 MB: under both vendors' limits
    collect(OpenAIProvider("gpt-test"), _ask(photo))
    collect(AnthropicProvider("claude-test"), _ask(photo, model="claude-test"))
    url = _last_user(openai_vendor)[1]["image_url"]["url"]
    assert base64.b64decode(url.removeprefix("data:image/png;base64,")) == photo.data
    assert base64.b64decode(_last_user(anthropic_vendor)[0]["source"]["data"]) == photo.data


def test_an_image_over_the_byte_limit_is_scaled_down_in_its_format(openai_vendor, anthropic_vendor, settings):
    photo = png(600, 400, noisy=True)  # about 720 KB
    settings.CHAT_IMAGE_MAX_BYTES = {"openai": 200_000, "anthropic": 100_000}
    collect(OpenAIProvider("gpt-test"), _ask(photo))
    collect(AnthropicProvider("claude-test"), _ask(photo, model="claude-test"))
    url = _last_user(openai_vendor)[1]["image_url"]["url"]
    assert url.startswith("data:image/png;base64,") and len(url) - len("data:image/png;base64,") <= 200_000
    block = _last_user(anthropic_vendor)[0]
    assert block["source"]["media_type"] == "image/png" and len(block["source"]["data"]) <= 100_000
    for sent in (_image(url), _image(block["source"]["data"])):
        assert sent.format == "PNG" and sent.width < 600
        assert abs(sent.width / sent.height - 1.5) < 0.02  # the same shape


def test_a_jpeg_over_the_limit_stays_a_jpeg(anthropic_vendor, settings):
    image = Image.frombytes("RGB", (500, 500), random.Random(1).randbytes(500 * 500 * 3))
    out = io.BytesIO()
    image.save(out, "JPEG", quality=100)
    photo = Attachment("cat.jpg", "image/jpeg", out.getvalue(), width=500, height=500)
    settings.CHAT_IMAGE_MAX_BYTES = {"anthropic": encoded_size(photo.size) - 1}
    collect(AnthropicProvider("claude-test"), _ask(photo, model="claude-test"))
    source = _last_user(anthropic_vendor)[0]["source"]
    assert source["media_type"] == "image/jpeg" and _image(source["data"]).format == "JPEG"
    assert len(source["data"]) < encoded_size(photo.size)


def test_an_image_past_anthropics_edge_is_scaled_to_the_edge_it_works_at(anthropic_vendor):
    wide = png(8100, 20)  # a few KB, but wider than the 8000 px Anthropic accepts
    collect(AnthropicProvider("claude-test"), _ask(wide, model="claude-test"))
    assert _image(_last_user(anthropic_vendor)[0]["source"]["data"]).size == (1568, 4)


def test_more_than_twenty_images_are_each_kept_within_2000_px_for_anthropic(anthropic_vendor):
    images = tuple(png(2100, 30, name=f"{i}.png") for i in range(21))
    collect(AnthropicProvider("claude-test"), _ask(*images, model="claude-test"))
    sizes = {_image(block["source"]["data"]).size for block in _last_user(anthropic_vendor)[:-1]}
    assert sizes == {(1568, 22)}


def test_openai_gets_an_animated_gif_as_its_first_frame_and_a_still_one_as_is(openai_vendor):
    still, animated = gif(), gif(frames=3)
    collect(OpenAIProvider("gpt-test"), _ask(still, animated))
    _, still_part, animated_part = _last_user(openai_vendor)
    assert still_part["image_url"]["url"] == "data:image/gif;base64," + _b64(still.data)
    assert animated_part["image_url"]["url"].startswith("data:image/png;base64,")
    assert _image(animated_part["image_url"]["url"]).size == (16, 12)


def test_an_image_scaled_once_is_not_scaled_again_for_the_next_request():
    from dataclasses import replace

    from chat.providers.images import image_fit

    wide = png(8100, 20)
    again = replace(wide, data=bytes(bytearray(wide.data)))  # the same upload, read again
    assert again.data is not wide.data
    assert image_fit(again, vendor="anthropic") is image_fit(wide, vendor="anthropic")
