"""Files sent with a question reach every request of a reply that calls tools (issue 30)."""

import asyncio

import pytest

from chat.models import Conversation, Message
from chat.providers import Finish, Prompt, ToolSpec, Turn
from chat.providers.anthropic import AnthropicProvider
from chat.providers.openai import OpenAIProvider
from chat.tools.rounds import reply_items
from tests.attachment_files import pdf, png

VENDORS = {
    "openai": ("openai_vendor", OpenAIProvider, "gpt-test", "tool_calls", ["text", "image_url", "file"]),
    "anthropic": (
        "anthropic_vendor",
        AnthropicProvider,
        "claude-test",
        "tool_use",
        ["image", "document", "text"],
    ),
}


def fruit_price(name: str) -> dict:
    """The price of some fruit.

    Args:
        name: the fruit
    """
    return {"fruit": name, "price": 3}


@pytest.mark.parametrize("vendor", list(VENDORS))
@pytest.mark.django_db(transaction=True)
def test_the_files_of_a_question_are_sent_again_in_the_next_tool_round(request, settings, vendor):
    fixture, provider_class, model, tool_finish, kinds = VENDORS[vendor]
    server = request.getfixturevalue(fixture)
    settings.CHAT_TOOLS = ["tests.providers.test_attachments_rounds.fruit_price"]
    conversation = Conversation.objects.create(visitor="v-files", model=f"{vendor}:{model}")
    reply = Message.objects.create(conversation=conversation, role="assistant", status="streaming")
    question = Turn("user", "Price of what you see?", attachments=(png(), pdf()))
    spec = ToolSpec("fruit_price", "The price of some fruit.", {"type": "object"})
    prompt = Prompt(model, "", (question,), tools=(spec,))
    server.play(
        {"call": "fruit_price", "id": "call_1", "args": ['{"name": "apple"}']}, {"finish": tool_finish}
    )
    server.play({"say": "3."})

    async def run():
        return [item async for item in reply_items(provider_class(model), prompt, reply_id=str(reply.pk))]

    items = asyncio.run(asyncio.wait_for(run(), 10))
    assert isinstance(items[-1], Finish) and "3." in items
    first, second = server.completions()
    assert second.body["messages"][0] == first.body["messages"][0]
    assert [part["type"] for part in second.body["messages"][0]["content"]] == kinds
    assert len(second.body["messages"]) == 3 and second.body["messages"][1]["role"] == "assistant"
