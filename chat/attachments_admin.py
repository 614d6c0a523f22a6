"""Uploaded files in the admin: what people sent, whose, where; read-only, with a preview.

The API serves a file to its owner only, so the admin has its own URL for it (staff with the
view permission), with the same headers: its judged type, `nosniff`, a sandbox.
"""

from django.contrib import admin
from django.core.exceptions import PermissionDenied
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404
from django.template.defaultfilters import filesizeformat
from django.urls import path, reverse
from django.utils.html import format_html
from django.utils.translation import gettext
from django.utils.translation import gettext_lazy as _

from chat.models import Attachment
from chat.views import attachment_response, stored_bytes


@admin.register(Attachment)
class AttachmentAdmin(admin.ModelAdmin):
    list_display = ("preview", "name", "content_type", "size_display", "owner", "conversation", "created_at")
    list_select_related = ("user", "message")
    list_filter = ("content_type",)
    date_hierarchy = "created_at"
    ordering = ("-created_at",)
    show_full_result_count = False
    search_fields = ("name", "=visitor", "user__username", "=sha256")
    fields = (
        "preview",
        "name",
        "content_type",
        "size_display",
        "dimensions",
        "owner",
        "conversation",
        "sha256",
        "created_at",
        "stored_as",
        "text",
    )
    readonly_fields = fields

    def get_queryset(self, request):
        return super().get_queryset(request).defer("text")

    def has_add_permission(self, request) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False

    def get_urls(self):
        view = self.admin_site.admin_view(self.file_view)
        return [path("<uuid:pk>/file/", view, name="chat_attachment_file"), *super().get_urls()]

    def file_view(self, request: HttpRequest, pk) -> HttpResponse:
        if not self.has_view_permission(request):
            raise PermissionDenied
        attachment = get_object_or_404(Attachment, pk=pk)
        try:
            data = stored_bytes(attachment)
        except FileNotFoundError:
            raise Http404(gettext("The file is no longer stored.")) from None
        return attachment_response(attachment, data)

    @admin.display(description="")
    def preview(self, obj: Attachment) -> str:
        url = reverse("admin:chat_attachment_file", args=[obj.pk])
        if obj.is_image:
            return format_html(
                '<a href="{}"><img src="{}" alt="" style="max-height:48px;max-width:96px"></a>', url, url
            )
        return format_html('<a href="{}">{}</a>', url, gettext("download"))

    @admin.display(description=_("size"), ordering="size")
    def size_display(self, obj: Attachment) -> str:
        return filesizeformat(obj.size)

    @admin.display(description=_("pixels"))
    def dimensions(self, obj: Attachment) -> str:
        return "" if obj.width is None else f"{obj.width} × {obj.height}"

    @admin.display(description=_("owner"))
    def owner(self, obj: Attachment) -> str:
        if obj.user_id is not None:
            return obj.user.get_username()
        return gettext("visitor %(id)s") % {"id": obj.visitor[:8]} if obj.visitor else "—"

    @admin.display(description=_("conversation"))
    def conversation(self, obj: Attachment) -> str:
        if obj.message is None:
            return gettext("not sent")
        return format_html(
            '<a href="{}">{}</a>',
            reverse("admin:chat_conversation_change", args=[obj.message.conversation_id]),
            gettext("conversation"),
        )

    @admin.display(description=_("stored as"))
    def stored_as(self, obj: Attachment) -> str:
        return obj.file.name
