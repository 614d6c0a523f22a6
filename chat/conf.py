"""The chat app's settings and their defaults, in one place.

Each is read at its first use: from Django settings when the project sets it there, else from
the environment variable of the same name, else the default below. So a host project can
configure the app in `settings.py`, in the environment, or not at all. What was read is kept:
a reply reads some 60 settings, and reading the environment for an unset one costs about a
microsecond each time (a profile of opening a reply). Django's `setting_changed` signal
(`override_settings`, pytest-django's `settings`) forgets what was kept, as does `forget()` (a
test that changes the environment).
"""

import json
import os
from functools import lru_cache
from typing import Any

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.core.signals import setting_changed

DEFAULTS: dict[str, Any] = {
    # Models offered (`provider:model` ids) and the default one. An empty list offers `demo` plus
    # what the keys and base URLs below make available (chat/providers/catalog.py); no
    # default model means the first one offered.
    "CHAT_MODELS": [],
    "CHAT_MODEL": "",
    # Vendors. A base URL alone (Ollama, vLLM, llama.cpp, LM Studio) needs no key.
    "OPENAI_API_KEY": None,
    "OPENAI_BASE_URL": None,
    "ANTHROPIC_API_KEY": None,
    "ANTHROPIC_BASE_URL": None,
    # Seconds an upstream model may take to connect, or stay silent between two tokens.
    "CHAT_UPSTREAM_TIMEOUT": 120.0,
    # Seconds to wait for an OpenAI-compatible server's list of models (/models).
    "CHAT_DISCOVERY_TIMEOUT": 3.0,
    # The most characters of a conversation sent to a model (about 4 per token): the oldest
    # turns are dropped first, never the system prompt or the new message.
    "CHAT_CONTEXT_CHARS": 100_000,
    # The longest reply, in tokens, for every provider: sent to the model in the parameter its
    # server takes, and enforced here (counting deltas) for a server that ignores it.
    "CHAT_MAX_OUTPUT_TOKENS": 8192,
    # Extra providers by name, as dotted paths to Provider classes.
    "CHAT_PROVIDERS": {},
    # The demo model: tokens per second (0 = as fast as possible) and reply length in tokens.
    "CHAT_DEMO_RATE": 30.0,
    "CHAT_DEMO_TOKENS": None,
    # A streaming reply saves its partial text at least this often (seconds).
    "CHAT_CHECKPOINT_INTERVAL": 1.0,
    # A `streaming` reply with no checkpoint for this many intervals was left by a dead process.
    "CHAT_STALE_INTERVALS": 10,
    # A comment line is sent after this many seconds of silence on a stream.
    "CHAT_HEARTBEAT_INTERVAL": 15.0,
    # On a busy stream, deltas arriving within this many seconds of the last event are sent
    # together (at most one text event per frame); a delta after a quiet spell goes at once.
    "CHAT_MERGE_WINDOW": 0.016,
    # The `retry:` field sent first on every stream (milliseconds).
    "CHAT_RETRY_MS": 2000,
    # Limits on request bodies (bytes) and message content (characters).
    "CHAT_MAX_BODY_BYTES": 256 * 1024,
    "CHAT_MAX_CONTENT_CHARS": 32_000,
    # The event log backend, a dotted path to an EventLog class; empty: Redis Streams when
    # REDIS_URL is set, else this process's memory.
    "CHAT_EVENT_LOG": "",
    # How long a finished reply stays in the in-process event log (seconds).
    "CHAT_LOG_GRACE": 30.0,
    # With a real model, ask it for a short title after the first message (in the background).
    "CHAT_TITLE_BY_MODEL": True,
    # How long that may take before the first message's title is kept (seconds).
    "CHAT_TITLE_TIMEOUT": 30.0,
    # Threads that run the background replies' database writes (None: 1 on SQLite, else 4).
    "CHAT_DB_THREADS": None,
    # The page and the API only for signed-in users: the page redirects to LOGIN_URL, the
    # API answers 401 `login_required`.
    "CHAT_LOGIN_REQUIRED": False,
    # The page's title, and the system prompt of a conversation created without one.
    "CHAT_PAGE_TITLE": "Chat",
    "CHAT_SYSTEM_PROMPT": "",
    # Redis, shared by every process and machine (limits, answer cache); None: in-process.
    "REDIS_URL": None,
    # Limits and quotas (chat/ratelimit/): rates as N/second|minute|hour|day, counts at once;
    # 0 or "" turns one off.
    "CHAT_LIMIT_MESSAGES": "30/minute",
    "CHAT_LIMIT_MESSAGES_IP": "120/minute",
    "CHAT_LIMIT_REPLIES": 3,
    "CHAT_QUOTA_TOKENS": "",
    "CHAT_LIMIT_STREAMS_IP": 200,
    # Per client address as well (a client without cookies is a new visitor on every request);
    # None: four times the owner's (chat/ratelimit/rules.py ADDRESS_SHARE), off when it is off.
    "CHAT_LIMIT_REPLIES_IP": None,
    "CHAT_QUOTA_TOKENS_IP": None,
    # Proxies whose X-Forwarded-For and X-Forwarded-Proto are believed (addresses or networks).
    "CHAT_TRUSTED_PROXIES": [],
    # The prefix of the limits' Redis keys.
    "CHAT_LIMITS_PREFIX": "chat:limits",
    # Where the limits count, a dotted path to a chat.ratelimit Backend class; empty: Redis
    # when REDIS_URL is set, else this process's memory.
    "CHAT_LIMITS_BACKEND": "",
    # Cached answers (chat/answercache.py): seconds kept (0: off), `owner` or `global`, the
    # Django cache used, and the pause between the pieces of a cached answer (seconds).
    "CHAT_CACHE_TTL": 0,
    "CHAT_CACHE_SCOPE": "owner",
    "CHAT_CACHE_ALIAS": "default",
    "CHAT_CACHE_PIECE_INTERVAL": 0.02,
    # --- reasoning and tools (issue 12) ---
    # Tools a model may call: dotted paths to functions of the host project (chat/tools/).
    "CHAT_TOOLS": [],
    # Seconds a tool call may take; past them the model is told it timed out.
    "CHAT_TOOL_TIMEOUT": 30.0,
    # The most model requests in one reply (each tool round is one); the last gets tool choice none.
    "CHAT_TOOL_ROUNDS": 5,
    # Model Context Protocol servers whose tools models may call (issue 31; chat/tools/mcp.py),
    # comma separated: a URL (streamable HTTP) or `stdio:<command line>`. Needs the `mcp` extra.
    "CHAT_MCP_SERVERS": [],
    # Seconds an MCP server may take to connect and list its tools (its calls: CHAT_TOOL_TIMEOUT).
    "CHAT_MCP_TIMEOUT": 10.0,
    # Seconds between two listings of an MCP server's tools (and the longest wait to reconnect).
    "CHAT_MCP_REFRESH": 300.0,
    # Anthropic's extended thinking: its budget in tokens (0: off; at least 1024 when on).
    "CHAT_ANTHROPIC_THINKING": 0,
    # The demo model reasons briefly and calls its example tool (current_time) before answering.
    "CHAT_DEMO_STEPS": True,
    # The prefix of the event log's Redis keys (one stream per reply, the stop channel).
    "CHAT_REDIS_PREFIX": "chat:",
    # A reply's stream is capped at about this many entries (deltas are merged per frame).
    "CHAT_REDIS_MAXLEN": 20_000,
    # Seconds to wait for Redis before a reply goes on without it (then: the database).
    "CHAT_REDIS_TIMEOUT": 2.0,
    # --- files and images (contract v3; chat/attachments.py) ---
    # The largest upload (bytes): over it, 413 before the body is read.
    "CHAT_MAX_ATTACHMENT_BYTES": 10 * 1024 * 1024,
    # Uploads per owner (and four times that per client address), a rate like the others.
    "CHAT_LIMIT_ATTACHMENTS": "20/hour",
    # Files one message may carry.
    "CHAT_MAX_ATTACHMENTS": 10,
    # The text kept of a PDF or a text file, for models that cannot read the file (characters).
    "CHAT_ATTACHMENT_TEXT_CHARS": 100_000,
    # Which models see images: ids or shell-style patterns (`openai:*`); a model matching
    # CHAT_NO_VISION_MODELS does not, whatever the first list says (a local model without
    # vision behind an OpenAI-compatible server: `openai:llama3*`).
    "CHAT_VISION_MODELS": ["*"],
    "CHAT_NO_VISION_MODELS": [],
    # --- what each model receives of files and images (issue 30) ---
    # A vendor's largest inline image in bytes of base64, lower than its own documented limit
    # (chat/providers/images.py), e.g. {"openai": 4000000} for a local server that takes less.
    "CHAT_IMAGE_MAX_BYTES": {},
    # How an OpenAI-compatible server gets a PDF: "file" (a `file` part, as OpenAI's own API
    # reads it) or "text" (its extracted text, for servers such as Ollama, vLLM or llama.cpp
    # that take no `file` parts).
    "CHAT_OPENAI_PDF": "file",
    # --- a clean install into any site (issue 32) ---
    # `with_chat` serves the app's own static files (STATIC_URL + chat/...) when nothing else
    # does (chat/static_serving.py); False leaves them to the site's own setup.
    "CHAT_SERVE_STATIC": True,
    # --- tool approval (issue 31; chat/approvals.py) ---
    # Tools (host or MCP, by name; comma separated, `*` for all) whose calls wait for the
    # person's Approve or Deny, and the seconds a call waits before it ends as refused.
    "CHAT_TOOLS_APPROVAL": [],
    "CHAT_TOOLS_APPROVAL_TIMEOUT": 300.0,
}

