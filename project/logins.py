"""Failed sign-ins, throttled by django-axes: what a success forgives, and the refusal's page.

The settings (project/settings.py, "Failed sign-ins") have axes count failures per username and
per client address in the database, and refuse both once either reaches the limit, until the
failures that made it are older than the cool-off. Refused attempts are not counted: the lockout
ends when it said it would, and a locked account's row stops growing however long it is hammered.
"""

import math
from datetime import datetime, timedelta

from axes.handlers.database import AxesDatabaseHandler
from axes.handlers.proxy import AxesProxyHandler
from axes.helpers import get_cool_off, get_failure_limit
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.utils import timezone
from django.utils.translation import ngettext


class SignInAttempts(AxesDatabaseHandler):
    """Axes' database handler, with a success that forgives the account's failures only.

    Axes' own reset on success (AXES_RESET_ON_SUCCESS) also deletes every failure from the
    signing-in address, whichever account they were aimed at: someone with an account of their
    own could sign into it between guesses at another's and never reach that account's limit.
    """

    def user_logged_in(self, sender, request, user, **kwargs) -> None:
        super().user_logged_in(sender, request, user, **kwargs)
        username = user.get_username()
        if username:  # an empty name would select every attempt of every account
            self.reset_attempts(username=username)

    def lockout_ends(self, request: HttpRequest, credentials: dict | None) -> datetime:
        """When the refused request may succeed: for each of its locked counts (the username's,
        the address's), when enough of its failures have aged past the cool-off that the rest
        are under the limit."""
        now = request.axes_attempt_time
        limit, cool_off = get_failure_limit(request, credentials), get_cool_off(request)
        ends = now
        for attempts in self.get_user_attempts(request, credentials):
            total = 0
            for attempt_time, failures in attempts.order_by("-attempt_time").values_list(
                "attempt_time", "failures_since_start"
            ):
                total += failures
                if total >= limit:
                    ends = max(ends, attempt_time + cool_off)
                    break
        return ends


def retry_after(request: HttpRequest) -> int:
    """Whole seconds until the lockout lifts: the handler's reckoning, or the whole cool-off
    under another handler (an upper bound: no failure counted is older than now)."""
    handler = AxesProxyHandler.get_implementation()
    credentials = getattr(request, "axes_credentials", None)
    if isinstance(handler, SignInAttempts):
        seconds = (handler.lockout_ends(request, credentials) - timezone.now()).total_seconds()
    else:
        seconds = (get_cool_off(request) or timedelta(0)).total_seconds()
    return max(1, math.ceil(seconds))


def lockout_message(seconds: int) -> str:
    minutes = max(1, math.ceil(seconds / 60))
    return ngettext(
        "Too many failed sign-ins for this account or from your network address; "
        "try again in %(minutes)d minute.",
        "Too many failed sign-ins for this account or from your network address; "
        "try again in %(minutes)d minutes.",
        minutes,
    ) % {"minutes": minutes}


def locked_out(request: HttpRequest, *ignored: object) -> HttpResponse:
    """AXES_LOCKOUT_CALLABLE: 429, Retry-After, and the sentence on the sign-in page's look.

    Axes calls it with the refused request, then the view's response and the credentials; its
    async middleware (the one this project runs) passes the credentials where the response
    belongs (jazzband/django-axes#1494). The page needs neither, so it reads only the request."""
    seconds = retry_after(request)
    response = render(
        request, "registration/locked_out.html", {"message": lockout_message(seconds)}, status=429
    )
    response["Retry-After"] = str(seconds)
    return response
