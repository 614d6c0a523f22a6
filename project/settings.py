"""Settings for the chat project, read from the environment (docs/configuration.md lists them)."""

import os
from datetime import timedelta
from pathlib import Path

import dj_database_url
from django.core.exceptions import ImproperlyConfigured

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


# Off unless the environment turns it on; manage.py turns it on for its commands (`make run`),
# so the production entry point, `uvicorn project.asgi:application`, runs with DEBUG off.
DEBUG = env_bool("DEBUG", False)
SECRET_KEY = os.environ.get("SECRET_KEY", "")
if not SECRET_KEY:
    if not DEBUG:
        raise ImproperlyConfigured(
            "SECRET_KEY is not set; with DEBUG off, set SECRET_KEY to a long random string, the same "
            "in every process (python -c 'import secrets; print(secrets.token_urlsafe(50))' makes one), "
            "or DEBUG=1 for development."
        )
    SECRET_KEY = "django-insecure-development-key-only-while-debug-is-on"
ALLOWED_HOSTS = env_list("ALLOWED_HOSTS", ["localhost", "127.0.0.1", "[::1]"] if DEBUG else [])

# HTTPS=1: the site is served over HTTPS, by uvicorn itself or behind a proxy that says so in
# X-Forwarded-Proto (believed only from CHAT_TRUSTED_PROXIES: chat/proxies.py drops it from
# anyone else). HSTS tells browsers to come back over HTTPS only, for SECURE_HSTS_SECONDS.
# Without it, `check --deploy` says what is missing (security.W004, W008, W012, W016).
HTTPS = env_bool("HTTPS", False)
if HTTPS:
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
    SECURE_SSL_REDIRECT = True
    SESSION_COOKIE_SECURE = CSRF_COOKIE_SECURE = True
    SECURE_HSTS_SECONDS = int(os.environ.get("SECURE_HSTS_SECONDS") or 365 * 24 * 3600)
    SECURE_HSTS_INCLUDE_SUBDOMAINS = env_bool("SECURE_HSTS_INCLUDE_SUBDOMAINS", True)
    # Off by default: browsers' preload list is a commitment that takes months to undo, so
    # `check --deploy` keeps asking (security.W021) until the operator decides, either way.
    SECURE_HSTS_PRELOAD = env_bool("SECURE_HSTS_PRELOAD", False)

# Nothing is silenced by the project: a check is silenced only where the environment says so
# (comma separated, e.g. SILENCED_SYSTEM_CHECKS=security.W021,chat.W003), each the operator's
# own decision (docs/deploying.md).
SILENCED_SYSTEM_CHECKS = env_list("SILENCED_SYSTEM_CHECKS", [])

INSTALLED_APPS = [
    # `chat` comes before staticfiles so that its streaming `runserver` wins.
    "chat",
    # Its system checks for the static files settings below.
    "servestatic",
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
    # Static files, DEBUG on or off, with no collectstatic step (after the HTTPS redirect).
    "servestatic.middleware.ServeStaticMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    # The page, the admin and their scripts in the reader's language (Accept-Language, or the
    # django_language cookie), among LANGUAGES (issue 32; docs/API-extensions.md, "Languages").
    "django.middleware.locale.LocaleMiddleware",
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
if DATABASES["default"]["ENGINE"] == "django.db.backends.postgresql":
    # A pool per process (Django's, psycopg_pool): requests borrow a connection and give it
    # back when they end (a stream once it is open: chat/threads.py), the replies' writer
    # threads (CHAT_DB_THREADS) keep one each until the server stops. So a process never holds more than
    # DATABASE_POOL_SIZE connections however many requests arrive at once; a request that
    # finds none free waits up to 10 s. Persistent connections (CONN_MAX_AGE) would not bound
    # anything under ASGI: each request runs on a thread of its own, with a connection of its
    # own. DATABASE_POOL_SIZE=0: no pool, a connection per request.
    _pool = int(os.environ.get("DATABASE_POOL_SIZE") or 10)
    if _pool:
        _options = DATABASES["default"].setdefault("OPTIONS", {})
        _options["pool"] = {"min_size": 2, "max_size": _pool, "timeout": 10}
elif DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # Many replies save at once: WAL lets readers run beside the writer, IMMEDIATE takes the
    # write lock when a transaction starts (a deferred one that upgrades fails at once with
    # "database is locked", whatever the timeout), and the busy timeout makes writers queue.
    DATABASES["default"]["OPTIONS"] = {
        "transaction_mode": "IMMEDIATE",
        "timeout": 30,
        "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
    }
    # Persistent connections: under `with_chat` a request's sync work runs on a thread borrowed
    # from a small pool (chat/threads.py), so a connection kept on that thread serves the next
    # requests that borrow it; opening one per request was a sixth of a reply's opening
    # (callgrind: 2.5M of 15.8M instructions). A thread the pool lets go closes its connections
    # first. Without `with_chat` (Django's own thread per request) CONN_MAX_AGE 0 would be right.
    DATABASES["default"]["CONN_MAX_AGE"] = None
    # Tests share the database with a real server thread, so it must be a file.
    DATABASES["default"]["TEST"] = {"NAME": str(BASE_DIR / "test-db.sqlite3")}

DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]

