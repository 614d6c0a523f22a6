"""CHAT_MAX_OUTPUT_TOKENS bounds every reply of every provider: page client -> app -> SDK -> fake vendor."""

import asyncio

import httpx2
import openai
import pytest

from chat.providers import Finish, Prompt, Turn, registry
from chat.providers.openai import limit_name, refuses
from tests import fakes
from tests.fakes import script
from tests.sse_client import text_of

MODELS = {"openai": "openai:gpt-test", "anthropic": "anthropic:claude-test"}


@pytest.fixture(params=["openai", "anthropic"])
def vendor(request, server):
    vendor = request.getfixturevalue(f"{request.param}_vendor")
    vendor.model_id = MODELS[request.param]
    return vendor


def reply(tab, content: str, model: str) -> tuple[list, dict]:
    """Send `content`, follow the reply to its end: (the events, the stored message)."""
    sent = tab.send(content, model=model)["assistant_message"]
    received = tab.stream(sent["id"])
    return received, tab.wait_finished(sent["id"], sent["conversation_id"])


def test_the_limit_reaches_the_server_and_a_reply_that_reaches_it_ends_with_length(tab, vendor, settings):
    settings.CHAT_MAX_OUTPUT_TOKENS = 3
    vendor.play(*({"say": word} for word in ("one", " two", " three", " four", " five")))
    received, stored = reply(tab, "Count to five", vendor.model_id)
    (request,) = vendor.completions()
    # A base URL means a compatible server: `max_tokens` (Anthropic's own name too).
    assert request.body["max_tokens"] == 3 and "max_completion_tokens" not in request.body
    assert text_of(received) == "one two three"
    assert received[-1].event == "done"
    assert (received[-1].json["status"], received[-1].json["finish_reason"]) == ("complete", "length")
    assert received[-1].json["usage"]["output_tokens"] == 3  # the server's own count
    assert (stored["status"], stored["finish_reason"], stored["content"]) == (
        "complete",
        "length",
        "one two three",
    )


def test_a_server_that_ignores_the_limit_is_cut_there_and_hung_up_on(tab, vendor, settings):
    settings.CHAT_MAX_OUTPUT_TOKENS = 5
    vendor.honours_limit = False  # a small model stuck in a loop, on a server that lets it
    vendor.play({"repeat": "la "})
    received, stored = reply(tab, "Sing", vendor.model_id)
    assert text_of(received) == "la " * 5
    assert received[-1].json["finish_reason"] == "length"
    assert (stored["status"], stored["finish_reason"], stored["content"]) == ("complete", "length", "la " * 5)
    assert stored["usage"] is None  # the server's count comes at the end: it never came
    (request,) = vendor.completions()
    assert request.closed_early.wait(5), "the upstream response was left open"


def test_openai_own_api_gets_max_completion_tokens_and_a_compatible_server_max_tokens():
    assert limit_name(None) == "max_completion_tokens"
    assert limit_name("http://127.0.0.1:1/v1") == "max_tokens"


def test_a_server_that_refuses_max_tokens_gets_max_completion_tokens_from_then_on(
    tab, server, openai_vendor, settings
):
    settings.CHAT_MAX_OUTPUT_TOKENS = 50
    openai_vendor.refuses = {"max_tokens"}  # as OpenAI's newer models answer
    received, stored = reply(tab, "Hi", "openai:gpt-test")
    assert text_of(received) == "Hello there"
    assert (stored["status"], stored["finish_reason"]) == ("complete", "stop")
    refused, retried = openai_vendor.completions()
    assert refused.body["max_tokens"] == 50 and "max_completion_tokens" not in refused.body
    assert retried.body["max_completion_tokens"] == 50 and "max_tokens" not in retried.body
    # Remembered for this server: the next reply asks once.
    reply(tab, "Again", "openai:gpt-test")
    assert len(openai_vendor.completions()) == 3
    assert "max_completion_tokens" in openai_vendor.completions()[-1].body


