"""System checks (`manage.py check`, run by runserver and migrate): settings that would fail a request."""

from django.core.checks import Error, register
from django.core.exceptions import ImproperlyConfigured


@register()
def limits_settings(app_configs, **kwargs) -> list[Error]:
    """A limit or proxy written wrong is named at start, not at the first send."""
    from chat.proxies import trusted_networks
    from chat.ratelimit import rules

    errors = []
    for read in (rules, trusted_networks):
        try:
            read()
        except ImproperlyConfigured as exc:
            errors.append(Error(str(exc), id="chat.E001"))
    return errors