# The type of an environment value whose default is None.
_ENV_TYPES: dict[str, type] = {"CHAT_DEMO_TOKENS": int, "CHAT_DB_THREADS": int}
_TRUE = {"1", "true", "yes", "on"}
_UNSET = object()
_EMPTY_IS_OFF = {
    "CHAT_LIMIT_MESSAGES",
    "CHAT_LIMIT_MESSAGES_IP",
    "CHAT_LIMIT_REPLIES",
    "CHAT_QUOTA_TOKENS",
    "CHAT_LIMIT_STREAMS_IP",
    "CHAT_LIMIT_REPLIES_IP",
    "CHAT_QUOTA_TOKENS_IP",
    "CHAT_LIMIT_ATTACHMENTS",
}


_kept: dict[str, Any] = {}


def forget(**kwargs: Any) -> None:
    """Read every setting again at its next use (Django sends `setting_changed` when a test or
    `override_settings` changes one; a test that changes the environment calls this itself)."""
    _kept.clear()


setting_changed.connect(forget, dispatch_uid="chat-conf-forget")


def get(name: str) -> Any:
    """The setting's value: Django's settings, else the environment, else the default; kept
    after the first read. A name the project does not set costs `getattr` on Django's lazy
    settings an AttributeError each time, so keeping what was read matters on the hot path."""
    try:
        return _kept[name]
    except KeyError:
        value = _kept[name] = _read(name)  # an invalid environment value raises, and is not kept
        return value


