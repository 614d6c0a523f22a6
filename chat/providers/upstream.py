"""What the vendor SDK providers share: one client per event loop, and failures as sentences.

Both official SDKs (`openai`, `anthropic`) have the same error classes (APIStatusError with a
`status_code`, APIConnectionError, APITimeoutError under it) and the same HTTP library
(`httpx2`), whose errors can surface as they are while a stream is read. A sentence built
here never quotes the upstream's own message for an auth failure (OpenAI's echoes part of
the key) and never names a key: it names the setting to check.
"""

import asyncio
import logging
import re
from collections.abc import Callable
from types import ModuleType
from typing import Any
from urllib.parse import urlsplit

import httpx2

from chat import conf
from chat.providers.base import ProviderError
from chat.runtime import runtime

log = logging.getLogger("chat.providers")


async def _clients_close(clients: dict[tuple, Any]) -> None:
    """At stop: each SDK client's connections (both SDKs' async clients have `close()`)."""
    for client in clients.values():
        await client.close()


# The SDK clients of each event loop (their connections belong to it), by options.
_clients = runtime.per_loop(lambda loop: {}, close=_clients_close)


def client_for(factory: Callable[..., Any], **options: Any) -> Any:
    """The SDK client for these options on the running loop, made once (making one takes ~20 ms)."""
    per_loop = _clients(asyncio.get_running_loop())
    key = (factory, *sorted(options.items()))
    if key not in per_loop:
        per_loop[key] = factory(**options, timeout=timeout(), max_retries=0)
    return per_loop[key]


def timeout() -> httpx2.Timeout:
    """CHAT_UPSTREAM_TIMEOUT bounds connecting and each silence while the reply streams."""
    seconds = conf.get_float("CHAT_UPSTREAM_TIMEOUT")
    return httpx2.Timeout(seconds, connect=min(seconds, 10.0))


def host_of(url: str | None) -> str:
    """`host:port` of a URL, for log lines: never the userinfo a URL may carry."""
    if not url:
        return "the vendor's default server"
    parts = urlsplit(url)
    return parts.hostname + (f":{parts.port}" if parts.port else "") if parts.hostname else "?"


def failure(
    exc: Exception, sdk: ModuleType, *, vendor: str, prefix: str, model: str, started: bool
) -> ProviderError | None:
    """The ProviderError for an SDK or transport exception; None if it is neither (a bug: re-raise).

    `prefix` names the settings: OPENAI for OPENAI_API_KEY and OPENAI_BASE_URL.
    """
    seconds = conf.get_float("CHAT_UPSTREAM_TIMEOUT")
    if isinstance(exc, sdk.APIStatusError) and exc.status_code >= 400:
        error = _status_failure(exc, vendor=vendor, model=model, setting=f"{prefix}_API_KEY")
        detail = f"HTTP {exc.status_code} {getattr(exc, 'type', None) or ''}".strip()
    elif isinstance(exc, sdk.APITimeoutError | httpx2.TimeoutException):
        when = "between two parts of the reply" if started else "before answering"
        error = ProviderError(
            f"The model server ({vendor}) sent nothing for {seconds:g} seconds {when}, so the reply "
            "was cut off. Try again; if it keeps happening, raise CHAT_UPSTREAM_TIMEOUT.",
            code="timeout",
        )
        detail = "timeout"
    elif isinstance(exc, sdk.APIConnectionError | httpx2.TransportError) and started:
        error = ProviderError(
            f"The connection to the model server ({vendor}) dropped in the middle of the reply; "
            "the text so far is kept. Try again.",
            code="connection_lost",
        )
        detail = type(exc.__cause__ or exc).__name__
    elif isinstance(exc, sdk.APIConnectionError | httpx2.TransportError):
        check = (
            f"Check that it is running and that {prefix}_BASE_URL points to it."
            if conf.get(f"{prefix}_BASE_URL")
            else "Check this server's network connection, then try again."
        )
        error = ProviderError(f"Could not reach the model server ({vendor}). {check}", code="unreachable")
        detail = type(exc.__cause__ or exc).__name__
    elif isinstance(exc, sdk.APIError):  # an error event inside the stream
        kind = getattr(exc, "type", None)
        kind = kind if isinstance(kind, str) and re.fullmatch(r"[a-z_]{1,40}", kind) else "error"
        error = ProviderError(
            f"The model server ({vendor}) reported an error ({kind}) in the middle of the reply; "
            "the text so far is kept. Try again.",
            code="upstream_error",
        )
        detail = f"{kind} event in the stream"
    else:
        return None
    log.warning(
        "%s model %r at %s failed: %s", vendor, model, host_of(conf.get(f"{prefix}_BASE_URL")), detail
    )
    return error


def _status_failure(exc: Any, *, vendor: str, model: str, setting: str) -> ProviderError:
    status = exc.status_code
    if status in (401, 403):
        return ProviderError(
            f"The model server ({vendor}) refused this server's credentials (HTTP {status}). "
            f"Whoever runs this server should check {setting}.",
            code="auth",
        )
    if status == 404:
        return ProviderError(
            f"The model server ({vendor}) does not know the model {model!r} (HTTP 404). Pick another "
            "model, or check the model name in CHAT_MODELS (and that a base URL ends in /v1).",
            code="model_not_found",
        )
    if status == 429:
        return ProviderError(
            f"The model server ({vendor}) is rate limiting this server or it is out of quota "
            "(HTTP 429). Wait a minute and try again.",
            code="rate_limited",
        )
    if status in (400, 413, 422):
        return ProviderError(
            f"The model server ({vendor}) rejected the request (HTTP {status}): "
            f"{_quote(exc)} Try a shorter message, or another model.",
            code="bad_request",
        )
    if status >= 500:
        return ProviderError(
            f"The model server ({vendor}) is having trouble (HTTP {status}). Try again in a moment.",
            code="upstream_unavailable",
        )
    return ProviderError(f"The model server ({vendor}) answered HTTP {status}.", code="upstream_error")


def _quote(exc: Any) -> str:
    """The upstream's own explanation of a bad request (such as a context length), shortened."""
    body = exc.body if isinstance(exc.body, dict) else {}
    error = body.get("error", body)
    message = error.get("message") if isinstance(error, dict) else None
    if not isinstance(message, str) or not message.strip():
        return "no reason given."
    message = " ".join(message.split())
    for name in ("OPENAI_API_KEY", "ANTHROPIC_API_KEY"):
        if key := conf.get(name):
            message = message.replace(key, "[key]")
    return (message if len(message) <= 300 else message[:299] + "…").rstrip(".") + "."
