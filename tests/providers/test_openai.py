"""The OpenAI-compatible provider, with the real SDK, against a fake server on loopback."""

from chat.providers import Finish, Prompt, Turn, Usage
from chat.providers.openai import OpenAIProvider
from tests.conftest import OPENAI_TEST_KEY
from tests.vendor_servers import collect

HISTORY = Prompt(
    model="gpt-test",
    system="You are terse.",
    turns=(Turn("user", "Hi"), Turn("assistant", "Hello!"), Turn("user", "And now?")),
)


def test_streams_deltas_then_usage_and_finish_reason(openai_vendor):
    openai_vendor.play({"say": "Hel"}, {"say": "lo"}, {"finish": "length", "usage": [12, 2]})
    items, error = collect(OpenAIProvider("gpt-test"), HISTORY)
    assert error is None
    assert items == ["Hel", "lo", Finish(reason="length", usage=Usage(input_tokens=12, output_tokens=2))]


def test_sends_the_system_prompt_and_the_history_with_the_key(openai_vendor):
    collect(OpenAIProvider("gpt-test"), HISTORY)
    (request,) = openai_vendor.completions()
    assert request.path == "/v1/chat/completions"
    assert request.headers["authorization"] == f"Bearer {OPENAI_TEST_KEY}"
    assert request.body["model"] == "gpt-test"
    assert request.body["stream"] is True
    assert request.body["stream_options"] == {"include_usage": True}
    assert request.body["messages"] == [
        {"role": "system", "content": "You are terse."},
        {"role": "user", "content": "Hi"},
        {"role": "assistant", "content": "Hello!"},
        {"role": "user", "content": "And now?"},
    ]


def test_without_a_system_prompt_sends_only_the_turns(openai_vendor):
    collect(OpenAIProvider("gpt-test"), Prompt("gpt-test", "", (Turn("user", "Hi"),)))
    assert openai_vendor.completions()[0].body["messages"] == [{"role": "user", "content": "Hi"}]


def test_a_base_url_alone_needs_no_key(openai_vendor, settings):
    settings.OPENAI_API_KEY = None  # as for Ollama
    items, error = collect(OpenAIProvider("gpt-test"), HISTORY)
    assert error is None and "".join(i for i in items if isinstance(i, str)) == "Hello there"