def _read(name: str) -> Any:
    value = getattr(settings, name, _UNSET)
    if value is not _UNSET:
        return value
    raw = os.environ.get(name)
    if raw is not None and raw.strip() == "" and name in _EMPTY_IS_OFF:
        return _from_env(name, "0")  # the contract: `0` or an empty value turns a limit off
    if raw is None or raw.strip() == "":
        return DEFAULTS[name]
    return _from_env(name, raw)


@lru_cache(maxsize=256)
def _from_env(name: str, raw: str) -> Any:
    """An environment string as the type of the setting's default."""
    default = DEFAULTS[name]
    kind = _ENV_TYPES.get(name, type(default) if default is not None else str)
    try:
        if kind is bool:
            return raw.strip().lower() in _TRUE
        if kind is list:
            return [item.strip() for item in raw.split(",") if item.strip()]
        if kind is dict:
            return json.loads(raw)
        return kind(raw.strip())
    except ValueError as exc:
        raise ValueError(f"The environment variable {name}={raw!r} is not a valid {kind.__name__}") from exc


def get_float(name: str) -> float:
    return float(get(name))


def get_int(name: str) -> int:
    return int(get(name))


def get_ints(name: str) -> tuple[int, ...]:
    """Whole numbers, comma separated (a list or tuple in settings.py); empty: ()."""
    value = get(name)
    if value is None or str(value).strip() == "":
        return ()
    parts = value if isinstance(value, list | tuple) else str(value).split(",")
    try:
        numbers = tuple(int(str(part).strip()) for part in parts)
    except ValueError:
        numbers = (-1,)
    if any(number < 0 for number in numbers):
        raise ImproperlyConfigured(
            f"{name} must be whole numbers, comma separated (such as 5000,20,100), not {value!r}."
        )
    return numbers


def get_str(name: str) -> str:
    value = get(name)
    return "" if value is None else str(value)


def stale_after() -> float:
    return get_float("CHAT_CHECKPOINT_INTERVAL") * get_int("CHAT_STALE_INTERVALS")
