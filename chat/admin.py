"""Conversation history in the admin: find, read, audit and export any conversation.

Every column and filter here is a subquery or an indexed lookup, so the list and change pages
run a fixed number of queries whatever their size (tests/test_admin_volume.py measures it).
"""

import json
import uuid
from datetime import datetime, timedelta

from django.contrib import admin, messages
from django.db.models import (
    Count,
    Exists,
    IntegerField,
    OuterRef,
    Q,
    QuerySet,
    Subquery,
    Sum,
    Value,
)
from django.db.models.functions import Coalesce
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404
from django.urls import path, reverse
from django.utils import timezone
from django.utils.formats import number_format
from django.utils.html import format_html
from django.utils.text import smart_split, unescape_string_literal
from django.utils.translation import gettext, ngettext
from django.utils.translation import gettext_lazy as _

from chat import (  # noqa: F401 - these register admins
    attachments_admin,
    branches,
    feedback_admin,
    history,
    limits_admin,
    sharing_admin,
)
from chat.models import Conversation, Message
from chat.steps import steps_json

FAILED = [Message.Status.ERROR, Message.Status.INTERRUPTED]


def _per_conversation(aggregate) -> Subquery:
    """One value per conversation from its messages: a correlated subquery on the
    (conversation, created_at) index, so a page of N rows costs N index lookups, and neither a
    join nor a GROUP BY over the whole message table."""
    rows = (
        Message.objects.filter(conversation=OuterRef("pk"))
        .order_by()
        .values("conversation")
        .annotate(value=aggregate)
        .values("value")
    )
    return Coalesce(Subquery(rows, output_field=IntegerField()), Value(0))


class PeriodsQuerySet(QuerySet):
    """The date hierarchy's periods without truncating every row's date.

    Django asks `SELECT DISTINCT <trunc>(created_at)`, a function per row that no index serves
    (on SQLite a Python function: about 3 s per million rows). Here: the first and last dates,
    then one query counting rows per candidate period with plain comparisons (an index scan),
    at most 3 queries whatever the table's size or the page's.
    """

    MAX_PERIODS = 100

    def datetimes(self, field_name, kind, order="ASC", tzinfo=None):
        if kind not in ("year", "month", "day") or tzinfo is not None:
            return super().datetimes(field_name, kind, order, tzinfo)
        # Two ORDER BY ... LIMIT 1 queries: each one index probe (MIN and MAX together scan).
        dates = self.order_by().values_list(field_name, flat=True).exclude(**{f"{field_name}__isnull": True})
        first, last = dates.order_by(field_name).first(), dates.order_by(f"-{field_name}").first()
        if first is None:
            return []
        starts = _period_starts(timezone.localtime(first), timezone.localtime(last), kind)
        if len(starts) > self.MAX_PERIODS:
            return super().datetimes(field_name, kind, order, tzinfo)
        ends = [*starts[1:], _next_period(starts[-1], kind)]
        in_range = {f"{field_name}__gte": starts[0], f"{field_name}__lt": ends[-1]}
        counts = (
            self.order_by()
            .filter(**in_range)
            .aggregate(
                **{
                    f"p{i}": Count("pk", filter=Q(**{f"{field_name}__gte": start, f"{field_name}__lt": end}))
                    for i, (start, end) in enumerate(zip(starts, ends, strict=True))
                }
            )
        )
        found = [start for i, start in enumerate(starts) if counts[f"p{i}"]]
        return found if order == "ASC" else found[::-1]


def _truncate(moment: datetime, kind: str) -> datetime:
    tz = moment.tzinfo
    if kind == "year":
        return datetime(moment.year, 1, 1, tzinfo=tz)
    if kind == "month":
        return datetime(moment.year, moment.month, 1, tzinfo=tz)
    return datetime(moment.year, moment.month, moment.day, tzinfo=tz)


