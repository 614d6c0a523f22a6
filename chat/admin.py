from django.contrib import admin

from chat.models import Conversation, Message


class MessageInline(admin.TabularInline):
    model = Message
    extra = 0
    fields = ("role", "status", "model", "content", "created_at", "time_to_first_token_ms", "duration_ms")
    readonly_fields = fields
    can_delete = False
    show_change_link = True

    def has_add_permission(self, request, obj=None) -> bool:
        return False


@admin.register(Conversation)
class ConversationAdmin(admin.ModelAdmin):
    list_display = ("__str__", "user", "visitor", "model", "updated_at")
    list_filter = ("model",)
    search_fields = ("title",)
    readonly_fields = ("id", "created_at", "updated_at")
    inlines = [MessageInline]


@admin.register(Message)
class MessageAdmin(admin.ModelAdmin):
    list_display = (
        "__str__",
        "role",
        "status",
        "model",
        "created_at",
        "time_to_first_token_ms",
        "duration_ms",
    )
    list_filter = ("status", "role", "model")
    list_select_related = ("conversation",)
    readonly_fields = ("id", "conversation", "created_at", "updated_at")
