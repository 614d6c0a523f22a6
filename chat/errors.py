"""Errors that reach a client as the contract's JSON error: {"error": sentence, "code": code}."""

import math
from typing import Any


class ChatError(Exception):
    status = 400
    code = "invalid"

    def __init__(
        self, message: str, *, headers: dict[str, str] | None = None, extra: dict[str, Any] | None = None
    ) -> None:
        super().__init__(message)
        self.message = message
        self.headers = headers or {}
        self.extra = extra or {}  # fields of the JSON body beside "error" and "code"


class Invalid(ChatError):
    status, code = 400, "invalid"


class LoginRequired(ChatError):
    status, code = 401, "login_required"


class CrossSite(ChatError):
    status, code = 403, "csrf"


class NotFound(ChatError):
    status, code = 404, "not_found"


class MethodNotAllowed(ChatError):
    status, code = 405, "method_not_allowed"


class Conflict(ChatError):
    """The request is well formed but the thing it acts on is not in a state that allows it."""

    status, code = 409, "conflict"


class TooLarge(ChatError):
    status, code = 413, "too_large"


class RateLimited(ChatError):
    """429 with `limit` (which one) and `retry_after` (whole seconds, at least 1), also as a header."""

    status, code = 429, "rate_limited"

    def __init__(self, message: str, *, limit: str, retry_after: float) -> None:
        seconds = max(1, math.ceil(retry_after))
        super().__init__(
            message,
            headers={"Retry-After": str(seconds)},
            extra={"limit": limit, "retry_after": seconds},
        )
        self.limit = limit
        self.retry_after = seconds


class Unavailable(ChatError):
    status, code = 503, "unavailable"
