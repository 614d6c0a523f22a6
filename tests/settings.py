"""The project's settings, made quick and observable for tests.

The suite runs on SQLite whatever DATABASE_URL says: that is the embedded default people
get. The PostgreSQL tests read DATABASE_URL themselves and start servers on it. The deployment
settings (DEBUG, SECRET_KEY, ALLOWED_HOSTS, HTTPS) are the development ones, whatever the
shell says; tests/test_deploy.py starts servers with others.
"""

import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager


def _set(name: str, value: str | None) -> None:
    if value is None:
        os.environ.pop(name, None)
    else:
        os.environ[name] = value


@contextmanager
def _environ(**values: str | None) -> Iterator[None]:
    """The environment as `values` say (None: unset) while the project's settings load."""
    saved = {name: os.environ.get(name) for name in values}
    try:
        for name, value in values.items():
            _set(name, value)
        yield
    finally:
        for name, value in saved.items():
            _set(name, value)


# Development settings whatever the shell exports (pytest-django turns DEBUG off while tests
# run): plain HTTP on loopback, the development key, localhost as the allowed host.
with _environ(DATABASE_URL=None, DEBUG="1", SECRET_KEY=None, ALLOWED_HOSTS=None, HTTPS=None):
    from project.settings import *  # noqa: F403

CHAT_MODELS = ["demo", "script:fake"]
CHAT_MODEL = "demo"
CHAT_PROVIDERS = {"script": "tests.fakes.ScriptProvider"}
CHAT_DEMO_RATE = 0
CHAT_DEMO_TOKENS = None
CHAT_CHECKPOINT_INTERVAL = 0.2
CHAT_HEARTBEAT_INTERVAL = 15.0
CHAT_LOG_GRACE = 5.0
PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
# No test reaches a real vendor, whatever the environment holds: the fake vendors set these.
OPENAI_API_KEY = OPENAI_BASE_URL = ANTHROPIC_API_KEY = ANTHROPIC_BASE_URL = None
CHAT_UPSTREAM_TIMEOUT = 5.0
CHAT_DISCOVERY_TIMEOUT = 1.0
# A model-written title is one more upstream request after a first reply; tests that count
# upstream requests stay exact without it. tests/test_page_api.py turns it on.
CHAT_TITLE_BY_MODEL = False
# The in-process event log, whatever the shell exports: tests of Redis turn it on with the
# `redis_settings` fixture (keys of their own) or give it to the servers they start.
REDIS_URL = None
# Every test drives load from one address: limits are off here, turned on by the tests of
# limits (tests/test_limits.py) with the `settings` fixture. The answer cache is off too.
CHAT_LIMIT_MESSAGES = CHAT_LIMIT_MESSAGES_IP = CHAT_QUOTA_TOKENS = CHAT_LIMIT_ATTACHMENTS = "0"
CHAT_LIMIT_REPLIES = CHAT_LIMIT_STREAMS_IP = 0
CHAT_TRUSTED_PROXIES = []
CHAT_CACHE_TTL = 0
# The demo model's reasoning and tool call (issue 12) change its replies' events and text;
# the suite's demo replies stay plain, and tests/test_tools.py turns them on.
CHAT_DEMO_STEPS = False
# The suite signs in many times from one address: failed sign-ins are not throttled here;
# tests/test_logins.py turns the throttle on.
AXES_ENABLED = False
# Uploads (contract v3, "Files and images") go to a directory of this run's, not the project's;
# tests of files give each test its own (tests/test_attachments.py).
MEDIA_ROOT = tempfile.mkdtemp(prefix="chat-test-media-")
