"""The admin's view of limits: an owner's usage in the current windows, and who was refused.

The counts live in the limiter (this process's memory, or Redis); the admin's views run in a
worker thread, so they ask the server's event loop for them (asgiref runs the coroutine there,
where the in-memory counts are).
"""

from datetime import UTC, datetime

from asgiref.sync import async_to_sync
from django.contrib import admin
from django.contrib.auth import get_permission_codename, get_user_model
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest, HttpResponse
from django.template.response import TemplateResponse
from django.urls import reverse
from django.utils.formats import number_format
from django.utils.html import format_html, format_html_join
from django.utils.safestring import mark_safe
from django.utils.translation import gettext
from django.utils.translation import gettext_lazy as _

from chat import conf
from chat.models import Conversation
from chat.ratelimit import get_limiter
from chat.services import Owner

LIMIT_NAMES = {
    "messages": _("messages per person"),
    "messages_ip": _("messages per address"),
    "replies": _("replies at once"),
    "replies_ip": _("replies at once per address"),
    "tokens": _("token quota"),
    "tokens_ip": _("token quota per address"),
    "streams_ip": _("streams per address"),
}


def owner_key(conversation: Conversation) -> str:
    return Owner(user_id=conversation.user_id, visitor=conversation.visitor).key


async def _usage(owner: str) -> dict:
    return await get_limiter().usage(owner=owner)


async def _refusals() -> list[dict]:
    return await get_limiter().refusals()


def usage_html(conversation: Conversation) -> str:
    """A few lines for the conversation's page: its owner's counts in the current windows."""
    usage = async_to_sync(_usage)(owner_key(conversation))
    rows = []
    if usage["messages"]:
        rows.append((gettext("Messages"), gettext("%(used)s of %(limit)s") % usage["messages"]))
    if usage["tokens"]:
        tokens = usage["tokens"]
        used = {
            "used": number_format(tokens["used"], force_grouping=True),
            "limit": tokens["limit"],
            "renews": tokens["renews_in"],
        }
        text = (
            gettext("%(used)s of %(limit)s, renews in %(renews)s")
            if tokens["renews_in"]
            else gettext("%(used)s of %(limit)s")
        )
        rows.append((gettext("Output tokens"), text % used))
    if usage["replies"]:
        rows.append(
            (gettext("Replies generating"), gettext("%(used)s of %(limit)s at once") % usage["replies"])
        )
    if not rows:
        return gettext("No per-person limit is set.")
    return format_html_join(mark_safe("<br>"), "{}: {}", rows)


def _who(who: str) -> str:
    if who.startswith("user:"):
        user = get_user_model().objects.filter(pk=who.removeprefix("user:")).first()
        if user is not None:
            url = reverse(f"admin:{user._meta.app_label}_{user._meta.model_name}_change", args=[user.pk])
            return format_html('{} <a href="{}">{}</a>', gettext("user"), url, user.get_username())
    if who.startswith("visitor:"):
        return format_html(
            "{} <code>{}</code>", gettext("anonymous visitor"), who.removeprefix("visitor:")[:12]
        )
    return format_html("{} <code>{}</code>", gettext("address"), who)


def may_view_conversations(request: HttpRequest) -> bool:
    """The admin's own rule for viewing conversations (ModelAdmin.has_view_permission): the
    `view` or the `change` permission. Refusals name the same people (addresses, user names,
    visitor ids), so they need the same."""
    opts = Conversation._meta
    return any(
        request.user.has_perm(f"{opts.app_label}.{get_permission_codename(action, opts)}")
        for action in ("view", "change")
    )


def refusals_view(request: HttpRequest) -> HttpResponse:
    """Who is being limited: the recent refusals, grouped by who and which limit."""
    if not may_view_conversations(request):
        raise PermissionDenied
    groups: dict[tuple[str, str], dict] = {}
    for entry in async_to_sync(_refusals)():
        group = groups.setdefault(
            (entry["who"], entry["limit"]),
            {"count": 0, "last": entry["at"], "retry_after": entry["retry_after"]},
        )
        group["count"] += 1
    rows = [
        {
            "who": _who(who),
            "limit": LIMIT_NAMES.get(limit, limit),
            "count": group["count"],
            "last": datetime.fromtimestamp(group["last"], UTC),
            "retry_after": group["retry_after"],
        }
        for (who, limit), group in sorted(groups.items(), key=lambda item: -item[1]["last"])
    ]
    context = {
        **admin.site.each_context(request),
        "title": gettext("Limits: recent refusals"),
        "rows": rows,
        "opts": Conversation._meta,
        "shared": bool(conf.get("REDIS_URL")),
    }
    return TemplateResponse(request, "admin/chat/limits.html", context)
