"""What the vendor SDK providers share: one client per event loop, and failures as sentences.

Both official SDKs (`openai`, `anthropic`) have the same error classes (APIStatusError with a
`status_code`, APIConnectionError, APITimeoutError under it) and the same HTTP library
(`httpx2`), whose errors can surface as they are while a stream is read. A sentence built
here never quotes the upstream's own message for an auth failure (OpenAI's echoes part of
the key) and never names a key: it names the setting to check. What it does quote of an
upstream (the reason for a 400) may hold a key, whole, masked (`sk-...1234****`) or in part:
no run of KEY_PIECE characters of any configured key leaves here (`redact`).
"""

import asyncio
import logging
import os
import re
from collections.abc import Callable, Iterable
from functools import lru_cache
from types import ModuleType
from typing import Any
from urllib.parse import urlsplit

import httpx2
from django.conf import settings

from chat import conf
from chat.providers.base import ProviderError
from chat.runtime import runtime

log = logging.getLogger("chat.providers")

# The shortest run of a key's characters that is never shown. Shorter runs say nothing useful
# about a key (a vendor's prefix, `sk-ant-`, is 7) and would blot out ordinary words.
KEY_PIECE = 8
KEY_SUFFIX = "_API_KEY"
REDACTED = "[key]"
MASK = "*•"  # what an upstream masks the rest of a key with: taken away with the key


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
    # Stored and shown as it is: the last place a key quoted by the upstream can be taken out.
    return ProviderError(redact(error.message, configured_keys(prefix)), code=error.code)


def configured_keys(prefix: str = "") -> tuple[str, ...]:
    """Every API key this server is configured with: OPENAI_API_KEY, ANTHROPIC_API_KEY, the
    failing provider's `<prefix>_API_KEY`, and any other `*_API_KEY` in the settings or the
    environment (a host provider's), wherever conf would read it from."""
    names = {"OPENAI_API_KEY", "ANTHROPIC_API_KEY", *([f"{prefix}{KEY_SUFFIX}"] if prefix else [])}
    names.update(name for name in dir(settings) if name.endswith(KEY_SUFFIX))
    names.update(name for name in os.environ if name.endswith(KEY_SUFFIX))
    keys = {getattr(settings, name, None) or os.environ.get(name) for name in names}
    return tuple(sorted(key.strip() for key in keys if isinstance(key, str) and key.strip()))


@lru_cache(maxsize=8)
def _key_pieces(keys: tuple[str, ...]) -> frozenset[str]:
    """Every run of KEY_PIECE characters of these keys: a text holds a piece of a key (8 or
    more of its characters in a row) exactly where it holds one of these."""
    return frozenset(key[i : i + KEY_PIECE] for key in keys for i in range(len(key) - KEY_PIECE + 1))


def redact(text: str, keys: Iterable[str]) -> str:
    """`text` with every run of KEY_PIECE or more characters of a key replaced by REDACTED.

    One pass over the text with a window of KEY_PIECE characters: overlapping windows found
    in a key join into the longest run they cover, which goes whole, with the mask next to it.
    """
    keys = tuple(keys)
    for key in keys:
        if len(key) < KEY_PIECE:  # too short to cut into pieces: the key itself never shows
            text = text.replace(key, REDACTED)
    pieces = _key_pieces(tuple(key for key in keys if len(key) >= KEY_PIECE))
    if not pieces:
        return text
    spans: list[list[int]] = []
    for start in range(len(text) - KEY_PIECE + 1):
        if text[start : start + KEY_PIECE] in pieces:
            end = start + KEY_PIECE
            if spans and start <= spans[-1][1]:
                spans[-1][1] = end
            else:
                spans.append([start, end])
    if not spans:
        return text
    out, at = [], 0
    for start, end in spans:
        while start > at and text[start - 1] in MASK:
            start -= 1
        while end < len(text) and text[end] in MASK:
            end += 1
        out += [text[at:start], REDACTED]
        at = end
    out.append(text[at:])
    return "".join(out)


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
    message = " ".join(message.split())  # its keys go in `failure`, after the cut: none is missed
    return (message if len(message) <= 300 else message[:299] + "…").rstrip(".") + "."
