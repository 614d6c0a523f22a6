from django.apps import AppConfig
from django.db.models.signals import post_migrate


class ChatConfig(AppConfig):
    name = "chat"
    verbose_name = "Chat"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from chat import attachments, checks, signals  # noqa: F401  (checks, receivers: sign-in, files deleted)
        from chat.providers import checks as extra_checks  # noqa: F401  (a package an extra brings, missing)
        from chat.replies import generation  # noqa: F401  (the reply engine, which the runtime starts)
        from chat.search_index import repair_after_migrate
        from chat.tools import checks as tool_checks  # noqa: F401  (CHAT_TOOLS checked by `manage.py check`)

        post_migrate.connect(repair_after_migrate, sender=self, dispatch_uid="chat-search-index-repair")
