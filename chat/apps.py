from django.apps import AppConfig


class ChatConfig(AppConfig):
    name = "chat"
    verbose_name = "Chat"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from chat import attachments, checks, signals  # noqa: F401  (checks, receivers: sign-in, files deleted)
        from chat.providers import checks as extra_checks  # noqa: F401  (a package an extra brings, missing)
        from chat.replies import generation  # noqa: F401  (the reply engine, which the runtime starts)
        from chat.tools import checks as tool_checks  # noqa: F401  (CHAT_TOOLS checked by `manage.py check`)
