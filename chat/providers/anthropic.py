"""Anthropic's models, streaming (Messages API), configured by ANTHROPIC_API_KEY."""

from collections.abc import AsyncIterator

import anthropic
import httpx2

from chat import conf
from chat.errors import Unavailable
from chat.providers import upstream
from chat.providers.base import Finish, Prompt, Provider, Reasoning, Usage
from chat.providers.wire import AnthropicBlocks, anthropic_messages, anthropic_tools, messages_built

# Anthropic's stop reasons in the words the demo and OpenAI use, so clients see one vocabulary.
# Its limit is `max_tokens` (CHAT_MAX_OUTPUT_TOKENS), and it ends the reply there itself.
REASONS = {
    "end_turn": "stop",
    "stop_sequence": "stop",
    "max_tokens": "length",
    "model_context_window_exceeded": "length",
    "tool_use": "tool_calls",
}


def configured() -> bool:
    return bool(conf.get("ANTHROPIC_API_KEY") or conf.get("ANTHROPIC_BASE_URL"))


class AnthropicProvider(Provider):
    name = "anthropic"

    def __init__(self, model: str) -> None:
        super().__init__(model)
        if not configured():
            raise Unavailable(
                f"The model anthropic:{model} is offered but not configured: whoever runs this server "
                "should set ANTHROPIC_API_KEY."
            )

    async def stream(self, prompt: Prompt) -> AsyncIterator[str | Reasoning | Finish]:
        client = upstream.client_for(
            anthropic.AsyncAnthropic,
            api_key=conf.get("ANTHROPIC_API_KEY"),
            base_url=conf.get("ANTHROPIC_BASE_URL"),
        )
        limit = int(conf.get("CHAT_MAX_OUTPUT_TOKENS"))
        params = {
            "model": prompt.model,
            "max_tokens": limit,
            "messages": await messages_built(anthropic_messages, prompt),
            **anthropic_tools(prompt),  # issue 12
        }
        if prompt.system:
            params["system"] = prompt.system
        if budget := thinking_budget(limit):  # issue 12: extended thinking
            params["thinking"] = {"type": "enabled", "budget_tokens": budget}
        reason, input_tokens, output_tokens, started = None, None, None, False
        blocks = AnthropicBlocks()
        try:
            stream = await client.messages.create(**params, stream=True)
            async with stream:  # a stop closes the generator here: the response is closed at once
                async for event in stream:
                    if event.type == "content_block_delta":
                        started = True
                        blocks.delta(event.index, event.delta)
                        if event.delta.type == "text_delta":
                            yield event.delta.text
                        elif event.delta.type == "thinking_delta":  # issue 12
                            yield Reasoning(event.delta.thinking)
                    elif event.type == "content_block_start":  # issue 12: thinking, tool_use
                        blocks.start(event.index, event.content_block)
                    elif event.type == "message_start":
                        u = event.message.usage
                        input_tokens = (
                            u.input_tokens
                            + (u.cache_creation_input_tokens or 0)
                            + (u.cache_read_input_tokens or 0)
                        )
                    elif event.type == "message_delta":
                        reason = event.delta.stop_reason or reason
                        output_tokens = event.usage.output_tokens
        except (anthropic.AnthropicError, httpx2.HTTPError) as exc:
            error = upstream.failure(
                exc, anthropic, vendor="Anthropic", prefix="ANTHROPIC", model=prompt.model, started=started
            )
            if error is None:
                raise
            raise error from None
        usage = None if output_tokens is None else Usage(input_tokens or 0, output_tokens)
        calls = blocks.calls.done()
        replay = blocks.replay() if calls else None
        yield Finish(reason=REASONS.get(reason, reason), usage=usage, tool_calls=calls, replay=replay)


def thinking_budget(max_tokens: int) -> int:
    """CHAT_ANTHROPIC_THINKING's budget, kept below max_tokens as the API requires; 0: off."""
    budget = int(conf.get("CHAT_ANTHROPIC_THINKING") or 0)
    if budget <= 0:
        return 0
    return max(min(budget, max_tokens - 1), 1024)
