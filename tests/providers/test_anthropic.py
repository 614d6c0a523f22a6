"""The Anthropic provider, with the real SDK, against a fake server on loopback."""

from chat.providers import Finish, Prompt, Turn, Usage
from chat.providers.anthropic import AnthropicProvider
from tests.conftest import ANTHROPIC_TEST_KEY
from tests.vendor_servers import collect

HISTORY = Prompt(
    model="claude-test",
    system="You are terse.",
    turns=(Turn("user", "Hi"), Turn("assistant", "Hello!"), Turn("user", "And now?")),
)


def test_streams_deltas_then_usage_and_finish_reason(anthropic_vendor):
    anthropic_vendor.play({"say": "Hel"}, {"say": "lo"}, {"finish": "end_turn", "usage": [12, 2]})
    items, error = collect(AnthropicProvider("claude-test"), HISTORY)
    assert error is None
    # Anthropic's `end_turn` is stored as `stop`, the word the other models use.
    assert items == ["Hel", "lo", Finish(reason="stop", usage=Usage(input_tokens=12, output_tokens=2))]


def test_max_tokens_is_reported_as_length(anthropic_vendor):
    anthropic_vendor.play({"say": "cut"}, {"finish": "max_tokens", "usage": [3, 1]})
    items, _ = collect(AnthropicProvider("claude-test"), HISTORY)
    assert items[-1].reason == "length"


def test_sends_the_system_prompt_and_the_history_with_the_key(anthropic_vendor, settings):
    settings.CHAT_MAX_OUTPUT_TOKENS = 321
    collect(AnthropicProvider("claude-test"), HISTORY)
    (request,) = anthropic_vendor.completions()
    assert request.path == "/v1/messages"
    # The SDK sends the key as `x-api-key` or, in recent versions, as a bearer token.
    sent_key = request.headers.get("x-api-key") or request.headers["authorization"].removeprefix("Bearer ")
    assert sent_key == ANTHROPIC_TEST_KEY
    assert request.body["model"] == "claude-test"
    assert request.body["stream"] is True
    assert request.body["max_tokens"] == 321
    assert request.body["system"] == "You are terse."
    assert request.body["messages"] == [
        {"role": "user", "content": "Hi"},
        {"role": "assistant", "content": "Hello!"},
        {"role": "user", "content": "And now?"},
    ]


def test_without_a_system_prompt_sends_none(anthropic_vendor):
    collect(AnthropicProvider("claude-test"), Prompt("claude-test", "", (Turn("user", "Hi"),)))
    assert "system" not in anthropic_vendor.completions()[0].body
