"""OpenAI, and any server that speaks its API (Ollama, vLLM, llama.cpp, LM Studio), streaming.

OPENAI_API_KEY and OPENAI_BASE_URL configure it; a base URL alone needs no key.
"""

import re
from collections.abc import AsyncIterator
from typing import Any

import httpx2
import openai

from chat import conf
from chat.errors import Unavailable
from chat.providers import upstream
from chat.providers.base import Finish, Prompt, Provider, Reasoning, Usage
from chat.providers.limit import max_output_tokens
from chat.providers.wire import CallFragments, messages_built, openai_messages, openai_reasoning, openai_tools

NO_KEY = "not-needed"  # local servers ignore the key, but the SDK insists on one

# CHAT_MAX_OUTPUT_TOKENS goes by two names (issue 9): OpenAI's newer models refuse `max_tokens`
# and want `max_completion_tokens`; many compatible servers know only `max_tokens`. Each server
# gets its likely one first; a server that refuses it gets the other, remembered by base URL
# (None: OpenAI's own API) for this process.
_OTHER = {"max_tokens": "max_completion_tokens", "max_completion_tokens": "max_tokens"}
_limit_names: dict[str | None, str] = {}
_REFUSED = re.compile(r"unsupported|not supported|unrecognized|unknown|not permitted|not allowed", re.I)


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

    async def stream(self, prompt: Prompt) -> AsyncIterator[str | Reasoning | Finish]:
        base_url = conf.get("OPENAI_BASE_URL")
        client = upstream.client_for(
            openai.AsyncOpenAI, api_key=conf.get("OPENAI_API_KEY") or NO_KEY, base_url=base_url
        )
        params = {
            "model": prompt.model,
            "messages": await messages_built(openai_messages, prompt),
            "stream": True,
            "stream_options": {"include_usage": True},
            **openai_tools(prompt),  # issue 12
        }
        reason, usage, started = None, None, False
        calls = CallFragments()
        try:
            stream = await _open(client, params, base_url)
            async with stream:  # a stop closes the generator here: the response is closed at once
                async for chunk in stream:
                    if chunk.usage:
                        usage = Usage(chunk.usage.prompt_tokens or 0, chunk.usage.completion_tokens or 0)
                    for choice in chunk.choices:
                        delta = choice.delta
                        if delta and (reasoning := openai_reasoning(delta)):  # issue 12
                            started = True
                            yield Reasoning(reasoning)
                        if delta and delta.content:
                            started = True
                            yield delta.content
                        for call in (delta.tool_calls if delta else None) or ():  # issue 12
                            started = True
                            function = call.function
                            calls.start(call.index, call.id, function.name if function else None)
                            calls.add(call.index, function.arguments if function else None)
                        reason = choice.finish_reason or reason
        except (openai.OpenAIError, httpx2.HTTPError) as exc:
            error = upstream.failure(
                exc, openai, vendor="OpenAI-compatible", prefix="OPENAI", model=prompt.model, started=started
            )
            if error is None:
                raise
            raise error from None
        yield Finish(reason=reason, usage=usage, tool_calls=calls.done())


def limit_name(base_url: str | None) -> str:
    """The name under which this server takes the output limit."""
    return _limit_names.get(base_url) or ("max_tokens" if base_url else "max_completion_tokens")


def refuses(exc: Exception, name: str) -> bool:
    """Whether an error says the server does not take the parameter `name`.

    OpenAI answers 400 "Unsupported parameter: 'max_tokens' is not supported with this model.
    Use 'max_completion_tokens' instead." (param `max_tokens`, code `unsupported_parameter`);
    a server with strict request checks answers 400 or 422 naming the field it does not know.
    A limit that is merely too large names the parameter too, but not as unknown: not retried.
    """
    if not isinstance(exc, openai.APIStatusError) or exc.status_code not in (400, 422):
        return False
    body = exc.body if isinstance(exc.body, dict) else {}
    error = body.get("error", body)
    error = error if isinstance(error, dict) else {}
    message = error.get("message")
    message = message if isinstance(message, str) else str(exc.body)
    named = error.get("param") == name or re.search(rf"\b{name}\b", message) is not None
    return named and (error.get("code") == "unsupported_parameter" or _REFUSED.search(message) is not None)


async def _open(client: Any, params: dict[str, Any], base_url: str | None) -> Any:
    """Start the reply with the output limit in the parameter this server takes."""
    name, limit = limit_name(base_url), max_output_tokens()
    try:
        return await client.chat.completions.create(**params, **{name: limit})
    except openai.APIStatusError as exc:
        if not refuses(exc, name):
            raise
    other = _OTHER[name]
    upstream.log.info("%s refuses %s: sending %s instead", upstream.host_of(base_url), name, other)
    stream = await client.chat.completions.create(**params, **{other: limit})
    _limit_names[base_url] = other
    return stream
