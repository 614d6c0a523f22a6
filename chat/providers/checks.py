"""System check: every part the settings ask for has its package installed (chat.E003).

The vendor SDKs, Redis and PostgreSQL are extras of the `chat-sse` package, so that a site on
one vendor and SQLite installs nothing else. A setting that needs one whose package is missing
is named at start, with the extra that brings it, rather than at the first reply.
"""

import importlib.util
from collections.abc import Iterable

from django.conf import settings
from django.core.checks import Error, register

from chat import conf
from chat.eventlog import REDIS, backend_path
from chat.providers.registry import parse_model_id

# extra -> the modules it installs that the app imports
EXTRAS: dict[str, tuple[str, ...]] = {
    "openai": ("openai", "httpx2"),
    "anthropic": ("anthropic", "httpx2"),
    "redis": ("redis",),
    "postgres": ("psycopg",),
}


def missing(extra: str) -> list[str]:
    """The modules of `extra` that cannot be imported here."""
    return [module for module in EXTRAS[extra] if importlib.util.find_spec(module) is None]


def _vendors_asked_for() -> dict[str, str]:
    """Vendor -> the setting that asks for it: a model named in CHAT_MODELS or CHAT_MODEL, or a
    key or base URL (either offers the vendor's models when CHAT_MODELS is not set)."""
    asked: dict[str, str] = {}
    for model_id in [*(conf.get("CHAT_MODELS") or []), conf.get_str("CHAT_MODEL")]:
        provider = parse_model_id(model_id).provider if model_id else ""
        if provider in ("openai", "anthropic"):
            asked.setdefault(provider, f"the model {model_id!r}")
    if not conf.get("CHAT_MODELS"):
        for vendor in ("openai", "anthropic"):
            for name in (f"{vendor.upper()}_API_KEY", f"{vendor.upper()}_BASE_URL"):
                if conf.get(name):
                    asked.setdefault(vendor, name)
    return asked


def _asked_for() -> dict[str, str]:
    """Extra -> what in the settings needs it."""
    asked = _vendors_asked_for()
    if conf.get("REDIS_URL") or backend_path() == REDIS:
        asked["redis"] = "REDIS_URL" if conf.get("REDIS_URL") else "CHAT_EVENT_LOG"
    engines = {database.get("ENGINE", "") for database in settings.DATABASES.values()}
    if "django.db.backends.postgresql" in engines:
        asked["postgres"] = "a PostgreSQL database in DATABASES"
    return asked


@register()
def check_extras(app_configs: Iterable | None = None, **kwargs) -> list[Error]:
    errors = []
    for extra, why in _asked_for().items():
        absent = missing(extra)
        if absent:
            errors.append(
                Error(
                    f"{why[0].upper()}{why[1:]} needs {', '.join(absent)}, which is not installed.",
                    hint=f"pip install 'chat-sse[{extra}]'",
                    id="chat.E003",
                )
            )
    return errors
