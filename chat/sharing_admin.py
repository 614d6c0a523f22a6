"""Shared conversations in the admin: what is public by link, and a way to revoke it.

The site owner may have to take a link down (it shows what a model said under the site's
name); deleting the row is revoking, as the owner's own DELETE is.
"""

from django.contrib import admin
from django.urls import reverse
from django.utils.html import format_html
from django.utils.translation import gettext
from django.utils.translation import gettext_lazy as _

from chat.models import Share


@admin.register(Share)
class ShareAdmin(admin.ModelAdmin):
    list_display = ("title_display", "created_at", "links")
    list_select_related = ("conversation",)
    ordering = ("-created_at",)
    show_full_result_count = False
    fields = ("title", "created_at", "message_count", "links")
    readonly_fields = fields
    search_fields = ("title",)

    def get_queryset(self, request):
        return super().get_queryset(request).defer("messages")  # the list does not read snapshots

    def has_add_permission(self, request) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False

    @admin.display(description=_("title"), ordering="title")
    def title_display(self, obj: Share) -> str:
        return obj.title or gettext("(untitled)")

    @admin.display(description=_("messages"))
    def message_count(self, obj: Share) -> int:
        return len(obj.messages)

    @admin.display(description=_("links"))
    def links(self, obj: Share) -> str:
        return format_html(
            '<a href="{}" target="_blank" rel="noopener noreferrer">{}</a> · <a href="{}">{}</a>',
            reverse("chat:share-page", args=[obj.pk]),
            gettext("shared page"),
            reverse("admin:chat_conversation_change", args=[obj.conversation_id]),
            gettext("conversation"),
        )
