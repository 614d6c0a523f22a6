"""Feedback in the admin: the rated replies, what they answered, and a CSV of them.

The site owner reads which model and which prompts disappoint. The prompt is the reply's
parent (the user message it answers), else the user message before it: one correlated
subquery each on an index, so a page costs the same few queries whatever its size.
"""

import csv
import io
from collections.abc import Iterable

from django.contrib import admin
from django.contrib.admin.options import IncorrectLookupParameters
from django.db.models import OuterRef, QuerySet, Subquery
from django.db.models.functions import Coalesce, Left
from django.http import HttpRequest, HttpResponse, HttpResponseBadRequest
from django.urls import path, reverse
from django.utils import timezone
from django.utils.html import format_html
from django.utils.translation import gettext
from django.utils.translation import gettext_lazy as _

from chat.models import Feedback, Message

PROMPT_PREVIEW = 300  # characters of the prompt the list reads; the CSV has all of it
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")  # what a spreadsheet would take for a formula


def with_prompt(queryset: QuerySet[Message], *, chars: int | None = None) -> QuerySet[Message]:
    """Each reply with `prompt`: the user message it answers (its first `chars` characters)."""
    parent = Message.objects.filter(pk=OuterRef("parent_id"), role=Message.Role.USER).values("content")[:1]
    before = (
        Message.objects.filter(
            conversation_id=OuterRef("conversation_id"),
            role=Message.Role.USER,
            created_at__lt=OuterRef("created_at"),
        )
        .order_by("-created_at")
        .values("content")[:1]
    )
    prompt = Coalesce(Subquery(parent), Subquery(before))
    return queryset.annotate(prompt=prompt if chars is None else Left(prompt, chars))


def csv_cell(value: object) -> object:
    """A cell as a spreadsheet may open it: text that starts like a formula is kept text.

    OWASP's advice for CSV injection: a leading quote makes `=HYPERLINK(...)` in a comment or
    a prompt show as written instead of running when the site owner opens the file.
    """
    if isinstance(value, str) and value.startswith(FORMULA_STARTS):
        return "'" + value
    return value


CSV_HEADER = ["feedback_at", "rating", "comment", "model", "prompt", "reply", "conversation_id", "message_id"]


def feedback_csv(replies: Iterable[Message]) -> str:
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(CSV_HEADER)
    for reply in replies:
        row = [
            reply.feedback_at.isoformat() if reply.feedback_at else "",
            reply.feedback_rating,
            reply.feedback_comment,
            reply.model,
            reply.prompt or "",
            reply.content,
            str(reply.conversation_id),
            str(reply.pk),
        ]
        writer.writerow([csv_cell(cell) for cell in row])
    return out.getvalue()


def csv_download(queryset: QuerySet[Message]) -> HttpResponse:
    replies = with_prompt(queryset.order_by("-feedback_at")).iterator(chunk_size=500)
    response = HttpResponse(feedback_csv(replies), content_type="text/csv; charset=utf-8")
    stamp = timezone.now().strftime("%Y%m%d-%H%M%S")
    response["Content-Disposition"] = f'attachment; filename="feedback-{stamp}.csv"'
    return response


def conversation_links(message: Message) -> str:
    """A message's conversation, in the admin and on the chat page (both lists link so)."""
    return format_html(
        '<a href="{}">{}</a> · <a href="{}" target="_blank" rel="noopener">{}</a>',
        reverse("admin:chat_conversation_change", args=[message.conversation_id]),
        str(message.conversation)[:40],
        reverse("chat:conversation-page", args=[message.conversation_id]),
        gettext("chat page"),
    )


@admin.register(Feedback)
class FeedbackAdmin(admin.ModelAdmin):
    """Read-only: a verdict is its owner's, not the site's to edit."""

    list_display = ("feedback_at", "rating", "comment", "model", "prompt_preview", "reply_preview", "links")
    list_display_links = ("feedback_at",)
    list_select_related = ("conversation",)
    list_filter = ("feedback_rating", "model", ("feedback_at", admin.DateFieldListFilter))
    ordering = ("-feedback_at",)
    show_full_result_count = False
    actions = ["export_csv"]
    fields = ("feedback_at", "rating", "comment", "model", "prompt_preview", "content", "links")
    readonly_fields = fields

    def get_queryset(self, request: HttpRequest) -> QuerySet[Message]:
        return with_prompt(super().get_queryset(request), chars=PROMPT_PREVIEW)

    def has_add_permission(self, request) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False

    def has_delete_permission(self, request, obj=None) -> bool:
        return False

    @admin.display(description=_("rating"), ordering="feedback_rating")
    def rating(self, obj: Message) -> str:
        return {1: gettext("👍 good"), -1: gettext("👎 bad")}.get(obj.feedback_rating, "—")

    @admin.display(description=_("comment"))
    def comment(self, obj: Message) -> str:
        text = obj.feedback_comment
        return text[:120] + ("…" if len(text) > 120 else "")

    @admin.display(description=_("prompt"))
    def prompt_preview(self, obj: Message) -> str:
        text = " ".join((obj.prompt or "").split())
        return (text[:100] + "…" if len(text) > 100 else text) or "—"

    @admin.display(description=_("reply"))
    def reply_preview(self, obj: Message) -> str:
        text = " ".join(obj.content[:300].split())
        return (text[:100] + "…" if len(text) > 100 else text) or gettext("(empty)")

    @admin.display(description=_("conversation"))
    def links(self, obj: Message) -> str:
        return conversation_links(obj)

    @admin.action(description=_("Export selected feedback as CSV"), permissions=["view"])
    def export_csv(self, request: HttpRequest, queryset: QuerySet[Message]) -> HttpResponse:
        return csv_download(Feedback.objects.filter(pk__in=queryset.values("pk")))

    def get_urls(self):
        export = self.admin_site.admin_view(self.export_view)
        return [path("export/", export, name="chat_feedback_export"), *super().get_urls()]

    def export_view(self, request: HttpRequest) -> HttpResponse:
        """The "Export CSV" button: every rated reply the list's filters select, not one page."""
        if not self.has_view_permission(request):
            return HttpResponse(status=403)
        try:
            changelist = self.get_changelist_instance(request)
        except IncorrectLookupParameters:
            return HttpResponseBadRequest(
                gettext("These filters are not valid: export from the list's own button.")
            )
        return csv_download(changelist.get_queryset(request))
