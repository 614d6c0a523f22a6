"""Errors that reach a client as the contract's JSON error: {"error": sentence, "code": code}."""


class ChatError(Exception):
    status = 400
    code = "invalid"

    def __init__(self, message: str, *, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.headers = headers or {}


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


class TooLarge(ChatError):
    status, code = 413, "too_large"


class Unavailable(ChatError):
    status, code = 503, "unavailable"
