"""`manage.py check` (and runserver's start) says which CHAT_TOOLS entry cannot be offered."""

from django.core import checks
from django.core.exceptions import ImproperlyConfigured


@checks.register()
def check_tools(app_configs=None, **kwargs) -> list[checks.CheckMessage]:
    from chat.tools import _load, configured_paths

    try:
        _load(configured_paths())
    except ImproperlyConfigured as exc:
        return [checks.Error(str(exc), id="chat.E012")]
    return []