LANGUAGE_CODE = "en"
# The languages the app ships catalogues for (chat/locale); a reader's others fall back to English.
LANGUAGES = [("en", "English"), ("de", "Deutsch"), ("es", "Español")]
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

# Uploads (chat attachments) through Django's default storage: files under MEDIA_ROOT, or a
# host's S3 or other backend set in STORAGES["default"]. They are served by the app to their
# owner only (never from MEDIA_URL), so nothing here is public.
MEDIA_ROOT = os.environ.get("MEDIA_ROOT") or BASE_DIR / "media"

STATIC_URL = "static/"
STATIC_ROOT = BASE_DIR / "staticfiles"
# ServeStatic (an async-capable WhiteNoise) serves the apps' static files where they are, found
# by Django's finders at start: no collectstatic step. While DEBUG is on it looks them up again
# on each request, so that edits show at once (SERVESTATIC_AUTOREFRESH's default).
SERVESTATIC_USE_FINDERS = True

# The API answers a missing token with its JSON error itself; this sends the admin's and the
# login page's forms Django's own page instead (chat.views.csrf_failure).
CSRF_FAILURE_VIEW = "chat.views.csrf_failure"

# Shared by every process through Redis when REDIS_URL is set (Django's own Redis backend);
# otherwise each process has its own.
REDIS_URL = os.environ.get("REDIS_URL") or None
if REDIS_URL:
    CACHES = {"default": {"BACKEND": "django.core.cache.backends.redis.RedisCache", "LOCATION": REDIS_URL}}
else:
    CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}

LOGIN_URL = "login"
LOGIN_REDIRECT_URL = LOGOUT_REDIRECT_URL = "chat:page"

# Failed sign-ins (the admin's and /accounts/login/) are throttled by django-axes: after
# LOGIN_FAILURE_LIMIT failures for one username, or from one client address (chat/proxies.py's,
# so CHAT_TRUSTED_PROXIES applies), both are refused, the right password too, with 429 and
# Retry-After until those failures are LOGIN_COOLOFF_MINUTES old (project/logins.py). Counted in
# the database, so every process shares them. LOGIN_FAILURE_LIMIT=0 turns it off.
INSTALLED_APPS += ["axes"]
# Last, as axes asks: it turns the view's answer to a locked sign-in into the 429 page.
MIDDLEWARE += ["axes.middleware.AxesMiddleware"]
# First: a locked sign-in is refused before any password is checked.
AUTHENTICATION_BACKENDS = ["axes.backends.AxesStandaloneBackend", "django.contrib.auth.backends.ModelBackend"]
AXES_FAILURE_LIMIT = int(os.environ.get("LOGIN_FAILURE_LIMIT") or 10)
AXES_ENABLED = AXES_FAILURE_LIMIT > 0
AXES_COOLOFF_TIME = timedelta(minutes=float(os.environ.get("LOGIN_COOLOFF_MINUTES") or 15))
AXES_LOCKOUT_PARAMETERS = ["username", "ip_address"]  # each counted on its own
AXES_CLIENT_IP_CALLABLE = "chat.proxies.client_ip"
AXES_HANDLER = "project.logins.SignInAttempts"  # forgives an account's failures when it signs in
AXES_RESET_ON_SUCCESS = False  # axes' own would forgive the address's too (project/logins.py)
AXES_RESET_COOL_OFF_ON_FAILURE_DURING_LOCKOUT = False  # refused attempts are not counted
AXES_LOCKOUT_CALLABLE = "project.logins.locked_out"
AXES_DISABLE_ACCESS_LOG = True  # no record of every successful sign-in, as before

CORS_ALLOWED_ORIGINS = env_list("CHAT_CORS_ORIGINS", [])
# An origin allowed to call the API with credentials passes Django's CSRF origin check too.
CSRF_TRUSTED_ORIGINS = [*env_list("CSRF_TRUSTED_ORIGINS", []), *CORS_ALLOWED_ORIGINS]
CORS_ALLOW_CREDENTIALS = True
CORS_EXPOSE_HEADERS = ["Retry-After"]

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "filters": {"require_debug_false": {"()": "django.utils.log.RequireDebugFalse"}},
    "handlers": {
        "console": {"class": "logging.StreamHandler"},
        # Django's own console handler speaks only while DEBUG is on: this one takes over the
        # errors (500s with their traceback) when it is off.
        "errors": {"class": "logging.StreamHandler", "level": "ERROR", "filters": ["require_debug_false"]},
    },
    "loggers": {
        "chat": {"handlers": ["console"], "level": os.environ.get("CHAT_LOG_LEVEL", "INFO")},
        "django.request": {"handlers": ["errors"]},
    },
}

# --- the chat app ---------------------------------------------------------------------------
# Every CHAT_* setting, and the vendors' keys and base URLs, is read from the environment by
# chat/conf.py, which holds the defaults: nothing to repeat here. (A host project may set any
# of them in its settings instead.)
DATA_UPLOAD_MAX_MEMORY_SIZE = max(int(os.environ.get("CHAT_MAX_BODY_BYTES") or 256 * 1024), 2_621_440)