def _next_period(start: datetime, kind: str) -> datetime:
    if kind == "year":
        return start.replace(year=start.year + 1)
    if kind == "month":
        return start.replace(year=start.year + start.month // 12, month=start.month % 12 + 1)
    day = start.date() + timedelta(days=1)
    return datetime(day.year, day.month, day.day, tzinfo=start.tzinfo)


def _period_starts(first: datetime, last: datetime, kind: str) -> list[datetime]:
    starts = [_truncate(first, kind)]
    while (following := _next_period(starts[-1], kind)) <= last and len(
        starts
    ) <= PeriodsQuerySet.MAX_PERIODS:
        starts.append(following)
    return starts


def search_terms(search_term: str) -> list[str]:
    """The words of a search, as the admin splits them ("quoted phrases" stay whole)."""
    terms = []
    for bit in smart_split(search_term):
        if bit.startswith(('"', "'")) and bit[0] == bit[-1]:
            bit = unescape_string_literal(bit)
        if bit:
            terms.append(bit)
    return terms


def as_uuid(term: str) -> uuid.UUID | None:
    try:
        return uuid.UUID(term)
    except ValueError:
        return None


# The words the admin shows for a message's role and status, lower case as in a sentence (the
# models' choices' labels are capitalized for the filters).
ROLE_WORDS = {"user": _("user"), "assistant": _("assistant"), "system": _("system")}
STATUS_WORDS = {
    "complete": _("complete"),
    "streaming": _("streaming"),
    "stopped": _("stopped"),
    "error": _("error"),
    "interrupted": _("interrupted"),
}


def status_badge(message: Message) -> str:
    word = STATUS_WORDS.get(message.status, message.status)
    badge = format_html('<span class="chat-status chat-status-{}">{}</span>', message.status, word)
    if message.cached:  # told again from the answer cache: it cost nothing
        return format_html(
            '{} <span class="chat-status chat-cached" title="{}">{}</span>',
            badge,
            gettext("from the answer cache"),
            gettext("cached"),
        )
    return badge


def grouped(number: int) -> str:
    """1,234 or 1.234: thousands as the active language writes them."""
    return number_format(number, force_grouping=True)


def milliseconds(value: int | None) -> str:
    return "—" if value is None else gettext("%(ms)s ms") % {"ms": grouped(value)}


def step_views(message: Message) -> list[dict]:
    """A message's steps for the transcript: JSON shown indented, as text."""
    views = steps_json(message.reasoning, message.steps)
    for view in views:
        if view["type"] == "tool":
            view["arguments_json"] = json.dumps(view.get("arguments"), ensure_ascii=False, indent=1)
            view["result_json"] = json.dumps(view.get("result"), ensure_ascii=False, indent=1)
    return views


def tree_transcript(messages: list[Message]) -> list[Message]:
    """The whole tree (contract v3, "Branches") of `messages` (oldest first), as chat/branches.py
    outlines it: the current
    branch in order, other branches indented under their fork point. Each message gets
    `depth`, `on_branch` and `version` ("2 of 3" where it has siblings)."""
    if not messages:
        return []
    shape = branches.Tree.of((m.pk, m.parent_id) for m in messages)
    leaf = shape.leaf(messages[0].leaf)
    on_branch = set(shape.path(leaf))
    by_id = {m.pk: m for m in messages}
    shown = []
    for pk, depth in shape.outline(leaf):
        message = by_id[pk]
        message.depth, message.indent, message.on_branch = depth, min(depth, 10) * 2, pk in on_branch
        message.role_word = ROLE_WORDS.get(message.role, message.role)
        message.status_word = STATUS_WORDS.get(message.status, message.status)
        siblings = shape.siblings(pk)
        at = {"at": siblings.index(pk) + 1, "count": len(siblings)}
        message.version = gettext("%(at)s of %(count)s") % at if len(siblings) > 1 else ""
        shown.append(message)
    return shown


def stop_and_report(request: HttpRequest, stopped: int) -> None:
    if stopped:
        asked = ngettext(
            "Asked %(count)s running reply to stop.", "Asked %(count)s running replies to stop.", stopped
        )
        messages.info(request, asked % {"count": stopped})


# --- conversations ------------------------------------------------------------------------


class OwnerKindFilter(admin.SimpleListFilter):
    title = _("owner")
    parameter_name = "owner"

    def lookups(self, request, model_admin):
        return [("user", _("Signed-in user")), ("anonymous", _("Anonymous session"))]

    def queryset(self, request, queryset):
        if self.value() == "user":
            return queryset.filter(user__isnull=False)
        if self.value() == "anonymous":
            return queryset.filter(user__isnull=True)
        return queryset


class FailedRepliesFilter(admin.SimpleListFilter):
    """Failed = `error` or `interrupted`; a stop is the user's choice, not a failure.

    `pk IN (failed messages)` reads the (status, updated_at) index once: failures are rare, so
    this beats checking every conversation's messages.
    """

    title = _("failed replies")
    parameter_name = "failed"

    def lookups(self, request, model_admin):
        return [("yes", _("Has failed replies")), ("no", _("No failed replies"))]

    def queryset(self, request, queryset):
        failed = Message.objects.filter(status__in=FAILED).values("conversation_id")
        if self.value() == "yes":
            return queryset.filter(pk__in=failed)
        if self.value() == "no":
            return queryset.exclude(pk__in=failed)
        return queryset


class MessageInline(admin.TabularInline):
    """The messages, read-only: editing them would falsify the history."""

    model = Message
    extra = 0
    fields = (
        "role",
        "status_badge",
        "preview",
        "model",
        "created_at",
        "ttft",
        "duration",
        "tokens",
        "error_code",
    )
    readonly_fields = fields
    ordering = ("created_at",)
    can_delete = False
    show_change_link = True
    classes = ("collapse",)
    verbose_name_plural = _("messages (details; the transcript above has the full text)")

    def has_add_permission(self, request, obj=None) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False

    @admin.display(description=_("status"))
    def status_badge(self, obj: Message) -> str:
        return status_badge(obj)

    @admin.display(description=_("text"))
    def preview(self, obj: Message) -> str:
        return obj.content[:80] + ("…" if len(obj.content) > 80 else "")

    @admin.display(description=_("first token"))
    def ttft(self, obj: Message) -> str:
        return milliseconds(obj.time_to_first_token_ms)

    @admin.display(description=_("duration"))
    def duration(self, obj: Message) -> str:
        return milliseconds(obj.duration_ms)

    @admin.display(description=_("tokens in / out"))
    def tokens(self, obj: Message) -> str:
        return (
            "—"
            if obj.usage is None
            else f"{grouped(obj.input_tokens or 0)} / {grouped(obj.output_tokens or 0)}"
        )


@admin.register(Conversation)
class ConversationAdmin(admin.ModelAdmin):
    change_form_template = "admin/chat/conversation/change_form.html"
    list_display = ("title_display", "owner", "model", "message_count", "last_activity", "total_tokens")
    list_select_related = ("user",)
    list_filter = ("model", ("updated_at", admin.DateFieldListFilter), OwnerKindFilter, FailedRepliesFilter)
    # Only so that the admin shows its search box: get_search_results() does the searching.
    search_fields = ("title",)
    search_help_text = _(
        "Finds conversations whose title or any message contains every word; an id (of either) finds it."
    )
    date_hierarchy = "created_at"
    ordering = ("-updated_at",)
    # The unfiltered total is one more COUNT over the whole table on every filtered page.
    show_full_result_count = False
    fieldsets = [
        (None, {"fields": ("title", "owner", "model", "system_prompt")}),
        (_("Activity"), {"fields": ("id", "created_at", "updated_at", "message_count", "total_tokens")}),
        (_("Owner's usage, current windows"), {"fields": ("limits_usage",)}),
    ]
    readonly_fields = (
        "id",
        "owner",
        "model",
        "system_prompt",
        "created_at",
        "updated_at",
        "message_count",
        "total_tokens",
        "limits_usage",
    )
    inlines = [MessageInline]
    actions = ["export_json"]

    def has_add_permission(self, request: HttpRequest) -> bool:
        """A conversation is a record of what was said: it begins on the page, through the API or
        with `manage.py chat_import`, never as an empty form here (issue 32)."""
        return False

    def get_queryset(self, request: HttpRequest) -> QuerySet[Conversation]:
        tokens = Coalesce("input_tokens", 0) + Coalesce("output_tokens", 0)
        queryset = super().get_queryset(request)
        return (
            PeriodsQuerySet(model=Conversation, query=queryset.query, using=queryset.db)
            .select_related("user")
            .annotate(
                n_messages=_per_conversation(Count("*")),
                n_tokens=_per_conversation(Sum(tokens)),
                replying=Exists(
                    Message.objects.filter(conversation=OuterRef("pk"), status=Message.Status.STREAMING)
                ),
            )
        )

    def get_search_results(self, request, queryset, search_term):
        """Every word must be in the title or in some message of the conversation.

        Each word is one uncorrelated `pk IN (SELECT conversation_id FROM message WHERE content
        LIKE ...)`: one pass over the message table per word, no join that repeats a conversation
        once per matching message, hence no DISTINCT over the result (what search_fields with
        `messages__content` would do). A UUID finds the conversation, or the one holding that
        message, by index.
        """
        for term in search_terms(search_term):
            if (pk := as_uuid(term)) is not None:
                holding = Message.objects.filter(pk=pk).values("conversation_id")
                queryset = queryset.filter(Q(pk=pk) | Q(pk__in=holding))
                continue
            matching = Message.objects.filter(content__icontains=term).values("conversation_id")
            queryset = queryset.filter(Q(title__icontains=term) | Q(pk__in=matching))
        return queryset, False

    @admin.display(description=_("title"), ordering="title")
    def title_display(self, obj: Conversation) -> str:
        title = obj.title or gettext("(untitled)")
        if getattr(obj, "replying", False):
            return format_html(
                '{} <span class="chat-status chat-status-streaming">{}</span>', title, gettext("replying")
            )
        return title

    @admin.display(description=_("owner"), ordering="user__username")
    def owner(self, obj: Conversation) -> str:
        if obj.user_id is not None:
            return obj.user.get_username()
        return gettext("anonymous session")

    @admin.display(description=_("messages"), ordering="n_messages")
    def message_count(self, obj: Conversation) -> int:
        return obj.n_messages

    @admin.display(description=_("tokens"), ordering="n_tokens")
    def total_tokens(self, obj: Conversation) -> str:
        return grouped(obj.n_tokens)

    @admin.display(description=_("limits"))
    def limits_usage(self, obj: Conversation) -> str:
        return limits_admin.usage_html(obj)

    @admin.display(description=_("last activity"), ordering="updated_at")
    def last_activity(self, obj: Conversation):
        return obj.updated_at

    def change_view(self, request, object_id, form_url="", extra_context=None):
        pk = as_uuid(object_id)
        # The conversation's current leaf comes with the messages: no query more.
        leaf = Conversation.objects.filter(pk=pk).values("current_leaf_id")
        messages = (
            Message.objects.filter(conversation_id=pk)
            .annotate(leaf=Subquery(leaf[:1]))
            .order_by("created_at", "id")  # as chat/branches.py's Tree takes them
        )
        transcript = tree_transcript(list(messages)) if pk else []
        for message in transcript:  # reasoning and tool steps, folded in the transcript (issue 12)
            message.step_views = step_views(message)
        context = {
            "transcript": transcript,
            "streaming": any(m.status == Message.Status.STREAMING for m in transcript),
            "shown_at": timezone.now(),
            "chat_url": reverse("chat:conversation-page", args=[pk]) if pk else "",
            "export_url": f"{reverse('admin:chat_conversation_export', args=[pk])}" if pk else "",
            "messages_url": f"{reverse('admin:chat_message_changelist')}?conversation__id__exact={pk}",
            **(extra_context or {}),
        }
        return super().change_view(request, object_id, form_url, extra_context=context)

    def get_urls(self):
        export = self.admin_site.admin_view(self.export_one_view)
        refusals = self.admin_site.admin_view(limits_admin.refusals_view)
        return [
            path("<uuid:pk>/export/", export, name="chat_conversation_export"),
            path("limits/", refusals, name="chat_conversation_limits"),
            *super().get_urls(),
        ]

    def export_one_view(self, request: HttpRequest, pk: uuid.UUID) -> HttpResponse:
        conversation = get_object_or_404(self.get_queryset(request), pk=pk)
        if not self.has_view_permission(request, conversation):
            return HttpResponse(status=403)
        return self._json_download(Conversation.objects.filter(pk=pk), f"conversation-{pk}")

    @admin.action(description=_("Export selected conversations as JSON"), permissions=["view"])
    def export_json(self, request: HttpRequest, queryset: QuerySet[Conversation]) -> HttpResponse:
        stamp = timezone.now().strftime("%Y%m%d-%H%M%S")
        return self._json_download(queryset, f"conversations-{stamp}")

    def _json_download(self, queryset: QuerySet[Conversation], name: str) -> HttpResponse:
        data = history.conversations_export(Conversation.objects.filter(pk__in=queryset.values("pk")))
        response = HttpResponse(
            json.dumps(data, ensure_ascii=False, indent=1), content_type="application/json; charset=utf-8"
        )
        response["Content-Disposition"] = f'attachment; filename="{name}.json"'
        return response

    def delete_model(self, request: HttpRequest, obj: Conversation) -> None:
        self.delete_queryset(request, Conversation.objects.filter(pk=obj.pk))

    def delete_queryset(self, request: HttpRequest, queryset: QuerySet[Conversation]) -> None:
        """The admin's views run in a worker thread, not on the loop running the replies: the
        stop goes through the database (history.replies_stop_requested)."""
        stop_and_report(request, history.conversations_delete(queryset).stopped)


# --- messages -----------------------------------------------------------------------------


@admin.register(Message)
class MessageAdmin(admin.ModelAdmin):
    """Triage: what failed, what was slow, what it cost. Read-only: it is a record."""

    class Media:
        # The list's column widths: ten columns fit 1280 px beside both sidebars (issue 32).
        css = {"all": ("chat/admin.css",)}

    list_display = (
        "created_at",
        "preview",
        "role",
        "status_badge",
        "model",
        "ttft",
        "duration",
        "tokens",
        "error_short",
        "links",
    )
    list_display_links = ("created_at", "preview")
    list_select_related = ("conversation",)
    list_filter = ("status", "role", "model", "cached", ("created_at", admin.DateFieldListFilter))
    search_fields = ("content",)  # the box; get_search_results() does the searching
    search_help_text = _(
        "Finds messages whose text, error or error code contains every word; an id finds it."
    )
    date_hierarchy = "created_at"
    ordering = ("-created_at",)
    show_full_result_count = False
    fields = (
        "id",
        "conversation_link",
        "role",
        "status",
        "model",
        "content",
        "created_at",
        "updated_at",
        "time_to_first_token_ms",
        "duration_ms",
        "input_tokens",
        "output_tokens",
        "finish_reason",
        "error",
        "error_code",
        "stop_requested",
        "cached",
    )
    readonly_fields = fields

    def get_queryset(self, request: HttpRequest) -> QuerySet[Message]:
        queryset = super().get_queryset(request)
        return PeriodsQuerySet(model=Message, query=queryset.query, using=queryset.db)

    def has_add_permission(self, request) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False

    def get_search_results(self, request, queryset, search_term):
        for term in search_terms(search_term):
            if (pk := as_uuid(term)) is not None:
                queryset = queryset.filter(Q(pk=pk) | Q(conversation_id=pk))
            else:
                queryset = queryset.filter(
                    Q(content__icontains=term) | Q(error__icontains=term) | Q(error_code__icontains=term)
                )
        return queryset, False

    @admin.display(description=_("text"))
    def preview(self, obj: Message) -> str:
        text = " ".join(obj.content[:200].split())
        return (text[:70] + "…" if len(text) > 70 else text) or gettext("(empty)")

    @admin.display(description=_("status"), ordering="status")
    def status_badge(self, obj: Message) -> str:
        return status_badge(obj)

    @admin.display(description=_("first token"), ordering="time_to_first_token_ms")
    def ttft(self, obj: Message) -> str:
        return milliseconds(obj.time_to_first_token_ms)

    @admin.display(description=_("duration"), ordering="duration_ms")
    def duration(self, obj: Message) -> str:
        return milliseconds(obj.duration_ms)

    @admin.display(description=_("tokens in / out"), ordering="output_tokens")
    def tokens(self, obj: Message) -> str:
        return (
            "—"
            if obj.usage is None
            else f"{grouped(obj.input_tokens or 0)} / {grouped(obj.output_tokens or 0)}"
        )

    @admin.display(description=_("error"))
    def error_short(self, obj: Message) -> str:
        if not obj.error and not obj.error_code:
            return ""
        text = obj.error or ""
        return format_html(
            '<span title="{}">{}{}</span>', text, f"[{obj.error_code}] " if obj.error_code else "", text[:60]
        )

    @admin.display(description=_("conversation"))
    def links(self, obj: Message) -> str:
        return feedback_admin.conversation_links(obj)

    @admin.display(description=_("conversation"))
    def conversation_link(self, obj: Message) -> str:
        return self.links(obj)

    def delete_model(self, request: HttpRequest, obj: Message) -> None:
        self.delete_queryset(request, Message.objects.filter(pk=obj.pk))

    def delete_queryset(self, request: HttpRequest, queryset: QuerySet[Message]) -> None:
        stop_and_report(request, history.messages_delete(queryset).stopped)
