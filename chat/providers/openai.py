"""OpenAI, and any server that speaks its API (Ollama, vLLM, llama.cpp, LM Studio), streaming.

OPENAI_API_KEY and OPENAI_BASE_URL configure it; a base URL alone needs no key.
"""

from collections.abc import AsyncIterator

import httpx2
import openai

from chat import conf
from chat.errors import Unavailable
from chat.providers import upstream
from chat.providers.base import Finish, Prompt, Provider, Usage

NO_KEY = "not-needed"  # local servers ignore the key, but the SDK insists on one


def configured() -> bool:
    return bool(conf.get("OPENAI_API_KEY") or conf.get("OPENAI_BASE_URL"))


class OpenAIProvider(Provider):
    name = "openai"

    def __init__(self, model: str) -> None:
        super().__init__(model)
        if not configured():
            raise Unavailable(
                f"The model openai:{model} is offered but not configured: whoever runs this server "
                "should set OPENAI_API_KEY or OPENAI_BASE_URL."
            )

    async def stream(self, prompt: Prompt) -> AsyncIterator[str | Finish]:
        client = upstream.client_for(
            openai.AsyncOpenAI,
            api_key=conf.get("OPENAI_API_KEY") or NO_KEY,
            base_url=conf.get("OPENAI_BASE_URL"),
        )
        messages = [{"role": "system", "content": prompt.system}] if prompt.system else []
        messages += [{"role": turn.role, "content": turn.content} for turn in prompt.turns]
        reason, usage, started = None, None, False
        try:
            stream = await client.chat.completions.create(
                model=prompt.model, messages=messages, stream=True, stream_options={"include_usage": True}
            )
            async with stream:  # a stop closes the generator here: the response is closed at once
                async for chunk in stream:
                    if chunk.usage:
                        usage = Usage(chunk.usage.prompt_tokens or 0, chunk.usage.completion_tokens or 0)
                    for choice in chunk.choices:
                        if choice.delta and choice.delta.content:
                            started = True
                            yield choice.delta.content
                        reason = choice.finish_reason or reason
        except (openai.OpenAIError, httpx2.HTTPError) as exc:
            error = upstream.failure(
                exc, openai, vendor="OpenAI-compatible", prefix="OPENAI", model=prompt.model, started=started
            )
            if error is None:
                raise
            raise error from None
        yield Finish(reason=reason, usage=usage)
