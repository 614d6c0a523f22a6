import asyncio

from chat.providers import Finish, Prompt, Turn
from chat.providers.demo import DemoProvider, compose, demo_tokens


def reply(question: str) -> tuple[str, Finish]:
    async def go():
        parts, finish = [], None
        async for item in DemoProvider("demo").stream(Prompt("demo", "", (Turn("user", question),))):
            if isinstance(item, Finish):
                finish = item
            else:
                parts.append(item)
        return "".join(parts), finish

    return asyncio.run(go())


def test_demo_reply_is_deterministic_and_about_the_prompt(settings):
    settings.CHAT_DEMO_RATE = 0
    text, finish = reply("How do I   bake bread?")
    assert text == reply("How do I   bake bread?")[0]
    assert "How do I bake bread?" in text
    assert finish.reason == "stop"
    assert finish.usage.output_tokens == len(demo_tokens("How do I bake bread?"))


def test_demo_reply_shows_a_paragraph_a_list_and_a_code_block():
    text = compose("anything")
    assert "\n\n" in text
    assert "\n1. " in text and "\n2. " in text
    assert "```bash\n" in text and text.count("```") == 2
    assert "OPENAI_API_KEY" in text and "ANTHROPIC_API_KEY" in text


def test_demo_tokens_sets_the_reply_length(settings):
    settings.CHAT_DEMO_RATE = 0
    for length in (5, 100, 2000):
        settings.CHAT_DEMO_TOKENS = length
        text, finish = reply("q")
        assert finish.usage.output_tokens == length
        assert text == "".join(demo_tokens("q", length))


def test_demo_reply_stops_at_the_output_limit_as_a_model_would(settings):
    settings.CHAT_DEMO_RATE = 0
    settings.CHAT_MAX_OUTPUT_TOKENS = 4
    text, finish = reply("q")
    assert text == "".join(demo_tokens("q", 4))
    assert (finish.reason, finish.usage.output_tokens) == ("length", 4)
    settings.CHAT_DEMO_TOKENS = 4  # a reply that ends right at the limit has not reached past it
    assert reply("q")[1].reason == "stop"
    settings.CHAT_DEMO_TOKENS = 10
    assert reply("q")[1].reason == "length"
