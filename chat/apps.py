from django.apps import AppConfig


class ChatConfig(AppConfig):
    name = "chat"
    verbose_name = "Chat"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from chat import signals  # noqa: F401  (connects the sign-in receiver)
        from chat.tools import checks  # noqa: F401  (CHAT_TOOLS checked by `manage.py check`)
