"""Settings for the chat project, read from the environment (see README: Configuration)."""

import os
from pathlib import Path

import dj_database_url
from django.core.management.utils import get_random_secret_key

BASE_DIR = Path(__file__).resolve().parent.parent


def env_bool(name: str, default: bool) -> bool:
    value = os.environ.get(name)
    if value is None or value == "":
        return default
    return value.strip().lower() in {"1", "true", "yes", "on"}


def env_list(name: str, default: list[str]) -> list[str]:
    value = os.environ.get(name)
    if not value:
        return default
    return [item.strip() for item in value.split(",") if item.strip()]


def env_float(name: str, default: float | None) -> float | None:
    value = os.environ.get(name)
    return float(value) if value not in (None, "") else default


DEBUG = env_bool("DEBUG", True)
# A development default only; production sets SECRET_KEY (checked by `manage.py check --deploy`).
SECRET_KEY = os.environ.get("SECRET_KEY") or (
    "dev-insecure-key-change-me" if DEBUG else get_random_secret_key()
)
ALLOWED_HOSTS = env_list("ALLOWED_HOSTS", ["localhost", "127.0.0.1", "[::1]"] if DEBUG else [])

INSTALLED_APPS = [
    # `chat` comes before staticfiles so that its streaming `runserver` wins.
    "chat",
    "corsheaders",
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
]

MIDDLEWARE = [
    # First: X-Forwarded-* from a peer that is not in CHAT_TRUSTED_PROXIES are dropped here.
    "chat.proxies.ForwardedHeadersMiddleware",
    "corsheaders.middleware.CorsMiddleware",
    "django.middleware.security.SecurityMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

ROOT_URLCONF = "project.urls"
WSGI_APPLICATION = "project.wsgi.application"
ASGI_APPLICATION = "project.asgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

DATABASES = {
    "default": dj_database_url.parse(
        os.environ.get("DATABASE_URL") or f"sqlite:///{BASE_DIR / 'db.sqlite3'}",
        conn_max_age=0,
    )
}
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # Many replies save at once: WAL lets readers run beside the writer, IMMEDIATE takes the
    # write lock when a transaction starts (a deferred one that upgrades fails at once with
    # "database is locked", whatever the timeout), and the busy timeout makes writers queue.
    DATABASES["default"]["OPTIONS"] = {
        "transaction_mode": "IMMEDIATE",
        "timeout": 30,
        "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
    }
    # Tests share the database with a real server thread, so it must be a file.
    DATABASES["default"]["TEST"] = {"NAME": str(BASE_DIR / "test-db.sqlite3")}

DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATIC_ROOT = BASE_DIR / "staticfiles"

CSRF_FAILURE_VIEW = "chat.views.csrf_failure"

# Shared by every process through Redis when REDIS_URL is set (Django's own Redis backend);
# otherwise each process has its own.
REDIS_URL = os.environ.get("REDIS_URL") or None
if REDIS_URL:
    CACHES = {"default": {"BACKEND": "django.core.cache.backends.redis.RedisCache", "LOCATION": REDIS_URL}}
else:
    CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}

CORS_ALLOWED_ORIGINS = env_list("CHAT_CORS_ORIGINS", [])
CORS_ALLOW_CREDENTIALS = True
CORS_EXPOSE_HEADERS = ["Retry-After"]

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"console": {"class": "logging.StreamHandler"}},
    "loggers": {"chat": {"handlers": ["console"], "level": os.environ.get("CHAT_LOG_LEVEL", "INFO")}},
}

# --- the chat app (defaults live in chat/conf.py) -----------------------------------------
# No CHAT_MODELS: `demo` plus what the keys and base URLs below make available.
CHAT_MODELS = env_list("CHAT_MODELS", [])
CHAT_MODEL = os.environ.get("CHAT_MODEL", "")
# Keys stay here and in the vendor SDKs: Django's error pages hide settings named *KEY*.
OPENAI_API_KEY = os.environ.get("OPENAI_API_KEY") or None
OPENAI_BASE_URL = os.environ.get("OPENAI_BASE_URL") or None
ANTHROPIC_API_KEY = os.environ.get("ANTHROPIC_API_KEY") or None
ANTHROPIC_BASE_URL = os.environ.get("ANTHROPIC_BASE_URL") or None
CHAT_UPSTREAM_TIMEOUT = env_float("CHAT_UPSTREAM_TIMEOUT", 120.0)
CHAT_DISCOVERY_TIMEOUT = env_float("CHAT_DISCOVERY_TIMEOUT", 3.0)
CHAT_CONTEXT_CHARS = int(os.environ.get("CHAT_CONTEXT_CHARS") or 100_000)
CHAT_MAX_OUTPUT_TOKENS = int(os.environ.get("CHAT_MAX_OUTPUT_TOKENS") or 8192)
CHAT_DEMO_RATE = env_float("CHAT_DEMO_RATE", 30.0)
CHAT_DEMO_TOKENS = int(os.environ["CHAT_DEMO_TOKENS"]) if os.environ.get("CHAT_DEMO_TOKENS") else None
CHAT_CHECKPOINT_INTERVAL = env_float("CHAT_CHECKPOINT_INTERVAL", 1.0)
CHAT_HEARTBEAT_INTERVAL = env_float("CHAT_HEARTBEAT_INTERVAL", 15.0)
CHAT_STALE_INTERVALS = int(os.environ.get("CHAT_STALE_INTERVALS") or 10)
CHAT_MERGE_WINDOW = env_float("CHAT_MERGE_WINDOW", 0.016)
CHAT_RETRY_MS = int(os.environ.get("CHAT_RETRY_MS") or 2000)
CHAT_DB_THREADS = int(os.environ["CHAT_DB_THREADS"]) if os.environ.get("CHAT_DB_THREADS") else None
CHAT_MAX_BODY_BYTES = int(os.environ.get("CHAT_MAX_BODY_BYTES") or 256 * 1024)
CHAT_MAX_CONTENT_CHARS = int(os.environ.get("CHAT_MAX_CONTENT_CHARS") or 32_000)
DATA_UPLOAD_MAX_MEMORY_SIZE = max(CHAT_MAX_BODY_BYTES, 2_621_440)
# Limits and quotas, and cached answers (README: Limits and quotas). Only what the environment
# sets is passed on; the defaults live in chat/conf.py.
for _name in (
    "CHAT_LIMIT_MESSAGES",
    "CHAT_LIMIT_MESSAGES_IP",
    "CHAT_LIMIT_REPLIES",
    "CHAT_QUOTA_TOKENS",
    "CHAT_LIMIT_STREAMS_IP",
    "CHAT_CACHE_SCOPE",
    "CHAT_LIMITS_PREFIX",
):
    if _name in os.environ:
        globals()[_name] = os.environ[_name].strip()
if "CHAT_TRUSTED_PROXIES" in os.environ:
    CHAT_TRUSTED_PROXIES = env_list("CHAT_TRUSTED_PROXIES", [])
if os.environ.get("CHAT_CACHE_TTL"):
    CHAT_CACHE_TTL = int(os.environ["CHAT_CACHE_TTL"])
if os.environ.get("CHAT_CACHE_PIECE_INTERVAL"):
    CHAT_CACHE_PIECE_INTERVAL = float(os.environ["CHAT_CACHE_PIECE_INTERVAL"])