def test_a_server_that_refuses_both_names_is_a_bad_request_asked_twice_only(tab, server, openai_vendor):
    openai_vendor.refuses = {"max_tokens", "max_completion_tokens"}
    received, stored = reply(tab, "Hi", "openai:gpt-test")
    assert received[-1].event == "error" and received[-1].json["code"] == "bad_request"
    assert "Unsupported parameter: 'max_completion_tokens'" in stored["error"]
    assert len(openai_vendor.completions()) == 2


def test_another_bad_request_is_not_retried(tab, server, openai_vendor):
    openai_vendor.play({"status": 400})
    received, _ = reply(tab, "Hi", "openai:gpt-test")
    assert received[-1].json["code"] == "bad_request"
    assert len(openai_vendor.completions()) == 1


def test_the_demo_model_ends_at_the_limit_with_length(tab, settings):
    settings.CHAT_MAX_OUTPUT_TOKENS = 4
    received, stored = reply(tab, "Hi", "demo")
    assert sum(e.event == "message" for e in received) >= 1
    assert received[-1].json["finish_reason"] == "length"
    assert received[-1].json["usage"]["output_tokens"] == 4
    assert (stored["status"], len(stored["content"].split())) == ("complete", 4)


def test_any_registered_provider_is_cut_at_the_limit(tab, settings):
    settings.CHAT_MAX_OUTPUT_TOKENS = 3
    endless = script(*({"say": f"{i} "} for i in range(10)), {"finish": "stop"})
    received, stored = reply(tab, endless, "script:fake")
    assert text_of(received) == "0 1 2 "
    assert (stored["status"], stored["finish_reason"]) == ("complete", "length")
    assert endless in fakes.CLOSED  # its stream was closed, not read to its end


def test_a_title_or_any_other_stream_of_the_provider_is_cut_at_the_limit_too(settings):
    """A reply counts the limit itself (chat/replies/generation.py); the provider's own `stream` (a title's
    request) still ends at it, the model's stream closed first."""
    settings.CHAT_MAX_OUTPUT_TOKENS = 3
    endless = script(*({"say": f"{i} "} for i in range(10)), {"finish": "stop"})
    provider = registry.get_provider(registry.resolve("script:fake"))
    prompt = Prompt(model="fake", system="", turns=(Turn("user", endless),))

    async def read() -> list:
        return [item async for item in provider.stream(prompt)]

    items = asyncio.run(read())
    assert items == ["0 ", "1 ", "2 ", Finish(reason="length", usage=None)]
    assert endless in fakes.CLOSED


def status_error(status: int, body: dict) -> Exception:
    response = httpx2.Response(status, request=httpx2.Request("POST", "http://127.0.0.1/v1/chat/completions"))
    cls = openai.BadRequestError if status == 400 else openai.UnprocessableEntityError
    return cls(f"Error code: {status}", response=response, body=body.get("error", body))


@pytest.mark.parametrize(
    ("status", "body", "name", "refused"),
    [
        (
            400,
            {
                "error": {
                    "message": "Unsupported parameter: 'max_tokens' is not supported with this model. "
                    "Use 'max_completion_tokens' instead.",
                    "type": "invalid_request_error",
                    "param": "max_tokens",
                    "code": "unsupported_parameter",
                }
            },
            "max_tokens",
            True,
        ),
        (  # a server with strict request checks (pydantic's answer, as FastAPI sends it)
            422,
            {
                "detail": [
                    {
                        "type": "extra_forbidden",
                        "loc": ["body", "max_completion_tokens"],
                        "msg": "Extra inputs are not permitted",
                    }
                ]
            },
            "max_completion_tokens",
            True,
        ),
        (  # the limit is known but too large for this model: retrying under another name is no cure
            400,
            {
                "error": {
                    "message": "max_tokens is too large: 8192. This model supports at most 4096 "
                    "completion tokens, whereas you provided 8192.",
                    "type": "invalid_request_error",
                    "param": "max_tokens",
                    "code": "invalid_value",
                }
            },
            "max_tokens",
            False,
        ),
        (400, {"error": {"message": "Unknown model 'x'.", "param": "model"}}, "max_tokens", False),
    ],
)
def test_only_a_refused_parameter_name_is_retried(status, body, name, refused):
    assert refuses(status_error(status, body), name) is refused
